"""The worked solutions of notebook 14's exercises (``bestiary_keras.exercises.depth``)."""

import pytest

from bestiary_keras.exercises import depth as exercises


@pytest.mark.parametrize("seed", [0, 2])
def test_solution_1_texture_makes_the_depth_minimum_sharp(seed):
    result = exercises.solution_1(seed, verbose=False)
    textured, blurred = result["textured"], result["blurred"]
    assert textured["argmin_scale"] == pytest.approx(1.0)
    assert textured["rise_half"] > 2.0 and textured["rise_double"] > 1.5  # 2.7-4.6, 1.8-2.9
    for side in ("rise_half", "rise_double"):  # excess 3-10 times smaller on seeds 0-2
        assert textured[side] - 1 > 2 * (blurred[side] - 1), side


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_2_depth_errors_are_subpixel_far_away_and_near_the_centre(seed):
    result = exercises.solution_2(seed, verbose=False)
    medians = result["medians"]
    assert medians["depth < 3"] > 4 * medians["depth > 8"]  # 8-19 times on seeds 0-2
    assert (medians["beyond 20 px from the centre"]
            > 4 * medians["within 8 px of the centre"])  # 7.8-17 times on seeds 0-2
    assert result["share_below_half_pixel"] > 0.9  # 0.96-1.00 on seeds 0-2


def test_solution_3_explainability_collapses_without_its_regulariser():
    result = exercises.solution_3(0, verbose=False)
    without, with_ = result["without"], result["with"]
    assert without["photometric"] < 0.05 * result["true_warp_loss"]  # about 1% on seeds 0-2
    assert without["mean_mask_in_view"] < 0.3  # 0.06-0.09 on seeds 0-2
    assert with_["distance_to_optimum"] < 0.05  # 0.005 on seeds 0-2
    assert with_["mean_mask_in_view"] > 0.95
    assert with_["photometric"] > 0.9 * result["true_warp_loss"]
