"""Part affinity field targets (pose.paf): values worked out by hand, overlaps, bad input."""

import numpy as np
import pytest

from bestiary_keras.datasets.figures import LIMBS
from bestiary_keras.pose import paf, plots


def _person(points, v=2):
    """(J, 3) keypoints from a list of (x, y) (continuous image coordinates)."""
    out = np.zeros((len(points), 3), np.float32)
    out[:, :2] = points
    out[:, 2] = v
    return out


def test_coordinates_round_trip():
    # a 64-pixel image and 16 cells: cell 0 is centred at x = 2, cell 15 at x = 62
    assert paf.to_map_coordinates([2.0, 62.0], 64, 16).tolist() == [0.0, 15.0]
    assert paf.to_image_coordinates([0.0, 15.0], 64, 16).tolist() == [2.0, 62.0]


def test_single_horizontal_limb_by_hand():
    # stride 1 on an 8x8 image: cell m is centred at m + 0.5. Limb from x = 1.5 to x = 5.5 on
    # row y = 3.5, width 1: cells x = 1..5 on rows 2..4 hold (1, 0), everything else 0.
    keypoints = _person([(1.5, 3.5), (5.5, 3.5)])[None]
    fields = paf.part_affinity_fields(keypoints, [(0, 1)], image_size=8, map_size=8,
                                      limb_width=1.0)
    assert fields.shape == (8, 8, 2)
    expected = np.zeros((8, 8), np.float32)
    expected[2:5, 1:6] = 1.0
    np.testing.assert_allclose(fields[..., 0], expected)
    np.testing.assert_allclose(fields[..., 1], 0.0)


def test_diagonal_limb_is_a_unit_vector_and_points_from_parent_to_child():
    keypoints = _person([(10.5, 20.5), (20.5, 10.5)])[None]  # up and to the right
    fields = paf.part_affinity_fields(keypoints, [(0, 1)], 32, 32, limb_width=1.0)
    on = np.hypot(fields[..., 0], fields[..., 1]) > 0
    np.testing.assert_allclose(fields[on, 0], np.sqrt(0.5), rtol=1e-5)
    np.testing.assert_allclose(fields[on, 1], -np.sqrt(0.5), rtol=1e-5)  # y grows downwards
    assert on[15, 15] and not on[5, 5] and not on[25, 25]  # the midpoint (cell centre 15.5)


def test_overlapping_people_are_averaged_by_count():
    # two people, the same limb: one to the right, one downwards, crossing at cell (row 5, col 5)
    right = _person([(1.5, 5.5), (9.5, 5.5)])
    down = _person([(5.5, 1.5), (5.5, 9.5)])
    fields = paf.part_affinity_fields(np.stack([right, down]), [(0, 1)], 12, 12, limb_width=0.5)
    np.testing.assert_allclose(fields[5, 5], [0.5, 0.5])   # (1, 0) and (0, 1) averaged
    np.testing.assert_allclose(fields[5, 2], [1.0, 0.0])   # only the first person
    np.testing.assert_allclose(fields[2, 5], [0.0, 1.0])   # only the second


def test_unlabelled_end_gives_no_target_and_batches_stack():
    person = _person([(1.5, 3.5), (5.5, 3.5), (5.5, 7.5)])
    cut = person.copy()
    cut[2] = 0.0  # outside the image: not labelled
    batch = np.stack([person[None], cut[None]])  # (N=2, P=1, J=3, 3)
    fields = paf.part_affinity_fields(batch, [(0, 1), (1, 2)], 8, 8)
    assert fields.shape == (2, 8, 8, 4)
    assert np.abs(fields[0, ..., 2:]).sum() > 0
    assert np.abs(fields[1, ..., 2:]).sum() == 0  # limb 1 of the cut person: no target
    np.testing.assert_allclose(fields[0, ..., :2], fields[1, ..., :2])


def test_chapter_skeleton_on_a_stride_4_grid():
    rng = np.random.default_rng(0)
    keypoints = np.zeros((3, 2, 14, 3), np.float32)
    keypoints[..., :2] = rng.uniform(4, 60, size=(3, 2, 14, 2))
    keypoints[..., 2] = 2
    fields = paf.part_affinity_fields(keypoints, LIMBS, image_size=64, map_size=16)
    assert fields.shape == (3, 16, 16, 26)
    norms = np.hypot(fields[..., 0::2], fields[..., 1::2])
    assert norms.max() <= 1.0 + 1e-5 and norms.max() > 0.99


@pytest.mark.parametrize("keypoints, limbs, message", [
    (np.array([[[70.0, 3.0, 2.0], [1.0, 1.0, 2.0]]]), [(0, 1)], "outside"),
    (np.zeros((1, 2, 3)), [(0, 2)], "skeleton has 2 joints"),
    (np.zeros((1, 2, 3)), [0, 1], "pairs"),
    (np.zeros((1, 2, 2)), [(0, 1)], "visibility"),
])
def test_bad_input_is_a_clear_value_error(keypoints, limbs, message):
    with pytest.raises(ValueError, match=message):
        paf.part_affinity_fields(keypoints, limbs, image_size=64, map_size=16)


def test_bad_sizes():
    keypoints = _person([(1.5, 3.5), (5.5, 3.5)])[None]
    with pytest.raises(ValueError, match="map_size"):
        paf.part_affinity_fields(keypoints, [(0, 1)], image_size=8, map_size=16)
    with pytest.raises(ValueError, match="limb_width"):
        paf.part_affinity_fields(keypoints, [(0, 1)], image_size=8, map_size=8, limb_width=0)


def test_draw_pafs_draws_one_quiver_per_limb_with_arrows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keypoints = _person([(1.5, 3.5), (5.5, 3.5), (5.5, 7.5)])[None]
    fields = paf.part_affinity_fields(keypoints, [(0, 1), (1, 2)], 8, 8)
    fig, ax = plt.subplots()
    plots.draw_pafs(ax, fields, image_size=8)
    assert len(ax.collections) == 2
    with pytest.raises(ValueError, match="2 L"):
        plots.draw_pafs(ax, fields[..., :3], image_size=8)
    plt.close(fig)
