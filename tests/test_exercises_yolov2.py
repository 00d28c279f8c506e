"""The worked exercises of notebook 07 (bestiary_keras.exercises.yolov2) and their outcomes."""

import numpy as np
import pytest

from bestiary_keras.exercises import yolov2


def test_euclidean_kmeans_two_obvious_clusters():
    sizes = np.array([[10, 10], [11, 11], [10, 11], [40, 40], [41, 40], [40, 41]], np.float32)
    centroids = yolov2.euclidean_kmeans(sizes, 2, seed=0)
    np.testing.assert_allclose(centroids, [[31 / 3, 32 / 3], [121 / 3, 121 / 3]], rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solution_1_iou_distance_serves_small_boxes(seed):
    r = yolov2.solution_1(seed=seed)
    for k in r["curve_iou"]:  # the chapter's narrow size range: the distance hardly matters
        assert abs(r["curve_iou"][k] - r["curve_euclidean"][k]) <= 0.015  # measured <= 0.010
    assert r["curve_iou"][1] < 0.7 and r["curve_iou"][3] > 0.83  # 0.65-0.67 and 0.85
    iou, euclid = r["wide"]["iou"], r["wide"]["euclidean"]
    assert iou["small"] > euclid["small"] + 0.015  # measured +0.030 to +0.049
    assert iou["large"] > euclid["large"] - 0.02  # measured -0.009 to +0.002
    assert iou["all"] > euclid["all"] - 0.005


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_2_offsets_leave_their_cell(seed):
    r = yolov2.solution_2(seed=seed)
    assert r["outside_direct"] == 0.0  # a sigmoid cannot leave the cell
    assert r["outside_offset"] > 0.5  # measured 0.66 to 0.95 over seeds 0-2
    assert r["mean_shift_offset"] > 4 * r["mean_shift_direct"]
    assert min(r["slope_offset"]) > 4 * r["slope_direct_max"]


def test_solution_3_passthrough_by_hand():
    r = yolov2.solution_3()
    assert r["shape"] == (1, 8, 8, 64)
    assert r["max_error_keras"] == 0.0 and r["max_error_tf"] == 0.0 and r["inverse_error"] == 0.0
    assert r["pooling_exact_share"] == pytest.approx(0.25) and r["pooling_error"] > 0.2
    assert r["params_by_hand"] == r["params_models"] == 37_696
