"""Notebook 17's exercise solutions (``bestiary_keras.exercises.lift``) and their stated
outcomes. Margins from seeds 0, 1, 2: softargmax error at beta = 10 0.047-0.053 px, dx/dmu
0.978-0.987; centroid orientation 3.8-5.7 deg against a constant angle's 18-27 deg, pure
rotations 0.63-0.64 deg, weak / strong half 2.3-4.2; training order: see solution_3's test."""

import pytest

from bestiary_keras.exercises import lift


def test_solution_1_softargmax_temperature():
    r = lift.solution_1(seed=0)
    soft = dict(zip(r["betas"], zip(r["soft_error"], r["soft_gradient"])))
    assert 0.3 < r["argmax_error"] < 0.45  # a whole pixel: about 0.38 on average
    # beta = 1: pulled to the window's centre, almost no gradient
    assert soft[1.0][0] > 0.8 * r["window_centre_error"] and soft[1.0][1] < 0.1
    # beta = 10: sub-pixel, and the location follows the bump
    assert soft[10.0][0] < 0.1 and soft[10.0][1] == pytest.approx(1.0, abs=0.1)
    # beta = 1000: the argmax again, without a gradient
    assert soft[1000.0][0] == pytest.approx(r["argmax_error"], abs=0.05)
    assert abs(soft[1000.0][1]) < 0.01 and abs(soft[300.0][1]) < 0.01


def test_solution_2_centroid_orientation():
    r = lift.solution_2(seed=0)
    assert r["median_error"] < 8.0 and r["median_error"] < 0.5 * r["median_error_constant"]
    assert r["median_error_pure_rotation"] < 1.5
    assert r["median_error_weak"] > 1.5 * r["median_error_strong"]


def test_solution_3_end_to_end_collapses_desc():
    # seeds 0, 1, 2: non-matching distance 21x to 270,000x smaller end to end, ORI's gradient
    # 350x to 1e6x smaller; DESC first: non-matching / matching 3.4-5.1, ORI's gradient 2.2-6.3
    # times the untrained one
    r = lift.solution_3(seed=0)
    initial, collapsed, first = r["initial"], r["end_to_end"], r["desc_first"]
    assert collapsed["non_matching"] < 0.1 * initial["non_matching"]
    assert collapsed["matching"] < 0.2 * initial["matching"]
    assert collapsed["ori_gradient"] < 0.01 * initial["ori_gradient"]
    assert first["non_matching"] > 2.0 * first["matching"]
    assert first["ori_gradient"] > initial["ori_gradient"]
