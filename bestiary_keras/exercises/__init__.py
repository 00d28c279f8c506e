"""Worked solutions of the notebooks' exercises, one module per chapter.

Each notebook ends with an "Exercises" section; the solutions live here so that the tests execute
them (``tests/test_exercises_*.py``) and assert the outcome that the notebook states. A student
runs one with e.g. ``from bestiary_keras.exercises import vgg; vgg.solution_1()``.
"""
