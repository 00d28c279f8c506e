"""Notebook 02's exercises: the worked solutions run and reach the outcomes the notebook states."""

import pytest

from bestiary_keras.exercises import resnet


def test_solution_1_bottleneck_arithmetic_and_table_1():
    result = resnet.solution_1()
    weights = {name: w for name, (w, _, _) in result["blocks"].items()}
    assert list(weights.values()) == [73_728, 69_632, 1_179_648]
    for w, macs, hand in result["blocks"].values():
        assert w == hand and macs == w * 56 * 56
    for depth, macs in result["nets"].items():
        assert macs / 1e9 == pytest.approx(resnet.PAPER_GFLOPS[depth], rel=0.02)
    assert result["nets"][50] / result["nets"][34] == pytest.approx(1.055, abs=0.01)


def test_solution_2_first_layer_gradient_against_depth():
    result = resnet.solution_2()
    plain = [result[n, False]["ratio"] for n in (1, 3, 5, 9)]
    residual = [result[n, True]["ratio"] for n in (1, 3, 5, 9)]
    # seeds 0-2: plain 0.8-1.0, 5-8, 21-57, 1,100-2,300; residual between 1.0 and 8.3
    assert plain[0] < plain[1] < plain[2] < plain[3]
    assert plain[3] > 200
    assert max(residual) < 20
    assert plain[3] > 30 * residual[3]


def test_solution_3_construction_argument():
    result = resnet.solution_3()
    assert result["residual_difference"] < 1e-5
    assert result["plain_zero_spread"] < 1e-6
    assert result["plain_delta_difference"] < 1e-3
