"""The worked exercises of notebook 09 (bestiary_keras.exercises.segnet) and their outcomes."""

import numpy as np
import pytest

from bestiary_keras.exercises import segnet


def test_boundary_map_by_hand():
    labels = np.zeros((1, 4, 4), int)
    labels[0, :, 2:] = 1  # a vertical edge between columns 1 and 2
    edges = segnet.boundary_map(labels)[0]
    np.testing.assert_array_equal(edges, [[0, 1, 1, 0]] * 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solution_1_indices_are_exact_nearest_is_complete(seed):
    r = segnet.solution_1(seed=seed)
    for levels in (1, 2, 3):
        assert r[levels]["indices"][0] == 1.0  # every value goes back where it was found
        assert r[levels]["nearest"][1] == 1.0  # every boundary pixel is covered
    recall = [r[n]["indices"][1] for n in (1, 2, 3)]
    precision = [r[n]["nearest"][0] for n in (1, 2, 3)]
    assert recall[0] > recall[1] > recall[2] > 0.05  # measured 0.43, 0.19, 0.08
    assert precision[0] > precision[1] > precision[2]  # measured 0.58, 0.33, 0.19
    assert precision[2] < 0.3 and recall[2] < 0.15


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_2_unpooling_is_the_pooling_gradient(seed):
    r = segnet.solution_2(seed=seed)
    assert r["random_max_error"] == 0.0
    assert r["tied_share"] > 0.2  # the ReLU-like map does test ties (measured 0.30 to 0.32)
    assert r["relu_max_error"] == 0.0 and r["mismatch_share"] == 0.0


def test_solution_3_memory_by_hand_and_the_lost_row():
    r = segnet.solution_3()
    for key, value in r["by_hand"].items():
        assert r["measured"][key] == pytest.approx(value)
    assert r["pooled_values"] == 5_260_800
    assert r["pooled_shape"] == (22, 30)
    assert r["lost_rows"] == [44] and r["lost_share"] == pytest.approx(60 / 2700)
