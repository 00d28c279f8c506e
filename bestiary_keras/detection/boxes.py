"""Box toolkit of the detection chapter (notebooks 03 to 07): offsets, clipping, NMS, anchors.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixels ("xyxy", continuous coordinates, the
convention of ``bestiary_keras.geometry`` and of the scene generator). IoU and the box
conversions come from ``bestiary_keras.geometry``; this module adds what detectors need on top:

- ``encode_boxes`` / ``decode_boxes``: the slides' regression targets ``(t_x, t_y, t_w, t_h)`` of
  a box w.r.t. a proposal (R-CNN, Fast R-CNN) or an anchor (Faster R-CNN, YOLOv2 priors).
- ``clip_boxes``: clip to the image.
- ``non_max_suppression`` / ``batched_nms``: greedy NMS through ``tf.image.non_max_suppression``
  (Keras has no NMS op), class-agnostic or per class.
- ``generate_anchors``: the anchors of a feature map, ``(H * W * A, 4)``.
- ``assign_anchors`` / ``sample_balanced``: Faster R-CNN's labelling of anchors (or Fast
  R-CNN's of proposals) as positive / negative / neutral and its balanced mini-batch.

Functions that compute on boxes accept NumPy arrays (and return NumPy) or tensors (and return
tensors, through ``keras.ops``), so the same code builds targets in a data pipeline and decodes
predictions inside a model. ``assign_anchors`` and ``sample_balanced`` are NumPy only (data side).
"""

from __future__ import annotations

import math

import numpy as np

from bestiary_keras import geometry

__all__ = [
    "BBOX_CLIP",
    "encode_boxes",
    "decode_boxes",
    "clip_boxes",
    "valid_boxes",
    "non_max_suppression",
    "batched_nms",
    "generate_anchors",
    "anchor_shapes",
    "assign_anchors",
    "sample_balanced",
]

BBOX_CLIP = math.log(1000.0 / 16.0)
"""Largest ``t_w`` / ``t_h`` accepted by ``decode_boxes`` (as in Detectron): ``exp`` of a wild
prediction early in training must not overflow to ``inf`` and then ``NaN``."""

_MIN_SIZE = 1e-3
"""Width / height floor (pixels) inside ``encode_boxes``: a zero-size box (padding) gets a
finite, meaningless target instead of ``-inf``. Still mask such rows out of the loss."""


# ----------------------------------------------------------------------------- helpers
def _is_numpy(*values) -> bool:
    """True when every value is a NumPy array, a Python number or a list (the data side)."""
    return all(isinstance(v, (np.ndarray, np.generic, list, tuple, float, int)) or v is None
               for v in values)


def _xp(*values):
    """``numpy`` for NumPy inputs, ``keras.ops`` for tensors."""
    if _is_numpy(*values):
        return np
    from keras import ops

    return ops


def _variances(variances, xp, dtype=None):
    if variances is None:
        return None
    values = np.asarray(variances, np.float32).reshape(-1)
    if values.shape != (4,) or np.any(values <= 0):
        raise ValueError(
            f"variances must be 4 positive numbers (for t_x, t_y, t_w, t_h), got {variances!r}; "
            "e.g. variances=(0.1, 0.1, 0.2, 0.2), or None for the slides' plain offsets."
        )
    return values if xp is np else xp.convert_to_tensor(values, dtype=dtype)


