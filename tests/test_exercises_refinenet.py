"""The worked solutions of notebook 10's exercises (``bestiary_keras.exercises.refinenet``)."""

import itertools
import math

import pytest

from bestiary_keras.exercises import refinenet as exercises


def test_solution_1_chained_pooling_windows_grow_by_four_cells():
    result = exercises.solution_1(verbose=False)
    assert result["chained"] == {n: 1 + 4 * n for n in range(1, 7)}
    assert set(result["parallel"].values()) == {5}
    assert result["image_pixels"] == {4: 144, 3: 72, 2: 36, 1: 18}
    assert result["blocks_needed_refinenet1"] == 6


@pytest.mark.parametrize("seed", [0, 2])
def test_solution_2_activations_grow_and_zero_classifier_starts_at_ln5(seed):
    result = exercises.solution_2(seed, verbose=False)
    spreads = list(result["spreads"].values())
    assert all(b > a for a, b in itertools.pairwise(spreads))  # grows at every block
    assert result["growth"] > 10  # 29-66 on seeds 0-2
    assert result["zero_classifier_loss"] == pytest.approx(math.log(5), abs=1e-5)
    assert result["glorot_classifier_loss"] > math.log(5) + 1.5  # 4.04-4.22 on seeds 0-2


def test_solution_3_fusion_by_hand():
    result = exercises.solution_3(verbose=False)
    assert result["max_difference"] < 1e-5
    assert result["upsampled_row"] == [0.0, 0.25, 0.75, 0.75, 0.25, 0.0]
