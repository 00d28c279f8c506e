"""Notebook 01's exercises: the worked solutions run and reach the outcomes the notebook states."""

import numpy as np
import pytest

from bestiary_keras.exercises import vgg


def test_solution_1_three_3x3_against_one_7x7():
    result = vgg.solution_1()
    assert result["field_3x3"] == result["field_7x7"] == 7
    assert result["params_3x3"] == result["hand_3x3"] == 110_784
    assert result["params_7x7"] == result["hand_7x7"] == 200_768
    assert result["vgg16_fields"] == {"block5_conv3": 196, "block5_pool": 212,
                                      "fc1 (as a 7x7 conv)": 404}


def test_solution_2_dense_map_size_and_boundary_effect():
    result = vgg.solution_2()
    assert result["field"] == 244
    for q, expected in {64: 1, 96: 2, 128: 3, 224: 6}.items():
        assert result[q]["map"] == (expected, expected) and result[q]["hand"] == expected
        assert result[q]["mac_ratio"] == pytest.approx(result[q]["hand_mac_ratio"], rel=1e-9)
    assert result[64]["relative_difference"].max() < 1e-5
    # seeds 0-2: the smallest difference at any location is 0.35 logit standard deviations
    for q in (96, 128, 224):
        assert result[q]["relative_difference"].min() > 0.05
    assert result[224]["mac_ratio"] == pytest.approx(224**2 / (36 * 64**2))


def test_solution_3_signal_scale_at_initialisation():
    result = vgg.solution_3()
    for name, r in result.items():
        # seeds 0-2: worst layer 1.29x, totals within 0.61 decades of the prediction
        assert r["worst_layer_ratio"] < 1.5, name
        assert abs(r["measured_log10"] - r["predicted_log10"]) < 0.9, name
    assert result["N(0, 0.01^2)"]["measured_log10"] < -8.0
    assert -4.0 < result["Glorot uniform"]["measured_log10"] < -2.0
    assert abs(result["He normal"]["measured_log10"]) < 1.0
    assert np.isfinite(result["He normal"]["predicted_log10"])
