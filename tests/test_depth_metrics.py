"""Depth errors and trajectory error: hand cases and scikit-image's Middlebury stereo pair."""

import numpy as np
import pytest

from bestiary_keras.depth import metrics


def test_depth_metrics_hand_case_without_scaling():
    gt = np.array([[1.0, 2.0], [4.0, 8.0]])
    pred = np.array([[1.0, 2.0], [5.0, 4.0]])
    m = metrics.depth_metrics(gt, pred, min_depth=0.1, max_depth=100, median_scaling=False)
    assert m["abs_rel"] == pytest.approx((0 + 0 + 0.25 + 0.5) / 4)
    assert m["sq_rel"] == pytest.approx((1 / 4 + 16 / 8) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 16) / 4))
    assert m["rmse_log"] == pytest.approx(np.sqrt((np.log(1.25) ** 2 + np.log(2) ** 2) / 4))
    # ratios 1, 1, 1.25, 2: 1.25 is not < 1.25
    assert (m["a1"], m["a2"], m["a3"]) == (pytest.approx(0.5), pytest.approx(0.75),
                                           pytest.approx(0.75))


def test_median_scaling_forgives_a_global_scale_only():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 10, (3, 8, 8))
    scaled = metrics.depth_metrics(gt, 3.7 * gt, min_depth=0.5, max_depth=20)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12) and scaled["a1"] == 1.0
    unscaled = metrics.depth_metrics(gt, 3.7 * gt, min_depth=0.5, max_depth=20,
                                     median_scaling=False)
    assert unscaled["abs_rel"] > 0.5


def test_invalid_ground_truth_is_skipped_and_shapes_are_checked():
    gt = np.array([[np.nan, 2.0], [np.inf, 0.0]])
    m = metrics.depth_metrics(gt, np.full((2, 2), 2.0), min_depth=0.1, max_depth=80)
    assert m["abs_rel"] == 0.0
    with pytest.raises(ValueError, match="same shape"):
        metrics.depth_metrics(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="no ground-truth"):
        metrics.depth_metrics(np.full((2, 2), np.nan), np.ones((2, 2)))


def test_middlebury_motorcycle_truth_perturbed_and_constant():
    """The depth metrics on scikit-image's bundled stereo pair with its true disparity."""
    import skimage.data

    _, _, disparity = skimage.data.stereo_motorcycle()
    # calibration of the down-sampled pair (skimage's docstring), depth in metres
    depth = metrics.disparity_to_depth(disparity, focal=994.978, baseline=0.193001,
                                       doffs=31.086)
    valid = np.isfinite(depth)
    assert 0.5 < valid.mean() < 1.0
    assert 0.5 < np.nanmin(depth) and np.nanmax(depth) < 10.0
    truth = metrics.depth_metrics(depth, depth, min_depth=0.1, max_depth=80)
    assert truth["abs_rel"] < 1e-12 and truth["rmse"] < 1e-12 and truth["a1"] == 1.0
    rng = np.random.default_rng(0)
    noisy = depth * np.exp(rng.normal(0, 0.1, depth.shape))  # 10 % log-normal noise
    m_noisy = metrics.depth_metrics(depth, noisy, min_depth=0.1, max_depth=80)
    assert 0.06 < m_noisy["abs_rel"] < 0.1 and m_noisy["rmse_log"] == pytest.approx(0.1, abs=0.01)
    constant = metrics.depth_metrics(depth, metrics.constant_depth(depth), min_depth=0.1,
                                     max_depth=80)
    assert constant["abs_rel"] > 2 * m_noisy["abs_rel"] and constant["a1"] < m_noisy["a1"]


def test_disparity_to_depth_hand_case():
    d = metrics.disparity_to_depth([10.0, 0.0, np.nan, -5.0], focal=100, baseline=0.5)
    np.testing.assert_allclose(d[:1], [5.0])
    assert np.isnan(d[1:]).all()


def test_snippet_positions_and_trajectory_error():
    # the camera moves 1 along z per frame: T_{s<-t} translates target points by -dz
    back, ahead = np.eye(4), np.eye(4)
    back[2, 3], ahead[2, 3] = 1.0, -1.0
    positions = metrics.snippet_positions(np.stack([back, ahead]))
    np.testing.assert_allclose(positions, [[0, 0, -1], [0, 0, 0], [0, 0, 1]])
    # a prediction right up to scale has no error; no motion costs the whole path
    assert metrics.absolute_trajectory_error(positions, 0.3 * positions) == pytest.approx(0.0)
    still = metrics.absolute_trajectory_error(positions, np.zeros_like(positions))
    assert still == pytest.approx(np.sqrt(1 + 4) / 3)  # relative to the first frame: 0, 1, 2
    with pytest.raises(ValueError, match="frames, 3"):
        metrics.absolute_trajectory_error(positions, positions[:, :2])
