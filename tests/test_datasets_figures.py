"""The articulated-figure generator (datasets.figures): determinism, ground truth, errors."""

import numpy as np
import pytest

from bestiary_keras.datasets import figures
from bestiary_keras.datasets.figures import (
    FLIP_PAIRS,
    JOINT_NAMES,
    LIMBS,
    OKS_SIGMAS,
    check_keypoints,
    flip_keypoints,
    make_figures,
)


def test_skeleton_constants():
    assert len(JOINT_NAMES) == 14 and len(set(JOINT_NAMES)) == 14
    assert len(LIMBS) == 13 and len(OKS_SIGMAS) == 14
    # a tree rooted at the neck: every joint but the neck has exactly one parent
    children = [c for _, c in LIMBS]
    assert sorted(children) == sorted(set(range(14)) - {1})
    for right, left in FLIP_PAIRS:
        assert JOINT_NAMES[right].replace("right", "left") == JOINT_NAMES[left]
    assert JOINT_NAMES.index("neck") == 1


def test_deterministic_and_independent_of_count():
    a = make_figures(6, 48, seed=3, cache=False)
    b = make_figures(6, 48, seed=3, cache=False)
    c = make_figures(3, 48, seed=3, cache=False)
    d = make_figures(3, 48, seed=4, cache=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.images[:3], c.images)
    np.testing.assert_array_equal(a.keypoints[:3], c.keypoints)
    assert not np.array_equal(c.images, d.images)


def test_single_person_ground_truth():
    fs = make_figures(40, 64, seed=0, cache=False)
    assert fs.images.shape == (40, 64, 64, 3) and fs.images.dtype == np.uint8
    assert fs.keypoints.shape == (40, 1, 14, 3) and fs.keypoints.dtype == np.float32
    assert fs.person_masks.shape == (40, 1, 64, 64) and fs.person_masks.dtype == bool
    assert fs.boxes.shape == (40, 1, 4) and (fs.num_people == 1).all()
    kp = fs.keypoints[:, 0]
    # one figure per image, wholly inside: every joint labelled and inside [0, 64]
    assert set(np.unique(kp[..., 2])) <= {1.0, 2.0}
    assert kp[..., :2].min() >= 0 and kp[..., :2].max() <= 64
    # self-occlusion happens, but most joints are visible
    occluded = np.mean(kp[..., 2] == 1)
    assert 0.01 < occluded < 0.3
    # a visible joint lies on its person's visible mask
    n, j = np.nonzero(kp[..., 2] == 2)
    cols = np.minimum(kp[n, j, 0].astype(int), 63)
    rows = np.minimum(kp[n, j, 1].astype(int), 63)
    assert fs.person_masks[n, 0, rows, cols].all()
    # boxes are tight around the visible mask (exclusive end)
    for i in range(5):
        rows_, cols_ = np.nonzero(fs.person_masks[i, 0])
        np.testing.assert_array_equal(fs.boxes[i, 0],
                                      [cols_.min(), rows_.min(), cols_.max() + 1, rows_.max() + 1])
    # the figure differs from the background: pixels under the mask are not all one colour
    assert fs.person_masks.mean() > 0.05
    # left/right are not told apart by colour alone: some people share the colour of both sides
    r_wrist, l_wrist = JOINT_NAMES.index("right_wrist"), JOINT_NAMES.index("left_wrist")
    same = 0
    for i in range(len(fs)):
        (rx, ry, rv), (lx, ly, lv) = kp[i, r_wrist], kp[i, l_wrist]
        if rv == 2 and lv == 2:
            a = fs.images[i, min(int(ry), 63), min(int(rx), 63)].astype(int)
            b = fs.images[i, min(int(ly), 63), min(int(lx), 63)].astype(int)
            same += np.abs(a - b).max() <= 2
    assert same >= 3


def test_upright_people_have_their_right_side_on_the_image_left():
    fs = make_figures(60, 64, seed=1, cache=False)
    kp = fs.keypoints[:, 0]
    up = kp[:, 1, :2] - kp[:, 0, :2]  # head -> neck points "down" the body
    right = kp[:, 2, 0] - kp[:, 5, 0]  # right shoulder x - left shoulder x
    upright = up[:, 1] > 0.8 * np.linalg.norm(up, axis=1)
    assert upright.sum() > 20
    assert (right[upright] < 0).all()  # facing the camera


