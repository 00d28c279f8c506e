"""Worked solutions of the exercises of notebook 14 (depth and ego-motion from video).

The notebook's "What to try next" already solves two exercises in its own cells (a rotation-only
camera teaches nothing about depth; depth and translation are known only up to one scale).
These three go further:

1. ``solution_1``: the photometric loss along the depth axis, for textured and for texture-less
   (blurred) frames.
2. ``solution_2``: how many pixels a 10% depth error moves in the warp, by depth and by distance
   from the image centre (the focus of expansion of a forward-moving camera).
3. ``solution_3``: the explainability mask's trivial solution without its regulariser, and the
   closed-form optimum with it.

Every solution uses the true depth and motion of a few generated snippets (no training).
"""

from __future__ import annotations

import keras
import numpy as np
from scipy import ndimage

from bestiary_keras.datasets import video
from bestiary_keras.depth import geometry, losses

__all__ = ["snippets", "solution_1", "solution_2", "solution_3"]

IMAGE_SIZE = (48, 64)  # the notebook's frames


def snippets(seed: int = 0, num: int = 4):
    """``num`` snippets of one corridor scene (video seed ``1000 + seed``), as float arrays.

    Returns:
        ``(targets (N, H, W, 3), later frames (N, H, W, 3), target depth (N, H, W),
        T_{t+1 <- t} (N, 4, 4), K)``; images in [0, 1].
    """
    data = video.make_video_snippets(num, IMAGE_SIZE, seed=1000 + seed, snippets_per_scene=num)
    targets = data.targets.astype(np.float32) / 255
    later = data.frames[:, 2].astype(np.float32) / 255
    return targets, later, data.target_depth, data.target_to_source()[:, 1], data.intrinsics


def solution_1(seed: int = 0, *, blur_sigma: float = 4.0, verbose: bool = True) -> dict:
    """Exercise 1: the loss landscape along depth, with and without texture.

    Exercise: with the true motion, warp the later frame to the target with the true depth
    scaled by ``s`` (``s`` from 0.5 to 2, geometric steps) and plot the photometric loss
    against ``s``, first on the frames as rendered, then on the same frames blurred with a
    Gaussian of 4 pixels (the walls' texture gone, the layout kept). Where is the minimum, and
    how much does the loss rise at ``s = 0.5`` and ``s = 2``?

    Method: ``geometry.inverse_warp`` and ``losses.photometric_loss`` (the mean L1 error over
    the pixels that land in view), 4 snippets of one scene; the rise is ``L(s) / L(1)``.

    Expected outcome (seeds 0, 1, 2): on the textured frames the loss is lowest at the true
    depth (``s = 1``) and rises 2.7-4.6 times at ``s = 0.5`` and 1.8-2.9 times at ``s = 2``;
    on the blurred frames it rises only 1.4-2.1 and 1.1-1.6 times (the excess over the minimum
    is 3-10 times smaller), and the minimum can drift off ``s = 1`` (to 1.19 on seed 2):
    without texture a wrong depth explains the frames almost as well, and the gradient that
    trains the depth network is weak. This is also why the
    smoothness term is edge-aware: texture-less regions get their depth from their neighbours.
    """
    targets, later, depth, motion, k = snippets(seed)
    scales = np.exp(np.linspace(np.log(0.5), np.log(2.0), 9))
    blurred = [ndimage.gaussian_filter(x, (0, blur_sigma, blur_sigma, 0)) for x in (targets, later)]
    curves = {}
    for name, (target, source) in {"textured": (targets, later), "blurred": blurred}.items():
        values = []
        for s in scales:
            warped, valid = geometry.inverse_warp(source, depth * s, motion, k)
            values.append(float(losses.photometric_loss(target, warped, valid)))
        values = np.asarray(values)
        curves[name] = {"loss": values.tolist(), "argmin_scale": float(scales[values.argmin()]),
                        "rise_half": float(values[0] / values[4]),
                        "rise_double": float(values[-1] / values[4])}
    if verbose:
        print("depth scale s:", " ".join(f"{s:6.2f}" for s in scales))
        for name, curve in curves.items():
            print(f"{name:13s}", " ".join(f"{v:6.4f}" for v in curve["loss"]),
                  f"| minimum at s = {curve['argmin_scale']:.2f}, L(0.5)/L(1) = "
                  f"{curve['rise_half']:.2f}, L(2)/L(1) = {curve['rise_double']:.2f}")
    return {"scales": scales.tolist(), **curves}


