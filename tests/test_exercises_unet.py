"""The worked solutions of notebook 08's exercises (``bestiary_keras.exercises.unet``)."""

import pytest

from bestiary_keras.exercises import unet as exercises


def test_solution_1_closed_form_matches_every_size_and_the_built_models():
    result = exercises.solution_1(verbose=False)
    assert result["mismatches"] == 0
    assert result["paper_output"] == 388
    # depth 4: smallest tile 188 -> 4, shrink 184, margin 92 (the paper's overlap-tile border)
    assert result["table"][3] == (4, 188, 4, 16, 184, 92)
    assert all(built == formula for _, _, built, formula in result["models"])


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_2_sigma_two_concentrates_the_border_term_on_the_gaps(seed):
    rows = exercises.solution_2(seed, verbose=False)
    small, mid, large = rows[1.0], rows[2.0], rows[5.0]
    # sigma = 1: the term vanishes (0.05 measured on seeds 0-2, w_c is about 1.8)
    assert small["mean_weight_separating"] < 0.2
    # sigma = 2 puts the largest share on the separating pixels (0.68-0.72 on seeds 0-2) ...
    assert mid["share_on_separating_pixels"] > 0.6
    # ... the paper's sigma = 5 spreads most of it elsewhere (0.44-0.47 on seeds 0-2)
    assert large["share_on_separating_pixels"] < 0.55
    assert mid["share_on_separating_pixels"] > large["share_on_separating_pixels"] + 0.1
    assert large["mean_weight_background"] > 5 * mid["mean_weight_background"]


@pytest.mark.parametrize("seed", [0, 1])
def test_solution_3_naive_stride_breaks_the_tiling(seed):
    result = exercises.solution_3(seed, verbose=False)
    assert (result["output_size"], result["margin"]) == (20, 44)
    assert (result["good_stride"], result["naive_stride"]) == (16, 20)
    # stride 16: float round-off (<= 1e-5 of the spread on seeds 0-2)
    assert result["good_relative_difference"] < 1e-4
    # stride 20: 1.8-6.5 times the spread on seeds 0-2
    assert result["naive_relative_difference"] > 0.5
