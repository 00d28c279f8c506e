"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015): notebook 04, and the head of notebook 05.

The slide's idea: run the convolutions once over the whole image, then cut each region
proposal (RoI) out of the shared feature map with **RoI max pooling** (a fixed ``H x W`` grid of
max-pooled bins, whatever the RoI's size), and train classification and box regression
together with one multi-task loss

.. math::
    L(p, u, t^u, v) = L_{cls}(p, u) + \\lambda [u \\ge 1] L_{loc}(t^u, v),\\qquad
    L_{cls} = -\\log p_u,\\qquad
    L_{loc} = \\sum_{i \\in \\{x,y,w,h\\}} \\mathrm{smooth}_{L_1}(t^u_i - v_i)

with ``u`` the true class (0 = background, which gets no box loss) and ``v`` the regression
target (``boxes.encode_boxes`` of the object w.r.t. the RoI).

Pieces:

- ``RoIMaxPooling``: the RoI pooling layer (a ``keras.layers.Layer``, vectorised, a true max
  over each bin); ``roi_max_pool_reference`` is a slow NumPy loop used to test it.
- ``smooth_l1``, ``fast_rcnn_loss``: the loss above, exactly as written.
- ``backbone``, ``detection_head``: the conv body (stride 8) and the FC head (soft-max over
  ``K + 1`` classes, per-class box offsets) shared with Faster R-CNN.
- ``sample_rois``: Fast R-CNN's mini-batch of RoIs (25% foreground at IoU >= 0.5), in-graph.
- ``postprocess``: per-class box decoding, clipping and per-class NMS, batched.
- ``FastRCNN`` / ``fast_rcnn``: the detector trained on precomputed proposals.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras import geometry
from bestiary_keras.detection import boxes as box_utils
from bestiary_keras.detection.backbones import vgg_backbone

__all__ = [
    "BOX_VARIANCES",
    "RoIMaxPooling",
    "check_roi_pooling",
    "roi_bins",
    "roi_max_pool_reference",
    "smooth_l1",
    "fast_rcnn_loss",
    "detection_head",
    "sample_rois",
    "postprocess",
    "detections_to_list",
    "FastRCNN",
    "fast_rcnn",
]

BOX_VARIANCES = (0.1, 0.1, 0.2, 0.2)
"""Divisors of the regression targets (Fast R-CNN normalises them to about unit variance)."""


# ----------------------------------------------------------------------------- RoI pooling
def roi_bins(rois, spatial_scale: float, pool_size: int, feature_size: int):
    """Bin boundaries of RoI max pooling along one axis (NumPy or tensors).

    An RoI ``[a, b)`` in pixels covers feature cells ``start = floor(a * s)`` to
    ``end = max(ceil(b * s), start + 1)`` (exclusive). Its ``pool_size`` bins split that range
    into sub-windows of about equal size: bin ``k`` covers cells
    ``[start + floor(k * n / P), start + ceil((k + 1) * n / P))`` with ``n = end - start``,
    clipped to the map. Bins may overlap by one cell (when ``n`` is not a multiple of ``P``) and
    repeat cells (when ``n < P``), as in the original Caffe layer.

    Args:
        rois: ``(..., 2)`` start and end coordinates in pixels.
        spatial_scale: feature cells per pixel (1 / stride).
        pool_size: number of bins ``P``.
        feature_size: number of cells of the map along this axis.

    Returns:
        ``(low, high)``, each ``(..., P)``: the cell range ``[low, high)`` of every bin; an empty
        range (``low >= high``, an RoI outside the map) is an empty bin.
    """
    xp = np if isinstance(rois, np.ndarray) else ops
    start = xp.floor(rois[..., 0] * spatial_scale)
    end = xp.maximum(xp.ceil(rois[..., 1] * spatial_scale), start + 1.0)
    size = (end - start)[..., None]
    k = np.arange(pool_size, dtype=np.float32)
    k = k if xp is np else ops.convert_to_tensor(k)
    low = start[..., None] + xp.floor(k * size / pool_size)
    high = start[..., None] + xp.ceil((k + 1.0) * size / pool_size)
    low = xp.clip(low, 0.0, float(feature_size))
    high = xp.clip(high, 0.0, float(feature_size))
    return low, high


def check_roi_pooling(pool_size, spatial_scale) -> tuple[tuple[int, int], float]:
    """Validated RoI pooling settings (shared by ``RoIMaxPooling`` and ``RoIAlign``).

    Returns:
        ``((P_h, P_w), spatial_scale)``.
    """
    pool_size = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    if len(pool_size) != 2 or min(pool_size) < 1:
        raise ValueError(f"pool_size must be a positive int or a pair, got {pool_size!r}.")
    if spatial_scale <= 0:
        raise ValueError(
            f"spatial_scale must be positive (1 / the feature stride), got {spatial_scale!r}."
        )
    return tuple(int(p) for p in pool_size), float(spatial_scale)


class RoIMaxPooling(layers.Layer):
    """RoI max pooling (Fast R-CNN, Sec. 2.1): every RoI becomes a ``P x P`` map.

    The RoI, projected onto the feature map (``spatial_scale`` = 1 / stride), is divided into a
    ``P x P`` grid of sub-windows (``roi_bins``) and each channel is max-pooled within each
    sub-window independently. Bins that fall outside the map (an RoI outside the image) are 0.

    Vectorised as a range-maximum query with a *sparse table*: the layer first computes, for
    every cell and every power-of-two window ``2^a x 2^b`` (``a, b <= log2`` of the map size),
    the max of the window starting there (a few elementwise maxima of shifted maps). The max
    of any bin ``[y0, y1) x [x0, x1)`` is then the max of four such windows (``2^a <= y1 - y0 <
    2^(a+1)``) anchored at its corners, which overlap and cover it exactly: one gather for all
    RoIs, no loop, no per-RoI copy of the map. It is an exact max (not a resize), and the
    gradient reaches the arg-max of every bin, as in the paper's backward pass.

    Call arguments:
        features: ``(B, H, W, C)`` feature map.
        rois: ``(B, R, 4)`` xyxy RoIs in input-image pixels.

    Returns:
        ``(B, R, P, P, C)`` pooled features.
    """

    def __init__(self, pool_size=7, spatial_scale=1.0 / 8.0, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.spatial_scale = check_roi_pooling(pool_size, spatial_scale)

    @staticmethod
    def _sparse_table(features, axis, levels):
        """``[T_0, ..., T_L]`` with ``T_k[i] = max(x[i : i + 2^k])`` along ``axis``."""
        tables = [features]
        size = features.shape[axis]
        for k in range(1, levels):
            prev, shift = tables[-1], 2 ** (k - 1)
            rest = [slice(None)] * len(features.shape)
            head = list(rest)
            rest[axis], head[axis] = slice(shift, None), slice(size - shift, None)
            # windows that would run past the border are never queried: fill them with anything
            shifted = ops.concatenate([prev[tuple(rest)], prev[tuple(head)]], axis=axis)
            tables.append(ops.maximum(prev, shifted))
        return tables

    @staticmethod
    def _level(low, high):
        """``k`` with ``2^k <= high - low < 2^(k+1)`` (0 for empty bins)."""
        length = ops.maximum(high - low, 1.0)
        return ops.floor(ops.log(length) / math.log(2.0) + 1e-4)

    def call(self, features, rois):
        features = ops.convert_to_tensor(features)
        rois = ops.cast(ops.convert_to_tensor(rois), "float32")
        height, width, channels = features.shape[1], features.shape[2], features.shape[3]
        ph, pw = self.pool_size
        levels_y = int(math.floor(math.log2(height))) + 1
        levels_x = int(math.floor(math.log2(width))) + 1
        # sparse table of the map: (B, LY, LX, H, W, C)
        rows = self._sparse_table(features, 1, levels_y)
        table = [self._sparse_table(t, 2, levels_x) for t in rows]
        table = ops.stack([ops.stack(row, axis=1) for row in table], axis=1)
        batch = ops.shape(features)[0]
        per_image = levels_y * levels_x * height * width
        table = ops.reshape(table, (-1, channels))  # (B * LY * LX * H * W, C)

        y_low, y_high = roi_bins(ops.stack([rois[..., 1], rois[..., 3]], -1), self.spatial_scale,
                                 ph, height)  # (B, R, PH)
        x_low, x_high = roi_bins(ops.stack([rois[..., 0], rois[..., 2]], -1), self.spatial_scale,
                                 pw, width)  # (B, R, PW)
        ky, kx = self._level(y_low, y_high), self._level(x_low, x_high)
        y_starts = ops.stack([y_low, ops.maximum(y_high - 2.0 ** ky, 0.0)], -1)  # (B, R, PH, 2)
        x_starts = ops.stack([x_low, ops.maximum(x_high - 2.0 ** kx, 0.0)], -1)  # (B, R, PW, 2)
        y_starts = ops.minimum(y_starts, float(height - 1))
        x_starts = ops.minimum(x_starts, float(width - 1))
        # flat index of each corner window: (B, R, PH, PW, 2, 2)
        level = ky[:, :, :, None, None, None] * levels_x + kx[:, :, None, :, None, None]
        cell = (y_starts[:, :, :, None, :, None] * width + x_starts[:, :, None, :, None, :])
        index = level * (height * width) + cell
        offset = ops.cast(ops.arange(batch), "float32") * per_image
        index = ops.cast(index + offset[:, None, None, None, None, None], "int32")
        corners = ops.take(table, ops.reshape(index, (-1,)), axis=0)
        num_rois = ops.shape(rois)[1]
        corners = ops.reshape(corners, (batch, num_rois, ph, pw, 4, channels))
        pooled = ops.max(corners, axis=4)  # (B, R, PH, PW, C)
        non_empty = (y_high > y_low)[..., :, None] & (x_high > x_low)[..., None, :]
        return ops.where(non_empty[..., None], pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, features_shape, rois_shape):
        return (features_shape[0], rois_shape[1], *self.pool_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, spatial_scale=self.spatial_scale)
        return config


def roi_max_pool_reference(features, rois, pool_size, spatial_scale):
    """Slow, loop-by-loop NumPy RoI max pooling, written from the paper's description.

    Args:
        features: ``(H, W, C)``; rois: ``(R, 4)`` xyxy pixels; pool_size: int ``P``.

    Returns:
        ``(R, P, P, C)``.
    """
    features = np.asarray(features, np.float32)
    height, width, channels = features.shape
    out = np.zeros((len(rois), pool_size, pool_size, channels), np.float32)
    for r, (x0, y0, x1, y1) in enumerate(np.asarray(rois, np.float64)):
        xs, ys = math.floor(x0 * spatial_scale), math.floor(y0 * spatial_scale)
        xe = max(math.ceil(x1 * spatial_scale), xs + 1)
        ye = max(math.ceil(y1 * spatial_scale), ys + 1)
        bw, bh = (xe - xs) / pool_size, (ye - ys) / pool_size
        for i in range(pool_size):
            for j in range(pool_size):
                r0 = min(max(ys + math.floor(i * bh), 0), height)
                r1 = min(max(ys + math.ceil((i + 1) * bh), 0), height)
                c0 = min(max(xs + math.floor(j * bw), 0), width)
                c1 = min(max(xs + math.ceil((j + 1) * bw), 0), width)
                if r1 > r0 and c1 > c0:
                    out[r, i, j] = features[r0:r1, c0:c1].max(axis=(0, 1))
    return out


# ----------------------------------------------------------------------------- loss
def smooth_l1(x):
    """``0.5 x^2`` if ``|x| < 1`` else ``|x| - 0.5`` (Fast R-CNN, Eq. 3), elementwise."""
    ax = ops.abs(x)
    return ops.where(ax < 1.0, 0.5 * x * x, ax - 0.5)


def fast_rcnn_loss(class_ids, class_logits, box_targets, box_deltas, lambda_: float = 1.0,
                   return_terms: bool = False):
    """The slide's multi-task loss, averaged over the sampled RoIs.

    .. math::
        L(p, u, t^u, v) = -\\log p_u + \\lambda [u \\ge 1]
        \\sum_{i \\in \\{x, y, w, h\\}} \\mathrm{smooth}_{L_1}(t^u_i - v_i)

    Args:
        class_ids: int ``(..., R)`` true class ``u`` of each RoI: 0 = background, ``k + 1`` =
            object class ``k``, -1 = not sampled (ignored in both terms and in the average).
        class_logits: ``(..., R, K + 1)`` scores before the soft-max (``p`` = softmax).
        box_targets: ``(..., R, 4)`` targets ``v`` (ignored where ``u < 1``).
        box_deltas: ``(..., R, K, 4)`` predicted per-class offsets (``t^u`` is row ``u - 1``).
        lambda_: weight of the localisation term (1 in the paper).
        return_terms: also return the two averaged terms.

    Returns:
        The scalar loss (mean over sampled RoIs), or ``(loss, l_cls, l_loc)``.
    """
    class_ids = ops.cast(class_ids, "int32")
    valid = ops.cast(class_ids >= 0, "float32")
    count = ops.maximum(ops.sum(valid), 1.0)
    u = ops.maximum(class_ids, 0)
    log_p = ops.log_softmax(class_logits, axis=-1)
    num_classes_bg = class_logits.shape[-1]
    l_cls = -ops.sum(log_p * ops.one_hot(u, num_classes_bg), axis=-1)  # -log p_u
    foreground = ops.cast(class_ids >= 1, "float32")
    k = box_deltas.shape[-2]
    pick = ops.one_hot(ops.maximum(u - 1, 0), k)[..., None]  # (..., R, K, 1)
    t_u = ops.sum(box_deltas * pick, axis=-2)  # (..., R, 4)
    v = ops.where(foreground[..., None] > 0, ops.cast(box_targets, t_u.dtype), t_u)
    l_loc = ops.sum(smooth_l1(t_u - v), axis=-1)
    cls_term = ops.sum(l_cls * valid) / count
    loc_term = ops.sum(l_loc * foreground * valid) / count
    loss = cls_term + lambda_ * loc_term
    return (loss, cls_term, loc_term) if return_terms else loss


# ----------------------------------------------------------------------------- networks
def detection_head(pooled_shape, num_classes: int, fc_units=(256, 256), name="head"):
    """Fast R-CNN's head: FC layers on the pooled RoI, then two sibling outputs.

    Args:
        pooled_shape: ``(P, P, C)`` of one pooled RoI.
        num_classes: ``K`` object classes (the soft-max has ``K + 1`` outputs, 0 = background).
        fc_units: widths of the fully connected layers (fc6, fc7 in the paper).
        name: model name.

    Returns:
        A ``keras.Model`` ``(N, P, P, C)`` -> ``class_logits (N, K + 1)``,
        ``box_deltas (N, K, 4)`` (per-class offsets ``t^k``).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
    inputs = keras.Input(pooled_shape, name="pooled_roi")
    x = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(fc_units, start=6):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    logits = layers.Dense(num_classes + 1, name="cls_score")(x)
    deltas = layers.Dense(num_classes * 4, name="bbox_pred",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(x)
    deltas = layers.Reshape((num_classes, 4), name="bbox_per_class")(deltas)
    return keras.Model(inputs, [logits, deltas], name=name)


# ----------------------------------------------------------------------------- in-graph targets
def sample_rois(proposals, proposal_valid, gt_boxes, gt_labels, num_rois: int,
                positive_fraction: float = 0.25, foreground_iou: float = 0.5, seed=None,
                add_ground_truth: bool = True):
    """Fast R-CNN's RoI mini-batch: ``num_rois`` per image, up to 25% foreground.

    An RoI is foreground (class ``u = label + 1``) with IoU >= 0.5 against an object, background
    (``u = 0``) below (the paper's lower bound of 0.1 is dropped: our scenes are small). The
    ground-truth boxes are added to the candidates (as in the public implementations), so
    every object has a perfect positive from the start. Box targets are encoded only where the
    RoI is foreground; elsewhere they are zeros (no NaN from padding boxes).

    Args:
        proposals: ``(B, P, 4)`` xyxy; proposal_valid bool ``(B, P)``.
        gt_boxes: ``(B, M, 4)``; gt_labels int ``(B, M)`` with -1 padding.
        num_rois: RoIs per image; positive_fraction: largest foreground share;
        foreground_iou: IoU threshold; seed: a ``keras.random.SeedGenerator``.

    Returns:
        ``rois (B, R, 4)``, ``class_ids (B, R)`` (``u``, -1 = ignored), ``box_targets (B, R, 4)``.
    """
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_valid = gt_labels >= 0
    candidates = ops.cast(proposals, "float32")
    cand_valid = ops.cast(proposal_valid, "bool")
    if add_ground_truth:
        candidates = ops.concatenate([candidates, gt_boxes], axis=1)
        cand_valid = ops.concatenate([cand_valid, gt_valid], axis=1)
    labels, matched, _ = box_utils.assign_anchors(
        candidates, gt_boxes, gt_valid, positive_iou=foreground_iou,
        negative_iou=foreground_iou, force_best=False)
    labels = ops.where(cand_valid, labels, -1)
    indices, sampled = box_utils.sample_balanced(labels, num_rois, positive_fraction, seed)
    rois = ops.take_along_axis(candidates, indices[..., None], axis=1)
    matched = ops.maximum(ops.take_along_axis(matched, indices, axis=1), 0)  # -1: no object
    object_boxes = ops.take_along_axis(gt_boxes, matched[..., None], axis=1)
    object_labels = ops.take_along_axis(ops.cast(gt_labels, "int32"), matched, axis=1)
    class_ids = ops.where(sampled == 1, object_labels + 1, sampled)
    foreground = (sampled == 1)[..., None]
    safe_rois = ops.where(foreground, rois, object_boxes)  # never encode a padding box
    targets = box_utils.encode_boxes(object_boxes, safe_rois, BOX_VARIANCES)
    targets = ops.where(foreground, targets, 0.0)
    return rois, class_ids, targets


# ----------------------------------------------------------------------------- inference
def postprocess(rois, class_logits, box_deltas, image_size, score_threshold=0.05,
                iou_threshold=0.3, max_detections=20, roi_valid=None):
    """Detections from the head: per-class decoding, clipping and per-class NMS, batched.

    Each RoI gives one box per class (its offsets ``t^k`` decoded on the RoI) scored by the
    soft-max probability of that class; boxes of each class are suppressed separately (NMS at
    0.3 as in Fast R-CNN's test code) by ``boxes.non_max_suppression``.

    Args:
        rois: ``(B, R, 4)``; class_logits ``(B, R, K + 1)``; box_deltas ``(B, R, K, 4)``.
        image_size: int or ``(height, width)``.
        score_threshold, iou_threshold, max_detections: NMS settings.
        roi_valid: optional bool ``(B, R)``; invalid RoIs get score 0.

    Returns:
        ``boxes (B, D, 4)``, ``scores (B, D)``, ``classes (B, D)`` (int, object class ``k``),
        ``count (B,)`` (valid detections first, the rest is padding).
    """
    probs = ops.softmax(class_logits, axis=-1)[..., 1:]  # (B, R, K)
    if roi_valid is not None:
        probs = probs * ops.cast(roi_valid, probs.dtype)[..., None]
    boxes = box_utils.decode_boxes(box_deltas, ops.cast(rois, "float32")[:, :, None, :],
                                   BOX_VARIANCES)
    boxes = geometry.clip_boxes(boxes, image_size)
    return box_utils.non_max_suppression(boxes, probs, iou_threshold=iou_threshold,
                                         max_output=max_detections,
                                         score_threshold=score_threshold)


def detections_to_list(boxes, scores, classes, count):
    """Padded batched detections -> ``[(boxes, scores, classes), ...]`` for ``evaluation``."""
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    classes, count = np.asarray(classes), np.asarray(count)
    return [(boxes[i, : count[i]], scores[i, : count[i]], classes[i, : count[i]])
            for i in range(len(count))]


# ----------------------------------------------------------------------------- the detector
class FastRCNN(keras.Model):
    """Fast R-CNN on precomputed proposals: shared conv body, RoI max pooling, FC head.

    Trained with ``fit`` on batches ``{"images", "boxes", "labels", "proposals",
    "proposal_valid"}`` (``data.detection_dataset``): each step samples ``rois_per_image`` RoIs
    per image (``sample_rois``) and minimises ``fast_rcnn_loss``. ``detect(images, proposals)``
    runs the test-time path (all proposals, ``postprocess``).

    Use the builder ``fast_rcnn(...)``.
    """

    def __init__(self, body, head, roi_pool, image_size, num_classes, rois_per_image=16,
                 positive_fraction=0.25, lambda_=1.0, score_threshold=0.05, nms_iou=0.3,
                 max_detections=20, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.body = body
        self.head = head
        self.roi_pool = roi_pool
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.rois_per_image = int(rois_per_image)
        self.positive_fraction = float(positive_fraction)
        self.lambda_ = float(lambda_)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "l_cls", "l_loc")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def head_outputs(self, features, rois, training=False):
        """Pooled RoIs through the head: ``(B, R, K + 1)`` logits and ``(B, R, K, 4)`` deltas."""
        pooled = self.roi_pool(features, rois)  # (B, R, P, P, C)
        shape = ops.shape(pooled)
        flat = ops.reshape(pooled, (-1,) + tuple(pooled.shape[2:]))
        logits, deltas = self.head(flat, training=training)
        logits = ops.reshape(logits, (shape[0], shape[1], self.num_classes + 1))
        deltas = ops.reshape(deltas, (shape[0], shape[1], self.num_classes, 4))
        return logits, deltas

    def call(self, inputs, training=False):
        features = self.body(inputs["images"], training=training)
        return self.head_outputs(features, inputs["proposals"], training=training)

    def compute_losses(self, data, training=True):
        features = self.body(data["images"], training=training)
        rois, class_ids, targets = sample_rois(
            data["proposals"], data["proposal_valid"], data["boxes"], data["labels"],
            self.rois_per_image, self.positive_fraction, seed=self.seed_generator)
        rois = ops.stop_gradient(rois)
        logits, deltas = self.head_outputs(features, rois, training=training)
        return fast_rcnn_loss(class_ids, logits, targets, deltas, self.lambda_, return_terms=True)

    def train_step(self, data):
        import tensorflow as tf

        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, l_cls, l_loc = self.compute_losses(data, training=True)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        for key, value in zip(("loss", "l_cls", "l_loc"), (loss, l_cls, l_loc)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}

    def test_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, l_cls, l_loc = self.compute_losses(data, training=False)
        for key, value in zip(("loss", "l_cls", "l_loc"), (loss, l_cls, l_loc)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}

    def detect_batch(self, images, proposals, proposal_valid=None):
        """Test-time path on one batch: padded ``(boxes, scores, classes, count)`` tensors."""
        features = self.body(images, training=False)
        logits, deltas = self.head_outputs(features, proposals, training=False)
        return postprocess(proposals, logits, deltas, self.image_size, self.score_threshold,
                           self.nms_iou, self.max_detections, proposal_valid)

    def detect(self, images, proposals, proposal_valid=None, batch_size=16):
        """Detections per image ``[(boxes, scores, classes), ...]`` for ``evaluation``."""
        import tensorflow as tf

        if self.run_eagerly:  # debugging and unit tests: no tracing
            self._detect_fn = self.detect_batch
        elif not isinstance(getattr(self, "_detect_fn", None),
                            tf.types.experimental.GenericFunction):
            self._detect_fn = tf.function(self.detect_batch, reduce_retracing=True)
        images = np.asarray(images)
        proposals = np.asarray(proposals, np.float32)
        if proposal_valid is None:
            proposal_valid = geometry.box_area(proposals) > 0
        out = []
        for start in range(0, len(images), batch_size):
            sl = slice(start, start + batch_size)
            result = self._detect_fn(images[sl], proposals[sl], proposal_valid[sl])
            out.extend(detections_to_list(*[np.asarray(r) for r in result]))
        return out


def fast_rcnn(num_classes: int, image_size: int = 64, *, widths=(16, 32, 64, 128),
              convs_per_stage=(1, 1, 2, 2), pool_size=7,
              fc_units=(256, 256), rois_per_image=16, positive_fraction=0.25, lambda_=1.0,
              seed=0, name="fast_rcnn"):
    """Builds a ``FastRCNN`` detector (body stride ``2 ** (len(widths) - 1)``).

    Args:
        num_classes: object classes ``K``.
        image_size: side of the square input images, a multiple of the body stride.
        widths, convs_per_stage: the backbone's stages (``backbone``).
        pool_size: RoI max pooling grid ``P`` (7 in the paper).
        fc_units: the head's FC widths.
        rois_per_image: sampled RoIs per image and step (128 in the paper, 2 images per batch).
        positive_fraction: foreground share of the sampled RoIs (25%).
        lambda_: weight of the box term of the multi-task loss.
        seed: seed of the in-graph RoI sampling.
        name: model name.

    Returns:
        A ``FastRCNN`` (call ``compile(optimizer=...)`` then ``fit``).
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (object classes K, background not "
                         f"counted), got num_classes={num_classes!r}.")
    body_stride = 2 ** max(len(widths) - 1, 0)  # the backbone pools between its stages
    if int(image_size) != image_size or image_size < body_stride or image_size % body_stride:
        lower = max(int(image_size) // body_stride * body_stride, body_stride)
        raise ValueError(
            f"image_size={image_size!r} must be a multiple of the backbone's stride {body_stride} "
            f"(2 ** (len(widths) - 1), widths={tuple(widths)}): otherwise its feature map is "
            "rounded down and RoI pooling scales every box by the wrong factor. Use image_size="
            f"{lower} or {lower + body_stride}."
        )
    body = vgg_backbone((image_size, image_size, 3), widths=widths,
                        convs_per_stage=convs_per_stage, name="backbone")
    stride = image_size // body.output.shape[1]
    roi_pool = RoIMaxPooling(pool_size, 1.0 / stride, name="roi_pool")
    head = detection_head((pool_size, pool_size, widths[-1]), num_classes, fc_units)
    return FastRCNN(body, head, roi_pool, image_size, num_classes, rois_per_image,
                    positive_fraction, lambda_, seed=seed, name=name)