def solution_2(seed: int = 0, *, error: float = 0.1, verbose: bool = True) -> dict:
    """Exercise 2: where a depth error is visible at all.

    Exercise: the loss can only see a depth error through the pixel where the warp samples the
    source. For every target pixel, how far (in pixels) does that sample move when the depth is
    10% too large? Compare near and far pixels, and pixels near the image centre with pixels
    near its border; what share of the pixels moves by less than half a pixel?

    Method: warp a "coordinate image" (channel 0 = column ``u``, channel 1 = row ``v``) with
    ``geometry.inverse_warp``: bilinear sampling of a linear ramp returns the sampled
    coordinates ``p_s`` themselves. Compare ``p_s`` for the depth ``D`` and ``1.1 D`` with the
    true motion. For a camera moving forward by ``t_z`` a point at depth ``Z`` and ``r`` pixels
    from the focus of expansion moves by about ``r t_z / Z``; a 10% error in ``Z`` changes that
    by about a tenth: small for large ``Z`` and near the centre.

    Expected outcome (seeds 0, 1, 2; forward motion 0.24-0.39 per frame): the median shift is
    0.23-0.43 pixels for near pixels (depth below 3) and 0.023-0.029 for far ones (above 8),
    0.19-0.31 beyond 20 pixels from the centre and 0.018-0.024 within 8; 96-100% of the pixels
    move by less than half a pixel: a 10% depth error is a sub-pixel effect almost everywhere. The far end of the corridor sits at the centre of the image, where both effects
    add up: the photometric loss hardly sees its depth, which is why the network misses it.
    """
    _, _, depth, motion, k = snippets(seed)
    height, width = IMAGE_SIZE
    grid = geometry.pixel_grid(height, width)[..., :2]
    coordinates = np.repeat(grid[None], len(depth), axis=0).astype(np.float32)
    base, valid_base = geometry.inverse_warp(coordinates, depth, motion, k)
    moved, valid_moved = geometry.inverse_warp(coordinates, depth * (1 + error), motion, k)
    valid = (np.asarray(valid_base)[..., 0] > 0) & (np.asarray(valid_moved)[..., 0] > 0)
    shift = np.linalg.norm(np.asarray(base) - np.asarray(moved), axis=-1)
    radius = np.hypot(grid[..., 0] - (width - 1) / 2, grid[..., 1] - (height - 1) / 2)[None]
    groups = {"depth < 3": depth < 3, "depth > 8": depth > 8,
              "within 8 px of the centre": radius < 8, "beyond 20 px from the centre": radius > 20}
    medians = {name: float(np.median(shift[valid & mask])) for name, mask in groups.items()}
    result = {"medians": medians, "share_below_half_pixel": float((shift[valid] < 0.5).mean()),
              "median_shift": float(np.median(shift[valid])),
              "forward_motion": float(-motion[:, 2, 3].mean())}
    if verbose:
        print(f"camera moves {result['forward_motion']:.2f} forward per frame; the depth made "
              f"{error:.0%} too large moves the warp's sample by (median, pixels):")
        for name, value in medians.items():
            print(f"  {name:30s} {value:.3f}")
        print(f"all pixels in view: median {result['median_shift']:.3f}; "
              f"{result['share_below_half_pixel']:.1%} move by less than half a pixel")
    return result


