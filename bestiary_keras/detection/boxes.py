"""Box toolkit of the detection chapter (notebooks 03 to 07): offsets, clipping, NMS, anchors.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixels ("xyxy", continuous coordinates, the
convention of ``bestiary_keras.geometry`` and of the scene generator). IoU and the box
conversions come from ``bestiary_keras.geometry``; this module adds what detectors need on top:

- ``encode_boxes`` / ``decode_boxes``: the slides' regression targets ``(t_x, t_y, t_w, t_h)`` of
  a box w.r.t. a proposal (R-CNN, Fast R-CNN) or an anchor (Faster R-CNN, YOLOv2 priors).
- ``valid_boxes``: boxes wider and higher than a minimum size (clipping is
  ``geometry.clip_boxes``).
- ``non_max_suppression``: the one NMS of the package, per class and batched, through
  ``tf.image.combined_non_max_suppression`` (Keras has no NMS op); a single class (proposals)
  goes through ``tf.image.non_max_suppression_padded``.
- ``generate_anchors``: the anchors of a feature map, ``(H * W * A, 4)``.
- ``assign_anchors`` / ``sample_balanced``: Faster R-CNN's labelling of anchors (or Fast
  R-CNN's of proposals) as positive / negative / neutral and its balanced mini-batch, batched
  and in-graph.

Functions accept NumPy arrays (and return NumPy) or tensors (and return tensors, through
``keras.ops``), as decided by ``geometry.xp``: the same code builds targets in a data pipeline
and decodes predictions inside a model.
"""

from __future__ import annotations

import math

import numpy as np

from bestiary_keras import geometry

__all__ = [
    "BBOX_CLIP",
    "encode_boxes",
    "decode_boxes",
    "valid_boxes",
    "non_max_suppression",
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
def _float32(*values):
    """``(xp, *values)``: the values as float32 NumPy arrays or tensors (``geometry.xp``)."""
    xp = geometry.xp(*values)
    if xp is np:
        return (np, *(np.asarray(v, np.float32) for v in values))
    return (xp, *(xp.cast(xp.convert_to_tensor(v), "float32") for v in values))


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
    xp, boxes, anchors = _float32(boxes, anchors)
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
    xp, deltas, anchors = _float32(deltas, anchors)
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


def valid_boxes(boxes, min_size: float = 0.0):
    """Boolean mask of boxes whose width and height both exceed ``min_size`` pixels."""
    xp = geometry.xp(boxes)
    boxes = np.asarray(boxes, np.float32) if xp is np else xp.convert_to_tensor(boxes)
    return xp.logical_and(boxes[..., 2] - boxes[..., 0] > min_size,
                          boxes[..., 3] - boxes[..., 1] > min_size)


# ----------------------------------------------------------------------------- NMS
def non_max_suppression(boxes, scores, *, iou_threshold: float = 0.5, max_output: int = 100,
                        score_threshold: float = -math.inf):
    """Greedy non-maximum suppression within each class, for a batch of images.

    Per image and per class: repeatedly keep the highest-scoring remaining box and remove every
    box of that class whose IoU with it exceeds ``iou_threshold``; boxes of different classes
    never suppress each other. The survivors of all classes are then ranked by score and the
    best ``max_output`` kept. TensorFlow does the work (Keras has no NMS op):
    ``tf.image.combined_non_max_suppression``, or ``tf.image.non_max_suppression`` image by
    image for a single class with shared boxes (region proposals). Both want ``[y_min, x_min, y_max,
    x_max]`` boxes: the swap happens here, and only here.

    Args:
        boxes: ``(B, N, 4)`` xyxy boxes shared by every class, or ``(B, N, K, 4)`` one box per
            class (Fast R-CNN's class-specific regression).
        scores: ``(B, N, K)`` the score of every box for every class (``K = 1``: class-agnostic).
        iou_threshold: boxes overlapping a kept box of their class by more than this go.
        max_output: detections kept per image (all classes together).
        score_threshold: only boxes scoring strictly above it are candidates.

    Zero-area boxes never suppress anything. Detectors drop such boxes before NMS (``valid_boxes``).

    Returns:
        ``boxes (B, D, 4)`` xyxy, ``scores (B, D)``, ``classes (B, D)`` int32 and ``count (B,)``
        int32 with ``D = max_output``: the ``count`` valid detections of each image come first,
        best score first, then zero padding. NumPy for NumPy inputs, else tensors.
    """
    import tensorflow as tf

    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}.")
    if int(max_output) < 1:
        raise ValueError(f"max_output must be >= 1, got {max_output!r}.")
    as_numpy = geometry.xp(boxes, scores) is np
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    if scores.shape.rank != 3 or boxes.shape.rank not in (3, 4) or boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must be (B, N, 4) or (B, N, K, 4) and scores (B, N, K), got shapes "
            f"{tuple(boxes.shape)} and {tuple(scores.shape)}; add the batch axis with [None]."
        )
    max_output = int(max_output)
    yxyx = tf.gather(boxes, [1, 0, 3, 2], axis=-1)
    if boxes.shape[1] == 0:  # no candidates at all (TensorFlow's padded NMS needs one)
        batch = tf.shape(boxes)[0]
        outputs = (tf.zeros((batch, max_output, 4)), tf.zeros((batch, max_output)),
                   tf.zeros((batch, max_output), tf.int32), tf.zeros((batch,), tf.int32))
    elif boxes.shape.rank == 3 and scores.shape[-1] == 1:
        def one_image(args):  # TensorFlow's C++ kernel, image by image
            image_boxes, image_scores = args
            kept = tf.image.non_max_suppression(
                image_boxes, image_scores, max_output, iou_threshold, score_threshold)
            kept_count = tf.shape(kept)[0]
            return tf.pad(kept, [[0, max_output - kept_count]]), kept_count

        # Not tf.image.non_max_suppression_padded: it gives the same indices but, written in
        # TensorFlow ops, took 10 ms per batch of 8 x 200 boxes on this CPU, against 0.57 ms
        # here (notebook 05's training cell went from 44 s to 61 s with it).
        keep, count = tf.map_fn(one_image, (yxyx, scores[..., 0]),
                                fn_output_signature=(tf.int32, tf.int32))
        valid = tf.range(max_output)[None, :] < count[:, None]
        keep = tf.where(valid, keep, 0)
        out_boxes = tf.where(valid[..., None], tf.gather(boxes, keep, batch_dims=1), 0.0)
        out_scores = tf.where(valid, tf.gather(scores[..., 0], keep, batch_dims=1), 0.0)
        outputs = out_boxes, out_scores, tf.zeros_like(keep), tf.cast(count, tf.int32)
    else:
        if boxes.shape.rank == 3:
            yxyx = yxyx[:, :, None, :]
        nmsed = tf.image.combined_non_max_suppression(
            yxyx, scores, max_output_size_per_class=max_output, max_total_size=max_output,
            iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=False)
        out_boxes = tf.gather(nmsed.nmsed_boxes, [1, 0, 3, 2], axis=-1)
        out_scores, count = nmsed.nmsed_scores, nmsed.valid_detections
        classes = tf.cast(nmsed.nmsed_classes, tf.int32)
        outputs = out_boxes, out_scores, classes, tf.cast(count, tf.int32)
    return tuple(t.numpy() for t in outputs) if as_numpy else outputs


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


