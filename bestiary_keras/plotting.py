"""Temporary: the figures moved to ``bestiary_keras.figures``; the lead deletes this module."""
from bestiary_keras.figures import *  # noqa: F401,F403
from bestiary_keras.figures import GT_COLOR, PRED_COLOR, class_colors, draw_boxes, show_scenes  # noqa: F401