def test_several_people_padding_and_cuts():
    fs = make_figures(30, 64, people=(2, 4), seed=0, cache=False)
    assert fs.keypoints.shape == (30, 4, 14, 3)
    assert fs.num_people.min() >= 2 and fs.num_people.max() <= 4
    for i in range(30):
        k = fs.num_people[i]
        assert (fs.keypoints[i, k:] == 0).all() and not fs.person_masks[i, k:].any()
        assert (fs.keypoints[i, :k, :, 2] > 0).sum(-1).min() >= 5
    labelled = fs.keypoints[..., 2] > 0
    # some people are cut by the border (unlabelled joints of present people)
    present = np.arange(4)[None] < fs.num_people[:, None]
    assert (~labelled[present]).any()
    xy = fs.keypoints[..., :2][labelled]
    assert xy.min() >= 0 and xy.max() <= 64
    # unlabelled joints carry zeros, and the masks of different people never overlap
    assert (fs.keypoints[~labelled] == 0).all()
    assert (fs.person_masks.sum(1) <= 1).all()
    assert np.mean(fs.keypoints[..., 2][labelled] == 1) > 0.05  # people hide each other


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("BESTIARY_CACHE", str(tmp_path))
    first = make_figures(4, 32, people=(1, 2), seed=2)
    assert len(list(tmp_path.glob("figures_*.npz"))) == 1
    again = make_figures(4, 32, people=(1, 2), seed=2)
    for name in ("images", "keypoints", "num_people", "person_masks", "boxes"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    sub = first.subset([0, 2])
    np.testing.assert_array_equal(sub.keypoints, first.keypoints[[0, 2]])


def test_flip_keypoints_swaps_sides():
    fs = make_figures(3, 64, seed=5, cache=False)
    kp = fs.keypoints[:, 0]
    flipped = flip_keypoints(kp, 64)
    np.testing.assert_allclose(flipped[:, 0, 0], 64 - kp[:, 0, 0])  # head: mirrored only
    np.testing.assert_allclose(flipped[:, 2, 0], 64 - kp[:, 5, 0])  # right shoulder <- left
    np.testing.assert_allclose(flipped[:, 2, 1], kp[:, 5, 1])
    np.testing.assert_allclose(flip_keypoints(flipped, 64), kp, atol=1e-5)
    # the flip matches the flipped image (column c goes to 63 - c): visible joints stay on
    # the flipped person mask
    for i in range(3):
        mask = fs.person_masks[i, 0, :, ::-1]
        shown = flipped[i, flipped[i, :, 2] == 2]
        cols = np.minimum(shown[:, 0].astype(int), 63)
        rows = np.minimum(shown[:, 1].astype(int), 63)
        assert mask[rows, cols].all()


def test_bad_input_errors():
    good = np.zeros((2, 14, 3), np.float32)
    with pytest.raises(ValueError, match=r"keypoints has 13 joints.*skeleton has 14"):
        check_keypoints(np.zeros((2, 13, 3)))
    with pytest.raises(ValueError, match=r"\(x, y, v\)"):
        check_keypoints(np.zeros((2, 14, 2)))
    bad = good.copy()
    bad[1, 4] = (70.0, 10.0, 2.0)
    with pytest.raises(ValueError, match=r"keypoints\[1, 4\].*outside the 64x64 image.*v to 0"):
        check_keypoints(bad, 64)
    bad[1, 4, 2] = 0  # unlabelled: fine wherever it is
    check_keypoints(bad, 64)
    bad[1, 4, 2] = 3
    with pytest.raises(ValueError, match="visibility"):
        check_keypoints(bad)
    with pytest.raises(ValueError, match="outside"):
        flip_keypoints(np.array([[[80.0, 1.0, 2.0]] * 14]), 64)
    with pytest.raises(ValueError, match="num_images"):
        make_figures(0)
    with pytest.raises(ValueError, match="image_size"):
        make_figures(2, 16)
    with pytest.raises(ValueError, match="people"):
        make_figures(2, 64, people=(3, 2))
    with pytest.raises(ValueError, match="figure_size"):
        make_figures(2, 64, figure_size=(0.5, 1.5))
    with pytest.raises(ValueError, match="seed"):
        make_figures(2, 64, seed=-1)
    assert figures.__all__