def solution_3(seed: int = 0, *, explain_weight: float = 0.2, steps: int = 300,
               verbose: bool = True) -> dict:
    """Exercise 3: the explainability mask without and with its regulariser.

    Exercise: give every target pixel a free mask value ``E = sigmoid(logit)`` and minimise the
    photometric loss of the true warp, ``sum E v e / sum v`` (``losses.photometric_loss``), with
    and without the regulariser ``lambda_e mean(-log E)`` (``losses.
    explainability_regulariser``, ``lambda_e = 0.2`` as in the paper). Predict both optima.

    Method: the objective separates per pixel. Without the regulariser its derivative in ``E``
    is ``v e / V >= 0``: every mask value falls to 0 and the loss to 0, whatever the depth and
    motion (the trivial solution). With it, ``e / V - lambda_e / (N E) = 0`` gives
    ``E* = min(1, lambda_e V / (N e))`` on the pixels in view (``V`` of the ``N`` pixels) and
    ``E* = 1`` elsewhere: the mask drops only pixels whose error exceeds ``lambda_e V / N``
    (0.15 here), i.e. occlusions, not the ordinary resampling error (about 0.02). Both runs:
    ``steps`` of Adam (learning rate 0.1) on the logits from ``E = 0.5``.

    Expected outcome (seeds 0, 1, 2): without the regulariser the mask on the pixels in view
    falls to a mean of 0.06-0.09 (and keeps falling) and the weighted loss to 1-2e-4, about 1%
    of the true warp's own loss (0.008-0.020): the loss is "solved" without any geometry. With
    it the mask stays within 0.005 of ``E*`` on average, a mean of 0.99 in view, below 0.5 on
    at most 0.1% of the pixels.
    """
    import tensorflow as tf  # the TF backend's gradient tape (Keras has no backend-free one)

    targets, later, depth, motion, k = snippets(seed)
    warped, valid = geometry.inverse_warp(later, depth, motion, k)
    warped, valid = np.asarray(warped), np.asarray(valid)
    error = np.asarray(losses.photometric_error(targets, warped))
    in_view = valid.sum()
    true_loss = float(losses.photometric_loss(targets, warped, valid))
    with np.errstate(divide="ignore"):
        optimum = np.where(valid > 0, np.minimum(1.0, explain_weight * in_view
                                                 / (valid.size * error)), 1.0)
    result = {"true_warp_loss": true_loss, "error_threshold": explain_weight * in_view / valid.size}
    in_view_mask = valid > 0
    def make_step(logits, optimizer, weight):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                mask = keras.ops.sigmoid(logits)
                loss = losses.photometric_loss(targets, warped, valid, explainability=mask)
                if weight:
                    loss = loss + weight * losses.explainability_regulariser(mask)
            optimizer.apply_gradients([(tape.gradient(loss, logits), logits)])
        return step

    for name, weight in (("without", 0.0), ("with", explain_weight)):
        logits = keras.Variable(np.zeros_like(error), dtype="float32")
        optimizer = keras.optimizers.Adam(0.1)
        optimizer.build([logits])
        step = make_step(logits, optimizer, weight)
        for _ in range(steps):
            step()
        mask = keras.ops.convert_to_numpy(keras.ops.sigmoid(logits))
        result[name] = {
            "mean_mask_in_view": float(mask[in_view_mask].mean()),
            "photometric": float(losses.photometric_loss(targets, warped, valid,
                                                         explainability=mask)),
            "distance_to_optimum": float(np.abs(mask - optimum).mean()),
            "share_below_half": float((mask < 0.5).mean()),
        }
    result["optimum_mean"] = float(optimum.mean())
    if verbose:
        print(f"true depth and motion: photometric loss {true_loss:.4f}; E* < 1 where the error "
              f"exceeds {result['error_threshold']:.3f}; mean E* {result['optimum_mean']:.3f}")
        for name in ("without", "with"):
            row = result[name]
            print(f"{name:7s} regulariser: mean E in view {row['mean_mask_in_view']:.3f}, weighted "
                  f"photometric loss {row['photometric']:.4f}, mean |E - E*| "
                  f"{row['distance_to_optimum']:.3f}, E < 0.5 on {row['share_below_half']:.1%} "
                  "of the pixels")
    return result
