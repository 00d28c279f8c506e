"""Simple points and the warping error (bestiary_keras.segmentation.topology, notebook 08)."""

import numpy as np
import pytest
from scipy import ndimage

from bestiary_keras.segmentation import topology


def _patch(rows):
    return np.array([[c == "#" for c in row] for row in rows])


@pytest.mark.parametrize("rows, y, x, simple", [
    (["###", "###", "###"], 1, 1, False),   # removing the centre punches a hole
    ([".....", ".###.", "....."], 1, 3, True),  # the end of a line
    ([".....", ".###.", "....."], 1, 2, False),  # the middle of a line: it would split
    ([".....", "..#..", "....."], 1, 2, False),  # an isolated pixel: an object would vanish
    (["#.#", "#.#", "#.#"], 1, 1, False),   # a one-pixel gap between two objects: a merge
    (["###", "###", "..."], 0, 0, True),    # a corner of a block
    (["#..", "...", "..."], 1, 1, False),   # a diagonal neighbour only: a new 4-connected object
])
def test_simple_points_by_hand(rows, y, x, simple):
    assert topology.is_simple(_patch(rows), y, x) is simple


def test_connectivity_pair_matters():
    # With 8-connected objects, a pixel touching an object only at a corner joins it: simple.
    assert topology.is_simple(_patch(["#..", "...", "..."]), 1, 1, foreground_connectivity=8)
    # Duality: swapping objects and background swaps the connectivities.
    four, eight = topology.simple_point_table(4), topology.simple_point_table(8)
    assert (four != eight).any()
    assert all(eight[k] == four[255 - k] for k in range(256))
    with pytest.raises(ValueError, match="foreground_connectivity must be 4"):
        topology.simple_points(np.zeros((3, 3)), foreground_connectivity=6)


def _two_cells():
    truth = np.zeros((5, 11), bool)
    truth[1:4, 2:5] = truth[1:4, 6:9] = True  # two 3x3 cells, a one-pixel gap at column 5
    return truth


def test_warping_error_hand_cases():
    truth = _two_cells()
    pixels = truth.size  # 55
    # A boundary drawn one pixel off: 3 pixel errors, no topological error.
    shifted = truth.copy()
    shifted[1:4, 1] = True
    assert topology.pixel_error(truth, shifted) == pytest.approx(3 / pixels)
    assert topology.warping_error(truth, shifted) == 0.0
    # One pixel in the gap merges the cells (4-connected): that pixel cannot be warped away.
    merged = truth.copy()
    merged[2, 5] = True
    assert topology.warping_error(truth, merged) == pytest.approx(1 / pixels)
    # A missing cell: its 9 pixels shrink to one, whose removal would delete an object.
    missing = truth.copy()
    missing[1:4, 6:9] = False
    assert topology.pixel_error(truth, missing) == pytest.approx(9 / pixels)
    assert topology.warping_error(truth, missing) == pytest.approx(1 / pixels)
    # A hole in a 5x5 cell: one pixel.
    big = np.zeros((7, 7), bool)
    big[1:6, 1:6] = True
    holed = big.copy()
    holed[3, 3] = False
    assert topology.warping_error(big, holed) == pytest.approx(1 / big.size)
    assert topology.warping_error(big, big) == 0.0


def test_warping_keeps_the_topology_and_settles():
    rng = np.random.default_rng(0)
    truth = ndimage.gaussian_filter(rng.normal(size=(4, 40, 40)), (0, 2, 2)) > 0.05
    prediction = ndimage.gaussian_filter(rng.normal(size=(4, 40, 40)), (0, 2, 2)) > 0.05
    warped = topology.warp_to(truth, prediction)
    four = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    for t, w in zip(truth, warped):
        # the outside counts as background: pad before counting background components
        assert ndimage.label(w, four)[1] == ndimage.label(t, four)[1]
        assert (ndimage.label(np.pad(~w, 1, constant_values=True), np.ones((3, 3)))[1]
                == ndimage.label(np.pad(~t, 1, constant_values=True), np.ones((3, 3)))[1])
    # a local minimum: no simple pixel of the warped map disagrees with the prediction
    assert not ((warped != prediction) & topology.simple_points(warped)).any()
    # warping only removes errors
    error = topology.warping_error(truth, prediction)
    assert 0 < error < topology.pixel_error(truth, prediction)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        topology.warping_error(np.zeros((3, 3)), np.zeros((3, 4)))
