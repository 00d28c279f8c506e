"""Confidence maps (belief maps) for keypoints: targets, decoding and the PCK metric.

Shared by CPM (notebook 12) and OpenPose (notebook 13). Coordinates follow
``datasets.figures``: keypoints ``(x, y, v)`` in image pixels, pixel ``(r, c)`` covering
``[c, c + 1) x [r, r + 1)``. A map of ``w x h`` cells over a ``W x H`` image has cells of
``W / w x H / h`` pixels; cell ``(i, j)`` is centred at image point
``((j + 0.5) W / w, (i + 0.5) H / h)``.

The target for joint ``j`` (CPM's Eq. and OpenPose's Eq. 6-7) is a Gaussian around each
labelled person's joint, the maximum over people (not the sum, so two close peaks stay
distinct):

.. math:: S^*_j(\\mathbf{p}) = \\max_k \\exp\\left(-\\frac{\\|\\mathbf{p} - \\mathbf{x}_{j,k}\\|^2}{2\\sigma^2}\\right)

with ``sigma`` in image pixels.
"""

from __future__ import annotations

import warnings

import numpy as np

from bestiary_keras.datasets.figures import FLIP_PAIRS, JOINT_NAMES, check_keypoints
from bestiary_keras.datasets.scenes import _pair  # int or (height, width), one rule everywhere

__all__ = [
    "PCK_REFERENCES",
    "TORSO_JOINTS",
    "confidence_maps",
    "keypoints_from_maps",
    "left_right_swaps",
    "pck",
    "visibility_mask",
]

TORSO_JOINTS = (JOINT_NAMES.index("right_shoulder"), JOINT_NAMES.index("left_hip"))
"""PCK's torso size: the distance from the right shoulder to the left hip (the torso diameter
of the LSP benchmark's PCK)."""

PCK_REFERENCES = ("torso", "bbox")


def _people_axis(keypoints):
    """(N, J, 3) -> (N, 1, J, 3); (N, P, J, 3) unchanged."""
    if keypoints.ndim == 3:
        return keypoints[:, None]
    if keypoints.ndim != 4:
        raise ValueError(f"keypoints must have shape (N, J, 3) or (N, P, J, 3), got "
                         f"{keypoints.shape}.")
    return keypoints


def confidence_maps(keypoints, image_size, map_size, sigma: float, *, background: bool = False,
                    num_joints: int | None = None) -> np.ndarray:
    """Gaussian confidence maps of the labelled keypoints (``v > 0``), max over people.

    Args:
        keypoints: (N, J, 3) or (N, P, J, 3) ``(x, y, v)`` in image pixels; joints with
            ``v = 0`` (not labelled, padding people) give no peak.
        image_size: the image's size, an int or ``(height, width)``.
        map_size: the maps' size, an int or ``(height, width)`` (e.g. image size / stride).
        sigma: the Gaussian's standard deviation in image pixels.
        background: append OpenPose's background channel, ``1 - max_j S_j``.
        num_joints: when given, ``J`` must equal it.

    Returns:
        float32 (N, h, w, J), or (N, h, w, J + 1) with the background channel.
    """
    image_h, image_w = _pair(image_size, "image_size")
    map_h, map_w = _pair(map_size, "map_size")
    if map_h < 1 or map_w < 1 or map_h > image_h or map_w > image_w:
        raise ValueError(f"map_size={map_size!r} must be between 1 and the image size "
                         f"{(image_h, image_w)}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (image pixels), got {sigma!r}.")
    keypoints = _people_axis(check_keypoints(keypoints, (image_h, image_w),
                                             num_joints=num_joints))
    xs = (np.arange(map_w, dtype=np.float32) + 0.5) * (image_w / map_w)
    ys = (np.arange(map_h, dtype=np.float32) + 0.5) * (image_h / map_h)
    # (N, P, J, w) and (N, P, J, h) separable Gaussians, masked by visibility
    gx = np.exp(-((xs - keypoints[..., 0:1]) ** 2) / (2.0 * sigma**2))
    gy = np.exp(-((ys - keypoints[..., 1:2]) ** 2) / (2.0 * sigma**2))
    labelled = (keypoints[..., 2] > 0).astype(np.float32)[..., None]
    maps = (gy * labelled)[..., :, None] * gx[..., None, :]  # (N, P, J, h, w)
    maps = maps.max(axis=1).transpose(0, 2, 3, 1).astype(np.float32)  # (N, h, w, J)
    if background:
        maps = np.concatenate([maps, 1.0 - maps.max(-1, keepdims=True)], axis=-1)
    return maps


