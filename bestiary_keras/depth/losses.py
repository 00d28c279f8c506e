"""The view-synthesis objective of Zhou et al. (2017), term by term, in ``keras.ops``.

* photometric error (Eq. 1, weighted by the explainability mask as in Eq. 3):
  ``L_vs = sum_s sum_p E_s(p) |I_t(p) - I_s_hat(p)|``, averaged over the valid pixels,
  optionally mixed with SSIM (``alpha (1 - SSIM) / 2 + (1 - alpha) L1``, Godard et al.);
* edge-aware smoothness of the disparity (Godard et al. 2017; the paper penalises the
  second-order gradients of depth, see the notebook):
  ``L_smooth = mean |d_x d*| e^{-|d_x I|} + |d_y d*| e^{-|d_y I|}``, ``d* = d / mean(d)``;
* the explainability regulariser, a cross-entropy towards "explainable" (``E = 1``):
  ``L_reg(E) = mean -log E``.

All take ``(y_true, y_pred)``-style tensors ``(B, H, W, C)``.
"""

from __future__ import annotations

from keras import ops

__all__ = [
    "edge_aware_smoothness",
    "explainability_regulariser",
    "photometric_error",
    "photometric_loss",
    "ssim",
]

_EPS = 1e-7


def ssim(x, y, c1: float = 0.01 ** 2, c2: float = 0.03 ** 2):
    """Per-pixel SSIM of two images in [0, 1] over 3x3 windows (reflect-free, 'same' size).

    Returns:
        ``(B, H, W, C)`` SSIM values in [-1, 1]; 1 where the windows are identical.
    """
    x, y = ops.cast(x, "float32"), ops.cast(y, "float32")

    def pool(t):
        return ops.average_pool(t, 3, strides=1, padding="same")

    mu_x, mu_y = pool(x), pool(y)
    var_x = pool(x * x) - mu_x * mu_x
    var_y = pool(y * y) - mu_y * mu_y
    cov = pool(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def photometric_error(y_true, y_pred, ssim_weight: float = 0.0):
    """Per-pixel photometric error ``(B, H, W, 1)``: L1 averaged over channels, SSIM optional.

    ``(1 - a) mean_c |y_true - y_pred| + a mean_c (1 - SSIM) / 2`` with ``a = ssim_weight``.
    """
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight!r}.")
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    error = ops.mean(ops.abs(y_true - y_pred), axis=-1, keepdims=True)
    if ssim_weight > 0:
        structure = ops.mean(ops.clip((1.0 - ssim(y_true, y_pred)) / 2.0, 0.0, 1.0), axis=-1,
                             keepdims=True)
        error = (1.0 - ssim_weight) * error + ssim_weight * structure
    return error


def photometric_loss(y_true, y_pred, valid=None, explainability=None, ssim_weight: float = 0.0):
    """``sum_p E(p) v(p) err(p) / sum_p v(p)``: the mean error over valid pixels, E-weighted.

    Args:
        y_true: the target image ``(B, H, W, C)``.
        y_pred: the target synthesised from a source.
        valid: ``(B, H, W, 1)`` 1 where the warp landed inside the source (``inverse_warp``);
            None = every pixel.
        explainability: ``(B, H, W, 1)`` mask ``E`` in (0, 1); None = 1 everywhere.
        ssim_weight: see ``photometric_error``.

    Returns:
        A scalar.
    """
    error = photometric_error(y_true, y_pred, ssim_weight)
    valid = ops.ones_like(error) if valid is None else ops.cast(valid, "float32")
    weight = valid if explainability is None else valid * explainability
    return ops.sum(error * weight) / ops.maximum(ops.sum(valid), 1.0)


def edge_aware_smoothness(image, disparity, normalise: bool = True):
    """Edge-aware first-order smoothness of a disparity map ``(B, H, W, 1)``.

    Disparity gradients cost less where the image has an edge: each is weighted by
    ``exp(-mean_c |image gradient|)``. With ``normalise`` the disparity is divided by its
    mean per image first, so shrinking the whole map does not lower the loss.
    """
    image = ops.cast(image, "float32")
    disparity = ops.cast(disparity, "float32")
    if normalise:
        disparity = disparity / (ops.mean(disparity, axis=(1, 2, 3), keepdims=True) + _EPS)
    d_dx = ops.abs(disparity[:, :, 1:] - disparity[:, :, :-1])
    d_dy = ops.abs(disparity[:, 1:] - disparity[:, :-1])
    i_dx = ops.mean(ops.abs(image[:, :, 1:] - image[:, :, :-1]), axis=-1, keepdims=True)
    i_dy = ops.mean(ops.abs(image[:, 1:] - image[:, :-1]), axis=-1, keepdims=True)
    return ops.mean(d_dx * ops.exp(-i_dx)) + ops.mean(d_dy * ops.exp(-i_dy))


def explainability_regulariser(mask):
    """``mean(-log E)``: the cross-entropy of the mask with the constant label "explainable".

    Without it the trivial solution ``E = 0`` would zero the photometric loss.
    """
    mask = ops.cast(mask, "float32")
    return ops.mean(-ops.log(ops.clip(mask, 1e-6, 1.0)))
