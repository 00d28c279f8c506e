"""Depth and trajectory errors as in Zhou et al. (2017) and Eigen et al. (2014).

Depth (per image, then averaged), over pixels with a ground truth in ``[min_depth, max_depth]``,
after **median scaling** (a monocular network knows depth only up to scale: the prediction is
multiplied by ``median(gt) / median(pred)`` of each image, then clipped to the range):

* abs-rel ``mean |d - d*| / d*``, sq-rel ``mean (d - d*)^2 / d*``,
* RMSE ``sqrt(mean (d - d*)^2)``, RMSE log ``sqrt(mean (log d - log d*)^2)``,
* ``delta < 1.25^k``: the fraction of pixels with ``max(d / d*, d* / d) < 1.25^k``, k = 1, 2, 3.

Trajectory: the absolute trajectory error (ATE) of a snippet's camera positions, after aligning
the first frames and a least-squares scale (the paper's code, ``compute_ate``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEPTH_METRICS",
    "absolute_trajectory_error",
    "constant_depth",
    "depth_metrics",
    "disparity_to_depth",
    "snippet_positions",
]

DEPTH_METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
"""Lower is better for the first four, higher for the ``delta < 1.25^k`` fractions a1-a3."""


def _one_image(gt, pred, min_depth, max_depth, median_scaling):
    valid = np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth)
    if not valid.any():
        raise ValueError("an image has no ground-truth depth in [min_depth, max_depth].")
    gt, pred = gt[valid].astype(np.float64), pred[valid].astype(np.float64)
    pred = np.where(np.isfinite(pred), pred, max_depth)
    if median_scaling:
        pred = pred * np.median(gt) / max(np.median(pred), 1e-12)
    pred = np.clip(pred, min_depth, max_depth)
    ratio = np.maximum(gt / pred, pred / gt)
    return np.array([
        np.mean(np.abs(gt - pred) / gt),
        np.mean((gt - pred) ** 2 / gt),
        np.sqrt(np.mean((gt - pred) ** 2)),
        np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        np.mean(ratio < 1.25), np.mean(ratio < 1.25 ** 2), np.mean(ratio < 1.25 ** 3),
    ])


def depth_metrics(y_true, y_pred, *, min_depth: float = 1e-3, max_depth: float = 80.0,
                  median_scaling: bool = True) -> dict[str, float]:
    """The standard depth errors, per image then averaged (see the module docstring).

    Args:
        y_true: ground-truth depth ``(N, H, W)`` or ``(H, W)``; NaN, inf or out-of-range
            pixels have no ground truth and are skipped.
        y_pred: predicted depth, the same shape.
        min_depth, max_depth: the evaluated range (KITTI: 1e-3 to 80 m).
        median_scaling: rescale each prediction to the ground truth's median first.

    Returns:
        ``{name: value}`` for ``DEPTH_METRICS``.
    """
    gt, pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if gt.shape != pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {gt.shape} and "
                         f"{pred.shape}; resize the prediction to the ground truth first.")
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if gt.ndim != 3:
        raise ValueError(f"depth maps must be (N, H, W) or (H, W), got {gt.shape}.")
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}.")
    values = np.mean([_one_image(g, p, min_depth, max_depth, median_scaling)
                      for g, p in zip(gt, pred)], axis=0)
    return dict(zip(DEPTH_METRICS, map(float, values)))


def constant_depth(y_true) -> np.ndarray:
    """The trivial baseline: the same depth at every pixel (1 everywhere; with median scaling
    any constant gives the same errors, the ground truth's median)."""
    return np.ones_like(np.asarray(y_true, np.float64))


def disparity_to_depth(disparity, focal: float, baseline: float, doffs: float = 0.0):
    """Stereo disparity (pixels) -> depth ``focal * baseline / (disparity + doffs)``.

    ``doffs`` is the difference of the two cameras' principal points (Middlebury). NaN or
    non-positive disparities give NaN (no ground truth).
    """
    d = np.asarray(disparity, np.float64) + doffs
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(d) & (d > 0), focal * baseline / d, np.nan)


def snippet_positions(target_to_source) -> np.ndarray:
    """Camera centres of a snippet in the **target** frame from its ``T_{s<-t}`` matrices.

    Args:
        target_to_source: ``(..., S, 4, 4)``, one matrix per source frame in time order.

    Returns:
        ``(..., S + 1, 3)``: the sources' centres ``-R^T t`` around the target's (0, 0, 0),
        in time order, the target in the middle.
    """
    m = np.asarray(target_to_source, np.float64)
    rotation, t = m[..., :3, :3], m[..., :3, 3]
    centres = -np.einsum("...ji,...j->...i", rotation, t)
    half = m.shape[-3] // 2
    zero = np.zeros(centres.shape[:-2] + (1, 3))
    return np.concatenate([centres[..., :half, :], zero, centres[..., half:, :]], axis=-2)


def absolute_trajectory_error(gt_positions, pred_positions) -> float:
    """ATE of one snippet: align the first frames, fit one scale, compare the positions.

    As the paper's code (``compute_ate``): both trajectories are taken relative to their first
    frame, the prediction is scaled by ``s = sum(gt * pred) / sum(pred^2)``, and the error is
    ``sqrt(sum |s pred - gt|^2) / F`` (the paper's normalisation, F frames). A prediction
    without motion is scored as it is (scale 1).

    Args:
        gt_positions, pred_positions: ``(F, 3)`` camera centres of the same frames.

    Returns:
        The error, in the ground truth's units.
    """
    gt = np.asarray(gt_positions, np.float64)
    pred = np.asarray(pred_positions, np.float64)
    if gt.shape != pred.shape or gt.ndim != 2 or gt.shape[1] != 3:
        raise ValueError(f"positions must both be (frames, 3), got {gt.shape} and {pred.shape}.")
    gt, pred = gt - gt[0], pred - pred[0]
    denominator = np.sum(pred ** 2)
    scale = np.sum(gt * pred) / denominator if denominator > 1e-12 else 1.0
    return float(np.sqrt(np.sum((scale * pred - gt) ** 2)) / len(gt))
