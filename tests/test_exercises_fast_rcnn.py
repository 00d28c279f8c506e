"""Notebook 04's exercises: the worked solutions run and reach the outcomes the notebook states."""

import numpy as np
import pytest

from bestiary_keras.exercises import fast_rcnn


def test_solution_1_roi_pooling_backward_by_hand():
    result = fast_rcnn.solution_1()
    np.testing.assert_array_equal(result["pooled"], [[[9, 8], [14, 15]], [[14, 11], [15, 15]]])
    np.testing.assert_array_equal(result["pooled"], result["reference"])
    np.testing.assert_allclose(result["gradient"], result["hand"], atol=1e-6)
    assert result["gradient"].sum() == pytest.approx(8.0)  # one unit of gradient per bin
    assert int((result["gradient"] > 0).sum()) == 5


def test_solution_2_smooth_l1_bounds_the_outlier():
    result = fast_rcnn.solution_2()
    # seeds 0-2: L2 0.974-0.980, smooth L1 0.394-0.441
    assert result["share_l2"] > 0.9
    assert result["share_smooth_l1"] < 0.6
    assert result["offset_l2"] == pytest.approx(result["hand_offset_l2"], abs=1e-4)
    assert result["offset_smooth_l1"] == pytest.approx(1 / 63, abs=1e-4)
    assert result["offset_l2"] > 8 * result["offset_smooth_l1"]


def test_solution_3_snapping_iou_against_size_and_stride():
    result = fast_rcnn.solution_3()
    for (stride, size), r in result.items():
        if size % stride == 0:  # the two edge displacements add up to exactly one stride
            assert r["measured"] == pytest.approx(r["hand"], abs=1e-3)
        assert -1e-3 < r["measured"] - r["hand"] < 0.045  # seeds 0-2: at most 0.041
    assert result[8, 32]["measured"] == pytest.approx(result[16, 64]["measured"], abs=1e-3)
    assert result[16, 256]["measured"] > 0.85
    assert result[8, 32]["measured"] < 0.65