def _image_hw(image_size):
    if isinstance(image_size, (int, np.integer, float)):
        height = width = float(image_size)
    else:
        try:
            height, width = (float(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"image_size must be an int (square image) or a pair (height, width), "
                f"got {image_size!r}."
            ) from None
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width


# ----------------------------------------------------------------------------- offsets
def encode_boxes(boxes, anchors, variances=None):
    """The slides' regression targets of ``boxes`` w.r.t. ``anchors`` (or proposals).

    For a proposal ``P`` (centre ``P_x, P_y``, size ``P_w, P_h``) and its ground truth ``G``:

    .. math::
        t_x = \\frac{G_x - P_x}{P_w},\\quad t_y = \\frac{G_y - P_y}{P_h},\\quad
        t_w = \\log\\frac{G_w}{P_w},\\quad t_h = \\log\\frac{G_h}{P_h}

    (R-CNN, Appendix C; Fast and Faster R-CNN use the same), each then divided by its
    ``variances`` entry when given (the usual ``(0.1, 0.1, 0.2, 0.2)`` scales the targets to
    about unit variance).

    Zero-size boxes (padding) are floored at 1e-3 pixels, so their targets are finite; they are
    meaningless, so exclude those rows from the loss (select, don't multiply by a mask after a
    ``NaN`` has appeared).

    Args:
        boxes: ``(..., 4)`` xyxy ground-truth boxes (NumPy or tensor).
        anchors: ``(..., 4)`` xyxy anchors or proposals, broadcastable against ``boxes``.
        variances: optional 4 positive divisors for ``(t_x, t_y, t_w, t_h)``.

    Returns:
        ``(..., 4)`` float32 offsets ``(t_x, t_y, t_w, t_h)`` (NumPy for NumPy inputs).
    """
    xp = _xp(boxes, anchors)
    if xp is np:
        boxes = np.asarray(boxes, np.float32)
        anchors = np.asarray(anchors, np.float32)
    else:
        boxes = xp.cast(xp.convert_to_tensor(boxes), "float32")
        anchors = xp.cast(xp.convert_to_tensor(anchors), "float32")
    aw = xp.maximum(anchors[..., 2] - anchors[..., 0], _MIN_SIZE)
    ah = xp.maximum(anchors[..., 3] - anchors[..., 1], _MIN_SIZE)
    ax = (anchors[..., 0] + anchors[..., 2]) / 2.0
    ay = (anchors[..., 1] + anchors[..., 3]) / 2.0
    gw = xp.maximum(boxes[..., 2] - boxes[..., 0], _MIN_SIZE)
    gh = xp.maximum(boxes[..., 3] - boxes[..., 1], _MIN_SIZE)
    gx = (boxes[..., 0] + boxes[..., 2]) / 2.0
    gy = (boxes[..., 1] + boxes[..., 3]) / 2.0
    deltas = xp.stack(
        [(gx - ax) / aw, (gy - ay) / ah, xp.log(gw / aw), xp.log(gh / ah)], axis=-1
    )
    scale = _variances(variances, xp, "float32")
    if scale is not None:
        deltas = deltas / scale
    return deltas.astype(np.float32) if xp is np else deltas


def decode_boxes(deltas, anchors, variances=None):
    """Inverse of ``encode_boxes``: offsets ``(t_x, t_y, t_w, t_h)`` -> xyxy boxes.

    .. math::
        \\hat G_x = P_w t_x + P_x,\\quad \\hat G_y = P_h t_y + P_y,\\quad
        \\hat G_w = P_w e^{t_w},\\quad \\hat G_h = P_h e^{t_h}

    ``t_w``, ``t_h`` are clipped at ``BBOX_CLIP`` (about 4.1) before ``exp`` so that a wild early
    prediction cannot overflow. Decoded boxes are not clipped to the image (``clip_boxes``).

    Args:
        deltas: ``(..., 4)`` offsets (NumPy or tensor).
        anchors: ``(..., 4)`` xyxy anchors or proposals, broadcastable against ``deltas``.
        variances: the same divisors as given to ``encode_boxes``, or None.

    Returns:
        ``(..., 4)`` float32 xyxy boxes.
    """
    xp = _xp(deltas, anchors)
    if xp is np:
        deltas = np.asarray(deltas, np.float32)
        anchors = np.asarray(anchors, np.float32)
    else:
        deltas = xp.cast(xp.convert_to_tensor(deltas), "float32")
        anchors = xp.cast(xp.convert_to_tensor(anchors), "float32")
    scale = _variances(variances, xp, "float32")
    if scale is not None:
        deltas = deltas * scale
    aw = anchors[..., 2] - anchors[..., 0]
    ah = anchors[..., 3] - anchors[..., 1]
    ax = (anchors[..., 0] + anchors[..., 2]) / 2.0
    ay = (anchors[..., 1] + anchors[..., 3]) / 2.0
    cx = deltas[..., 0] * aw + ax
    cy = deltas[..., 1] * ah + ay
    w = aw * xp.exp(xp.minimum(deltas[..., 2], BBOX_CLIP))
    h = ah * xp.exp(xp.minimum(deltas[..., 3], BBOX_CLIP))
    out = xp.stack([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], axis=-1)
    return out.astype(np.float32) if xp is np else out


def clip_boxes(boxes, image_size):
    """Clips xyxy boxes to the image ``[0, width] x [0, height]``.

    A box entirely outside the image becomes a zero-area box on its border: drop those with
    ``valid_boxes``. Wraps ``geometry.clip_boxes`` / ``geometry.ops_clip_boxes``.

    Args:
        boxes: ``(..., 4)`` xyxy boxes (NumPy or tensor).
        image_size: an int (square) or ``(height, width)`` in pixels.

    Returns:
        Clipped boxes, same shape and kind as ``boxes``.
    """
    height, width = _image_hw(image_size)
    if _is_numpy(boxes):
        return geometry.clip_boxes(boxes, width, height)
    return geometry.ops_clip_boxes(boxes, width, height)


def valid_boxes(boxes, min_size: float = 0.0):
    """Boolean mask of boxes whose width and height both exceed ``min_size`` pixels."""
    xp = _xp(boxes)
    boxes = np.asarray(boxes, np.float32) if xp is np else xp.convert_to_tensor(boxes)
    return xp.logical_and(boxes[..., 2] - boxes[..., 0] > min_size,
                          boxes[..., 3] - boxes[..., 1] > min_size)


# ----------------------------------------------------------------------------- NMS
def non_max_suppression(boxes, scores, iou_threshold: float = 0.5, max_output: int = 100,
                        score_threshold: float = -math.inf):
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    Repeatedly keeps the highest-scoring remaining box and removes every box whose IoU with it
    exceeds ``iou_threshold``. A thin wrapper around ``tf.image.non_max_suppression`` (which
    wants ``[y_min, x_min, y_max, x_max]``; the swap happens here).

    Args:
        boxes: ``(N, 4)`` xyxy boxes (N may be 0).
        scores: ``(N,)`` scores.
        iou_threshold: boxes overlapping a kept one by more than this are suppressed.
        max_output: keep at most this many.
        score_threshold: ignore boxes scoring below it.

    Returns:
        int32 indices into ``boxes``: a NumPy array for NumPy inputs, else a tensor.
    """
    import tensorflow as tf

    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}.")
    if int(max_output) < 0:
        raise ValueError(f"max_output must be >= 0, got {max_output!r}.")
    as_numpy = _is_numpy(boxes, scores)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    scores = tf.reshape(tf.cast(scores, tf.float32), (-1,))
    yxyx = tf.gather(boxes, [1, 0, 3, 2], axis=1)
    keep = tf.image.non_max_suppression(yxyx, scores, int(max_output), float(iou_threshold),
                                        float(score_threshold))
    return keep.numpy().astype(np.int32) if as_numpy else keep


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5, max_output: int = 100,
                score_threshold: float = -math.inf):
    """Non-maximum suppression within each class (boxes of different classes never suppress
    each other): indices of the kept boxes, best score first.

    Uses the usual trick of shifting each class's boxes by ``class * (largest coordinate + 1)``
    so that boxes of different classes cannot overlap, then one ``non_max_suppression``.

    Args:
        boxes: ``(N, 4)`` xyxy boxes; scores: ``(N,)``; classes: ``(N,)`` int class indices.
        iou_threshold, max_output, score_threshold: as in ``non_max_suppression``
            (``max_output`` counts all classes together).

    Returns:
        int32 indices into ``boxes`` (NumPy for NumPy inputs, else a tensor).
    """
    import tensorflow as tf

    as_numpy = _is_numpy(boxes, scores, classes)
    boxes_t = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    classes_t = tf.reshape(tf.cast(classes, tf.float32), (-1,))
    span = tf.reduce_max(tf.concat([tf.abs(boxes_t), tf.zeros((1, 4))], axis=0)) + 1.0
    shifted = boxes_t + (classes_t * 2.0 * span)[:, None]
    keep = non_max_suppression(shifted, tf.reshape(tf.cast(scores, tf.float32), (-1,)),
                               iou_threshold, max_output, score_threshold)
    return keep.numpy().astype(np.int32) if as_numpy else keep


# ----------------------------------------------------------------------------- anchors
def anchor_shapes(scales, ratios) -> np.ndarray:
    """Widths and heights ``(A, 2)`` of the ``A = len(scales) * len(ratios)`` reference anchors.

    An anchor of scale ``s`` and aspect ratio ``r = h / w`` has area ``s**2``:
    ``w = s / sqrt(r)``, ``h = s * sqrt(r)``. Order: scale-major (all ratios of the first scale,
    then of the next).
    """
    scales = np.asarray(scales, np.float32).reshape(-1)
    ratios = np.asarray(ratios, np.float32).reshape(-1)
    if scales.size == 0 or np.any(scales <= 0):
        raise ValueError(f"scales must be positive anchor sizes in pixels, got {scales.tolist()}.")
    if ratios.size == 0 or np.any(ratios <= 0):
        raise ValueError(f"ratios must be positive height/width ratios, got {ratios.tolist()}.")
    s, r = np.meshgrid(scales, ratios, indexing="ij")
    return np.stack([s / np.sqrt(r), s * np.sqrt(r)], axis=-1).reshape(-1, 2).astype(np.float32)


def generate_anchors(feature_size, stride, scales, ratios) -> np.ndarray:
    """All anchors of a feature map: ``A`` reference boxes centred on every feature cell.

    Cell ``(i, j)`` (row, column) of a stride-``s`` map is centred at pixel
    ``((j + 0.5) s, (i + 0.5) s)``. The result is ordered row, column, anchor, i.e. it matches a
    conv output of shape ``(H, W, A * 4)`` reshaped to ``(H * W * A, 4)``.

    Args:
        feature_size: an int (square map) or ``(H, W)``.
        stride: pixels per feature cell.
        scales: anchor sizes in pixels (the square root of the area), e.g. ``(16, 32, 48)``.
        ratios: aspect ratios ``h / w``, e.g. ``(0.5, 1, 2)``.

    Returns:
        float32 ``(H * W * A, 4)`` xyxy anchors (may stick out of the image).
    """
    if isinstance(feature_size, (int, np.integer)):
        fh = fw = int(feature_size)
    else:
        try:
            fh, fw = (int(v) for v in feature_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"feature_size must be an int or a pair (H, W), got {feature_size!r}."
            ) from None
    if fh < 1 or fw < 1:
        raise ValueError(f"feature_size must be positive, got {feature_size!r}.")
    if stride <= 0:
        raise ValueError(f"stride must be positive (pixels per feature cell), got {stride!r}.")
    shapes = anchor_shapes(scales, ratios)  # (A, 2)
    cy, cx = np.meshgrid((np.arange(fh) + 0.5) * stride, (np.arange(fw) + 0.5) * stride,
                         indexing="ij")
    centres = np.stack([cx, cy], axis=-1).reshape(-1, 1, 2)  # (H*W, 1, 2)
    half = shapes[None] / 2.0
    anchors = np.concatenate([centres - half, centres + half], axis=-1)
    return anchors.reshape(-1, 4).astype(np.float32)


def assign_anchors(anchors, gt_boxes, positive_iou: float = 0.7, negative_iou: float = 0.3):
    """Labels anchors (or proposals) positive / negative / neutral against ground truth.

    Faster R-CNN, Sec. 3.1.2: an anchor is positive (1) if its IoU with some ground-truth box is
    at least ``positive_iou``, or if it is the anchor with the highest IoU for some ground-truth
    box (ties included, so every object gets at least one positive anchor, provided some anchor
    overlaps it at all); negative (0) if its IoU with every ground-truth box is below
    ``negative_iou``; neutral (-1, ignored by the loss) otherwise. Fast R-CNN's RoI labelling is
    the same call with ``positive_iou=0.5, negative_iou=0.5`` (its [0.1, 0.5) background range
    is a variant).

    Ground-truth rows of zero area (the scene generator's padding) are ignored; with no
    ground truth every anchor is negative.

    Args:
        anchors: ``(N, 4)`` xyxy anchors.
        gt_boxes: ``(M, 4)`` xyxy ground-truth boxes (M may be 0, padding allowed).
        positive_iou: IoU from which an anchor is positive.
        negative_iou: IoU below which an anchor is negative (``<= positive_iou``).

    Returns:
        ``labels`` int32 ``(N,)`` in {1, 0, -1} and ``matched`` int32 ``(N,)``: the index (into
        ``gt_boxes``) of the ground truth each anchor is matched to (largest IoU; for forced
        positives the object that forced it), -1 when there is no ground truth.
    """
    if not 0.0 <= negative_iou <= positive_iou <= 1.0:
        raise ValueError(
            f"need 0 <= negative_iou <= positive_iou <= 1, got negative_iou={negative_iou}, "
            f"positive_iou={positive_iou}."
        )
    anchors = np.asarray(anchors, np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    n = len(anchors)
    labels = np.zeros(n, np.int32)
    matched = np.full(n, -1, np.int32)
    valid = np.flatnonzero(geometry.box_area(gt_boxes) > 0)
    if n == 0 or valid.size == 0:
        return labels, matched
    iou = geometry.pairwise_iou(anchors, gt_boxes[valid])  # (N, V)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(n), best]
    matched[:] = valid[best]
    labels[:] = -1
    labels[best_iou < negative_iou] = 0
    labels[best_iou >= positive_iou] = 1
    # the best anchor(s) of each object, whatever their IoU (as long as it is not zero)
    per_gt_best = iou.max(axis=0)  # (V,)
    forced_anchor, forced_gt = np.nonzero((iou == per_gt_best[None]) & (per_gt_best[None] > 0))
    labels[forced_anchor] = 1
    matched[forced_anchor] = valid[forced_gt]
    return labels, matched


def sample_balanced(labels, num_samples: int, positive_fraction: float = 0.5, rng=None):
    """A balanced mini-batch of anchors / RoIs: the rest is set to -1 (ignored).

    Faster R-CNN samples 256 anchors per image with up to half positives, padding with
    negatives when there are fewer positives; Fast R-CNN samples RoIs with 25% positives.

    Args:
        labels: int ``(N,)`` with 1 (positive), 0 (negative), -1 (ignored).
        num_samples: mini-batch size (at most; fewer when there are not enough anchors).
        positive_fraction: largest fraction of positives, in [0, 1].
        rng: a ``numpy.random.Generator`` (or a seed); ``None`` gives a fresh unseeded one.

    Returns:
        int32 ``(N,)``: a copy of ``labels`` with the anchors left out of the sample set to -1.
    """
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}.")
    if int(num_samples) < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples!r}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    labels = np.asarray(labels, np.int32).reshape(-1)
    out = np.full_like(labels, -1)
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    num_pos = min(len(positives), int(round(num_samples * positive_fraction)))
    num_neg = min(len(negatives), int(num_samples) - num_pos)
    out[rng.choice(positives, num_pos, replace=False)] = 1
    out[rng.choice(negatives, num_neg, replace=False)] = 0
    return out
