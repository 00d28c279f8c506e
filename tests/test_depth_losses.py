"""Every term of the view-synthesis objective on tiny hand-made tensors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from bestiary_keras.depth import losses


def test_photometric_error_is_the_channel_mean_of_l1():
    target = np.zeros((1, 1, 2, 2), np.float32)
    pred = np.array([[[[0.2, 0.4], [1.0, 0.0]]]], np.float32)
    error = np.asarray(losses.photometric_error(target, pred))
    np.testing.assert_allclose(error[0, 0, :, 0], [0.3, 0.5])
    with pytest.raises(ValueError, match="ssim_weight"):
        losses.photometric_error(target, pred, ssim_weight=2.0)


def test_photometric_loss_averages_over_valid_pixels_weighted_by_the_mask():
    target = np.zeros((1, 1, 4, 1), np.float32)
    pred = np.array([0.1, 0.2, 0.3, 0.9], np.float32).reshape(1, 1, 4, 1)
    valid = np.array([1, 1, 1, 0], np.float32).reshape(1, 1, 4, 1)
    # (0.1 + 0.2 + 0.3) / 3 valid pixels; the invalid 0.9 does not count
    assert float(losses.photometric_loss(target, pred, valid)) == pytest.approx(0.2)
    mask = np.array([1.0, 0.5, 0.0, 1.0], np.float32).reshape(1, 1, 4, 1)
    # (0.1 * 1 + 0.2 * 0.5 + 0.3 * 0) / 3
    assert float(losses.photometric_loss(target, pred, valid, mask)) == pytest.approx(0.2 / 3)
    assert float(losses.photometric_loss(target, pred)) == pytest.approx(1.5 / 4)
    # no valid pixel: 0, not NaN
    assert float(losses.photometric_loss(target, pred, np.zeros_like(valid))) == 0.0


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    rng = np.random.default_rng(0)
    x = rng.random((1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(losses.ssim(x, x)), 1.0, atol=1e-4)
    assert float(np.mean(losses.ssim(x, 1 - x))) < 0.0  # anti-correlated
    assert float(np.max(losses.photometric_error(x, x, ssim_weight=0.85))) < 1e-4
    # a constant offset c keeps the structure: SSIM's luminance term alone,
    # (2 m (m + c) + C1) / (m^2 + (m + c)^2 + C1) on flat images of value m
    flat = np.full((1, 5, 5, 1), 0.5, np.float32)
    value = float(losses.ssim(flat, flat + 0.1)[0, 2, 2, 0])
    c1 = 0.01 ** 2
    assert value == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.25 + 0.36 + c1), rel=2e-4)  # float32


def test_edge_aware_smoothness_hand_case():
    image = np.zeros((1, 2, 3, 1), np.float32)
    disparity = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], np.float32).reshape(1, 2, 3, 1)
    # normalised by its mean 2: x gradients 0.5 everywhere (4 of them), y gradients 0
    assert float(losses.edge_aware_smoothness(image, disparity)) == pytest.approx(0.5)
    assert float(losses.edge_aware_smoothness(image, disparity, normalise=False)) == (
        pytest.approx(1.0))
    # an image edge between columns 1 and 2 (step of 1) damps that gradient by e^-1
    image[..., 2, :] = 1.0
    expected = (0.5 + 0.5 * np.exp(-1.0)) / 2
    assert float(losses.edge_aware_smoothness(image, disparity)) == pytest.approx(expected)
    # a constant map costs nothing, whatever its value
    assert float(losses.edge_aware_smoothness(image, np.full_like(disparity, 7.0))) == 0.0


def test_explainability_regulariser_is_the_cross_entropy_with_one():
    mask = np.array([1.0, 0.5, 0.25, 0.0], np.float32).reshape(1, 1, 4, 1)
    expected = (0 + np.log(2) + np.log(4) + -np.log(1e-6)) / 4
    assert float(losses.explainability_regulariser(mask)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.explainability_regulariser(np.ones((1, 2, 2, 2)))) == 0.0
