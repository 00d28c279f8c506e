"""The worked solutions of notebook 13's exercises (``bestiary_keras.exercises.openpose``)."""

import math

import pytest

from bestiary_keras.exercises import openpose as exercises


def test_solution_1_wrong_candidate_passes_only_with_its_two_ends():
    rows = exercises.solution_1(verbose=False)
    for count, row in rows.items():
        assert row["correct"] == pytest.approx([1.0, 1.0], abs=1e-5), count
    # two samples: cosine 0.8 plus the distance prior -0.2, worked out by hand
    assert rows[2]["wrong"] == pytest.approx([0.6, 0.6], abs=1e-5)
    for count in (3, 5, 10, 20):
        assert all(math.isinf(v) and v < 0 for v in rows[count]["wrong"]), count


def test_solution_2_maximum_keeps_nearby_peaks_apart():
    result = exercises.solution_2(verbose=False)
    assert result["first_separated"] == {"max": 3, "average": 7}
    # once separated, they stay separated
    assert all(row["max"] == 2 for d, row in result["peaks"].items() if d >= 3)
    assert all(row["average"] == 1 for d, row in result["peaks"].items() if d <= 6)