def assign_anchors(anchors, gt_boxes, gt_valid=None, *, positive_iou: float = 0.7,
                   negative_iou: float = 0.3, force_best: bool = True):
    """Labels anchors (or proposals) positive / negative / neutral against ground truth.

    Faster R-CNN, Sec. 3.1.2: an anchor is positive (1) if its IoU with some ground-truth box is
    at least ``positive_iou``, or (``force_best``) if it is the anchor with the highest IoU for
    some ground-truth box (ties included, so every object gets at least one positive anchor,
    provided some anchor overlaps it at all); negative (0) if its IoU with every ground-truth
    box is below ``negative_iou``; neutral (-1, ignored by the loss) otherwise. Fast R-CNN's RoI
    labelling is the same call with ``positive_iou=negative_iou=0.5, force_best=False``.

    Batched and in-graph (``keras.ops``); NumPy inputs give NumPy outputs.

    Args:
        anchors: ``(N, 4)`` xyxy anchors shared by the batch, or ``(B, N, 4)``.
        gt_boxes: ``(B, M, 4)`` xyxy ground-truth boxes, or ``(M, 4)`` for one image (then
            ``anchors`` is ``(N, 4)`` and the outputs have no batch axis). ``M`` may be 0.
        gt_valid: bool ``(B, M)`` (False for padding rows); default: rows of positive area.
        positive_iou: IoU from which an anchor is positive.
        negative_iou: IoU below which an anchor is negative (``<= positive_iou``).
        force_best: make the best anchor(s) of each object positive.

    Returns:
        ``labels`` int32 ``(B, N)`` in {1, 0, -1}; ``matched`` int32 ``(B, N)``: the index into
        ``gt_boxes`` of the object each anchor is matched to (largest IoU; for a forced positive
        the first object that forced it), -1 when the image has no object; ``max_iou``
        ``(B, N)`` the largest IoU (0 without objects).
    """
    from keras import ops

    if not 0.0 <= negative_iou <= positive_iou <= 1.0:
        raise ValueError(
            f"need 0 <= negative_iou <= positive_iou <= 1, got negative_iou={negative_iou}, "
            f"positive_iou={positive_iou}."
        )
    as_numpy = geometry.xp(anchors, gt_boxes, gt_valid) is np
    one_image = len(ops.shape(gt_boxes)) == 2
    gt_boxes = ops.reshape(ops.cast(gt_boxes, "float32"), (-1, ops.shape(gt_boxes)[-2], 4)
                           if not one_image else (1, -1, 4))
    if gt_valid is None:
        gt_valid = geometry.box_area(gt_boxes) > 0
    rois = ops.cast(anchors, "float32")
    if rois.shape[-2] == 0:  # no anchors: nothing to label (keras.ops has no empty argmax)
        empty = np.zeros((int(ops.shape(gt_boxes)[0]), 0), np.int32)
        outputs = empty, empty, empty.astype(np.float32)
        return tuple(t[0] for t in outputs) if one_image else outputs
    if len(rois.shape) == 2:
        rois = ops.broadcast_to(rois[None], (ops.shape(gt_boxes)[0],) + tuple(rois.shape))
    iou = geometry.elementwise_iou(rois[:, :, None, :], gt_boxes[:, None, :, :])  # (B, N, M)
    valid = ops.reshape(ops.cast(gt_valid, "bool"), (ops.shape(gt_boxes)[0], 1, -1))
    # a last "no object" column of IoU -1 keeps max and argmax defined when M = 0
    iou = ops.pad(ops.where(valid, iou, -1.0), [[0, 0], [0, 0], [0, 1]], constant_values=-1.0)
    valid = ops.pad(valid, [[0, 0], [0, 0], [0, 1]], constant_values=False)
    max_iou = ops.max(iou, axis=-1)
    matched = ops.where(ops.any(valid, axis=-1), ops.cast(ops.argmax(iou, axis=-1), "int32"), -1)
    labels = ops.where(max_iou >= positive_iou, 1, ops.where(max_iou < negative_iou, 0, -1))
    if force_best:
        # the best anchor(s) of each object, whatever their IoU (as long as it is not zero)
        per_gt = ops.max(ops.pad(iou, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0), axis=1,
                         keepdims=True)  # (B, 1, M + 1); the extra row keeps N = 0 defined
        forced = (iou == per_gt) & (per_gt > 0) & valid  # (B, N, M + 1)
        is_forced = ops.any(forced, axis=-1)
        labels = ops.where(is_forced, 1, labels)
        matched = ops.where(is_forced, ops.cast(ops.argmax(ops.cast(forced, "float32"), -1),
                                                "int32"), matched)
    outputs = ops.cast(labels, "int32"), ops.cast(matched, "int32"), ops.maximum(max_iou, 0.0)
    if one_image:
        outputs = tuple(t[0] for t in outputs)
    return tuple(ops.convert_to_numpy(t) for t in outputs) if as_numpy else outputs


