"""Patches under random homographies and the feature-point metrics (notebooks 15 and 17)."""

import numpy as np
import pytest

from bestiary_keras.metric_learning import evaluation, patches

NO_LIGHT_CHANGE = dict(gain=(1, 1), bias=0.0, gamma=(1, 1), noise=0.0)


def test_random_homography_without_change_is_the_identity():
    h = patches.random_homography(np.random.default_rng(0), (100, 80), rotation_deg=0,
                                  scale=(1, 1), shear=0, perspective=0, shift=0)
    np.testing.assert_allclose(h, np.eye(3), atol=1e-12)


def test_random_homography_rotates_about_the_centre():
    h = patches.random_homography(np.random.default_rng(0), (101, 101), rotation_deg=30,
                                  scale=(1, 1), shear=0, perspective=0, shift=0)
    centre = evaluation.project_points([[50, 50]], h)
    np.testing.assert_allclose(centre, [[50, 50]], atol=1e-9)
    angle = patches.local_rotation_deg(h, [[10, 20]])[0]
    assert -30 <= angle <= 30
    # a vector keeps its length under a pure rotation
    p = evaluation.project_points([[60, 50], [50, 50]], h)
    assert np.linalg.norm(p[0] - p[1]) == pytest.approx(10.0)


def test_extract_patches_centre_convention():
    image = np.zeros((20, 20), np.float32)
    image[10, 7] = 1.0  # row 10, column 7: the point (x, y) = (7, 10)
    patch = patches.extract_patches(image, [(7, 10)], 8)[0]
    assert np.argwhere(patch == 1.0).tolist() == [[4, 4]]  # at (size / 2, size / 2)
    half = patches.extract_patches(image, [(7.5, 10)], 8)[0]
    np.testing.assert_allclose(half[4, 3:5], [0.5, 0.5])


def test_normalize_patches():
    p = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32) * 5 + 2
    n = patches.normalize_patches(p)
    assert n.shape == (3, 8, 8, 1)
    np.testing.assert_allclose(n.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(n.std(axis=(1, 2, 3)), 1, atol=1e-3)
    with pytest.raises(ValueError, match="patches"):
        patches.normalize_patches(np.zeros((8, 8)))


def test_correspondences_under_a_pure_shift_are_identical_patches():
    rng = np.random.default_rng(0)
    # rotation/scale/shear/perspective off, an integer shift is not guaranteed by the sampler,
    # so test the identity (shift 0): both views then show exactly the same patch.
    corr = patches.sample_correspondences(
        rng, ("camera",), views_per_photo=1, points_per_view=20, patch_size=16,
        homography_kwargs=dict(rotation_deg=0, scale=(1, 1), shear=0, perspective=0, shift=0),
        photometric_kwargs=NO_LIGHT_CHANGE)
    assert len(corr) == 20
    np.testing.assert_allclose(corr.patches_1, corr.patches_2, atol=1e-6)
    np.testing.assert_allclose(corr.points_1, corr.points_2, atol=1e-4)


def test_correspondences_follow_the_homography():
    rng = np.random.default_rng(1)
    corr = patches.sample_correspondences(rng, ("camera", "brick"), views_per_photo=2,
                                          points_per_view=30, patch_size=32,
                                          photometric_kwargs=NO_LIGHT_CHANGE)
    assert corr.patches_1.shape[1:] == (32, 32) and len(np.unique(corr.group)) == 4
    # the view-2 patch around the projected point resembles the view-1 patch far more than
    # the view-2 patch of another point does
    a = patches.normalize_patches(corr.patches_1).reshape(len(corr), -1)
    b = patches.normalize_patches(corr.patches_2).reshape(len(corr), -1)
    same = np.mean(np.sum(a * b, 1))
    other = np.mean(np.sum(a * np.roll(b, 1, axis=0), 1))
    assert same > other + 0.3 * a.shape[1]


def test_make_patch_pairs_labels():
    rng = np.random.default_rng(0)
    corr = patches.sample_correspondences(rng, ("camera",), views_per_photo=2,
                                          points_per_view=25, patch_size=16)
    a, b, labels = patches.make_patch_pairs(corr, rng)
    assert a.shape == b.shape == (50, 16, 16) and 0.3 < labels.mean() < 0.7
    np.testing.assert_array_equal(b[labels == 1], corr.patches_2[labels == 1])
    for i in np.flatnonzero(labels == 0):
        assert not np.array_equal(b[i], corr.patches_2[i])


def test_quadruplets_and_sift_descriptors():
    rng = np.random.default_rng(0)
    corr = patches.sample_correspondences(rng, ("camera",), views_per_photo=1,
                                          points_per_view=10, patch_size=32)
    quads = patches.make_quadruplets(corr, rng, ("camera",))
    assert quads.shape == (10, 4, 32, 32)
    np.testing.assert_array_equal(quads[:, 0], corr.patches_1)
    np.testing.assert_array_equal(quads[:, 1], corr.patches_2)
    desc = patches.sift_descriptors(quads[:, 0])
    assert desc.shape == (10, 128) and np.all(np.linalg.norm(desc, axis=1) > 0)


def test_make_image_pairs():
    pairs = patches.make_image_pairs(np.random.default_rng(0), ("camera",), size=64)
    (image_1, image_2, h), = pairs
    assert image_1.shape == image_2.shape == (64, 64) and h.shape == (3, 3)


# --- feature-point metrics ------------------------------------------------------------------

SHIFT = np.array([[1, 0, 5], [0, 1, 0], [0, 0, 1]], np.float64)  # x + 5


def test_repeatability_hand_case():
    p1 = np.array([[10, 10], [20, 20], [30, 30], [97, 50]], np.float64)  # the last leaves view 2
    p2 = np.array([[15, 10], [25, 21], [60, 60]], np.float64)
    # view 1: 3 points visible, 2 repeat; view 2: 3 visible (back-projections x - 5 >= 0), 2
    # repeat -> (2 + 2) / (3 + 3)
    r = evaluation.repeatability(p1, p2, SHIFT, (100, 100), (100, 100), pixel_threshold=2)
    assert r == pytest.approx(4 / 6)


def test_matching_score_and_average_precision_hand_case():
    p1 = np.array([[10, 10], [20, 20], [30, 30]], np.float64)
    p2 = np.array([[15, 10], [25, 20], [35, 30]], np.float64)
    desc_1 = np.array([[0, 0], [1, 0], [0, 1]], np.float64)
    good = evaluation.matching_score(p1, p2, desc_1, desc_1, SHIFT, (100, 100), (100, 100))
    assert good == pytest.approx(1.0)
    # the first two points' descriptors swapped (and moved a little) in view 2: only the third
    # match is right, and it is the closest, so it comes first in the ranking
    swapped = desc_1[[1, 0, 2]] + np.array([[0.01, 0], [0.01, 0], [0, 0]])
    score = evaluation.matching_score(p1, p2, desc_1, swapped, SHIFT, (100, 100), (100, 100))
    assert score == pytest.approx(1 / 3)
    ap = evaluation.matches_average_precision(p1, p2, desc_1, desc_1, SHIFT)
    assert ap == pytest.approx(1.0)
    assert evaluation.matches_average_precision(p1, p2, desc_1, swapped, SHIFT) == \
        pytest.approx(1 / 3)
    i, j, d = evaluation.match_descriptors(desc_1, swapped)
    np.testing.assert_array_equal(j[np.argsort(i)], [1, 0, 2])