def _refine(left, centre, right):
    """Sub-cell offset of a peak from its two neighbours: the vertex of the parabola through
    the log values (exact for a Gaussian peak), limited to half a cell."""
    eps = 1e-6
    l, c, r = (np.log(np.maximum(v, eps)) for v in (left, centre, right))
    curvature = l - 2.0 * c + r
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(curvature < -1e-9, 0.5 * (l - r) / curvature, 0.0)
    return np.clip(offset, -0.5, 0.5)


def keypoints_from_maps(maps, image_size) -> np.ndarray:
    """One keypoint per channel: the arg-max cell, refined to sub-cell precision.

    Args:
        maps: (N, h, w, J) confidence maps (no background channel).
        image_size: the image's size, an int or ``(height, width)``.

    Returns:
        float32 (N, J, 3): ``(x, y, score)`` in image pixels, score = the map's maximum.
        Where a neighbour is outside the map, the offset along that axis is 0.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 4:
        raise ValueError(f"maps must have shape (N, h, w, J), got {maps.shape}.")
    image_h, image_w = _pair(image_size, "image_size")
    n, h, w, j = maps.shape
    flat = maps.transpose(0, 3, 1, 2).reshape(n, j, h * w)
    best = flat.argmax(-1)
    rows, cols = best // w, best % w
    score = np.take_along_axis(flat, best[..., None], -1)[..., 0]
    grid = maps.transpose(0, 3, 1, 2)  # (N, J, h, w)
    ni, ji = np.meshgrid(np.arange(n), np.arange(j), indexing="ij")

    def at(r, c):
        return grid[ni, ji, np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]

    dx = np.where((cols > 0) & (cols < w - 1),
                  _refine(at(rows, cols - 1), score, at(rows, cols + 1)), 0.0)
    dy = np.where((rows > 0) & (rows < h - 1),
                  _refine(at(rows - 1, cols), score, at(rows + 1, cols)), 0.0)
    x = (cols + 0.5 + dx) * (image_w / w)
    y = (rows + 0.5 + dy) * (image_h / h)
    return np.stack([x, y, score], -1).astype(np.float32)


def _reference_sizes(y_true, reference):
    """(M,) reference size of each person of (M, J, 3) ground truth (0 where undefined)."""
    labelled = y_true[..., 2] > 0
    if reference == "torso":
        if y_true.shape[-2] != len(JOINT_NAMES):
            raise ValueError(f"reference='torso' needs the {len(JOINT_NAMES)}-joint skeleton, "
                             f"got {y_true.shape[-2]} joints; use reference='bbox'.")
        a, b = TORSO_JOINTS
        size = np.linalg.norm(y_true[:, a, :2] - y_true[:, b, :2], axis=-1)
        return np.where(labelled[:, a] & labelled[:, b], size, 0.0)
    big = np.where(labelled[..., None], y_true[..., :2], np.nan)
    with warnings.catch_warnings():  # all-NaN people (nothing labelled) give NaN: size 0
        warnings.simplefilter("ignore", RuntimeWarning)
        extent = np.nanmax(big, axis=1) - np.nanmin(big, axis=1)
    return np.nan_to_num(extent.max(-1), nan=0.0)


def _correct(y_true, y_pred, threshold, reference):
    """Flattened (M, J) arrays: which joints count, which are correct; and the sizes."""
    if reference not in PCK_REFERENCES:
        raise ValueError(f"reference must be one of {PCK_REFERENCES}, got {reference!r}.")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}.")
    y_true = check_keypoints(y_true, num_joints=None, name="y_true")
    y_pred = np.asarray(y_pred, np.float32)
    if y_pred.shape[:-1] != y_true.shape[:-1] or y_pred.shape[-1] not in (2, 3):
        raise ValueError(f"y_pred must have shape {y_true.shape[:-1] + (2,)} (or with a score "
                         f"column), got {y_pred.shape}.")
    num_joints = y_true.shape[-2]
    y_true = y_true.reshape(-1, num_joints, 3)
    y_pred = y_pred.reshape(-1, num_joints, y_pred.shape[-1])
    size = _reference_sizes(y_true, reference)
    counted = (y_true[..., 2] > 0) & (size > 0)[:, None]
    distance = np.linalg.norm(y_pred[..., :2] - y_true[..., :2], axis=-1)
    return counted, counted & (distance <= threshold * size[:, None]), y_true, y_pred, size


def pck(y_true, y_pred, threshold: float = 0.2, *, reference: str = "torso",
        per_joint: bool = False):
    """Percentage of Correct Keypoints: a prediction is correct within ``threshold`` times
    the person's reference size of the true joint.

    Reference sizes: ``"torso"``, the distance from the right shoulder to the left hip
    (``TORSO_JOINTS``, LSP's PCK@0.2); ``"bbox"``, the larger side of the box around the
    person's labelled joints. Joints with ``v == 0`` are ignored, and so are people whose
    reference is undefined (torso joints not labelled, or zero size).

    Args:
        y_true: (..., J, 3) ``(x, y, v)`` ground truth.
        y_pred: (..., J, 2) or (..., J, 3) predicted ``(x, y[, score])``, same leading shape.
        threshold: the fraction of the reference size (0.2 for PCK@0.2).
        reference: ``"torso"`` or ``"bbox"``.
        per_joint: also return the per-joint PCK (NaN for a joint never labelled).

    Returns:
        The PCK as a float in [0, 1] (NaN if nothing was counted), or ``(pck, per_joint)``.
    """
    counted, correct, *_ = _correct(y_true, y_pred, threshold, reference)
    total = counted.sum()
    overall = float(correct.sum() / total) if total else float("nan")
    if not per_joint:
        return overall
    with np.errstate(invalid="ignore", divide="ignore"):
        joints = correct.sum(0) / counted.sum(0)
    return overall, joints.astype(np.float64)


def left_right_swaps(y_true, y_pred, threshold: float = 0.2, *, reference: str = "torso",
                     flip_pairs=FLIP_PAIRS) -> float:
    """The share of left/right joints predicted on their mirror joint: wrong for their own
    position, but correct (in PCK's sense) for the other side's joint.

    Only joints of ``flip_pairs`` whose mirror is labelled too are counted.

    Returns:
        A float in [0, 1] (NaN if nothing was counted).
    """
    counted, correct, y_true, y_pred, size = _correct(y_true, y_pred, threshold, reference)
    mirror = np.arange(y_true.shape[1])
    for right, left in flip_pairs:
        mirror[right], mirror[left] = left, right
    sided = np.zeros(y_true.shape[1], bool)
    sided[[j for pair in flip_pairs for j in pair]] = True
    counted = counted & sided & (y_true[:, mirror, 2] > 0)
    distance = np.linalg.norm(y_pred[..., :2] - y_true[:, mirror, :2], axis=-1)
    on_mirror = distance <= threshold * size[:, None]
    total = counted.sum()
    return float((counted & on_mirror & ~correct).sum() / total) if total else float("nan")


def visibility_mask(keypoints, map_size=None, *, unlabelled_regions=None,
                    num_joints: int | None = None) -> np.ndarray:
    """Where the confidence-map loss is counted: 1 = supervised, 0 = masked.

    A joint's channel is masked in an image when some person present there (a person with at
    least one labelled joint) does not have that joint labelled (``v == 0``): the target has no
    peak for it although the joint may be in the image, so the net must not be punished for
    predicting one. Optionally, ``unlabelled_regions`` (N, H, W) bool marks image pixels of
    people without any annotation (COCO's crowd / unannotated people); they are masked in every
    channel (OpenPose's binary mask W).

    Args:
        keypoints: (N, J, 3) or (N, P, J, 3).
        map_size: the maps' size (needed with ``unlabelled_regions``).
        unlabelled_regions: optional (N, H, W) bool image mask, resized to ``map_size`` by
            taking any masked pixel in a cell as masked.

    Returns:
        float32 (N, 1, 1, J) without regions, else (N, h, w, J); multiply into the loss.
    """
    keypoints = _people_axis(check_keypoints(keypoints, num_joints=num_joints))
    present = (keypoints[..., 2] > 0).any(-1, keepdims=True)  # (N, P, 1)
    missing = present & (keypoints[..., 2] == 0)  # (N, P, J)
    mask = (~missing.any(1)).astype(np.float32)[:, None, None, :]
    if unlabelled_regions is None:
        return mask
    if map_size is None:
        raise ValueError("visibility_mask needs map_size when unlabelled_regions is given.")
    regions = np.asarray(unlabelled_regions, bool)
    if regions.ndim != 3 or len(regions) != len(keypoints):
        raise ValueError(f"unlabelled_regions must be (N, H, W) bool with N = {len(keypoints)}, "
                         f"got shape {regions.shape}.")
    map_h, map_w = _pair(map_size, "map_size")
    n, image_h, image_w = regions.shape
    if image_h % map_h or image_w % map_w:
        raise ValueError(f"map_size={map_size!r} must divide the image size {(image_h, image_w)}.")
    cells = regions.reshape(n, map_h, image_h // map_h, map_w, image_w // map_w).any((2, 4))
    return mask * (~cells).astype(np.float32)[..., None]