def sample_balanced(labels, num_samples: int, positive_fraction: float = 0.5, seed=None):
    """A balanced mini-batch of anchors / RoIs per image, in-graph: ``num_samples`` picks.

    Faster R-CNN samples 256 anchors per image with up to half positives, padding with
    negatives when there are fewer positives; Fast R-CNN samples RoIs with 25% positives.
    Positives first (a random subset of at most ``round(num_samples * positive_fraction)``),
    then random negatives; when both run out the remaining picks are ignored entries.

    Args:
        labels: int ``(B, N)`` with 1 (positive), 0 (negative), -1 (ignored).
        num_samples: picks per image (lowered to ``N`` when there are fewer entries).
        positive_fraction: largest fraction of positives, in [0, 1].
        seed: a ``keras.random.SeedGenerator`` or an int.

    Returns:
        ``indices`` int32 ``(B, num_samples)`` into ``labels`` and ``sampled_labels`` int32
        ``(B, num_samples)`` (1 / 0, or -1 for a pick that is neither and must be ignored).
    """
    import keras
    from keras import ops

    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}.")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}.")
    labels = ops.cast(labels, "int32")
    num_samples = min(int(num_samples), int(labels.shape[-1]))
    noise = keras.random.uniform(ops.shape(labels), seed=seed)
    positive = labels == 1
    # the rank of every positive among positives, in random order
    pos_noise = ops.where(positive, noise, -1.0)
    order = ops.argsort(-pos_noise, axis=-1)
    rank = ops.argsort(order, axis=-1)
    max_pos = int(round(num_samples * positive_fraction))
    keep_pos = positive & (rank < max_pos)
    priority = ops.where(keep_pos, 2.0 + noise, ops.where(labels == 0, 1.0 + noise, noise - 1.0))
    _, indices = ops.top_k(priority, num_samples)
    picked = ops.take_along_axis(priority, indices, axis=-1)
    picked_labels = ops.take_along_axis(labels, indices, axis=-1)
    sampled = ops.where(picked >= 2.0, 1, ops.where(picked >= 1.0, 0, -1))
    sampled = ops.where((sampled == 1) & (picked_labels != 1), -1, sampled)
    return ops.cast(indices, "int32"), ops.cast(sampled, "int32")
