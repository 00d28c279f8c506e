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

- ``roi_pooling.RoIMaxPooling``: the RoI pooling layer (its own module, next to
  ``roi_align``).
- ``smooth_l1``, ``fast_rcnn_loss``: the loss above, exactly as written.
- ``backbones.vgg_backbone``, ``detection_head``: the conv body (stride 8) and the FC head
  (soft-max over ``K + 1`` classes, per-class box offsets) shared with Faster R-CNN.
- ``sample_rois``: Fast R-CNN's mini-batch of RoIs (25% foreground at IoU >= 0.5), in-graph.
- ``postprocess``: per-class box decoding, clipping and per-class NMS, batched.
- ``FastRCNN`` / ``fast_rcnn``: the detector trained on precomputed proposals.
"""

from __future__ import annotations


import keras
import numpy as np
from keras import layers, ops

from bestiary_keras import geometry
from bestiary_keras.training import as_float32
from bestiary_keras.detection import boxes as box_utils
from bestiary_keras.detection.backbones import square_image_size, vgg_backbone
from bestiary_keras.detection.roi_pooling import RoIMaxPooling

__all__ = [
    "BOX_VARIANCES",
    "smooth_l1",
    "fast_rcnn_loss",
    "detection_head",
    "sample_rois",
    "postprocess",
    "detections_to_list",
    "deserialize_parts",
    "FastRCNN",
    "fast_rcnn",
]

BOX_VARIANCES = (0.1, 0.1, 0.2, 0.2)
"""Divisors of the regression targets (Fast R-CNN normalises them to about unit variance)."""


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
def deserialize_parts(config: dict, keys) -> dict:
    """A detector's config with its sub-models and layers (``keys``) deserialised (the
    ``from_config`` of the subclassed detectors)."""
    return {**config, **{key: keras.saving.deserialize_keras_object(config[key]) for key in keys}}


@keras.saving.register_keras_serializable(package="bestiary_keras")
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
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {k: keras.metrics.Mean(name=k) for k in ("loss", "l_cls", "l_loc")}

    def get_config(self):
        config = super().get_config()
        config.update(
            {key: keras.saving.serialize_keras_object(getattr(self, key))
             for key in ("body", "head", "roi_pool")},
            image_size=self.image_size, num_classes=self.num_classes,
            rois_per_image=self.rois_per_image, positive_fraction=self.positive_fraction,
            lambda_=self.lambda_, score_threshold=self.score_threshold, nms_iou=self.nms_iou,
            max_detections=self.max_detections, seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_parts(config, ("body", "head", "roi_pool")))

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
        return as_float32((logits, deltas))  # float32 under a mixed policy

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
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        grads = tape.gradient(scaled, self.trainable_variables)
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


def fast_rcnn(input_shape=(64, 64, 3), num_classes: int = 3, *, widths=(16, 32, 64, 128),
              convs_per_stage=(1, 1, 2, 2), pool_size=7,
              fc_units=(256, 256), rois_per_image=16, positive_fraction=0.25, lambda_=1.0,
              seed=0, name="fast_rcnn"):
    """Builds a ``FastRCNN`` detector (body stride ``2 ** (len(widths) - 1)``).

    Args:
        input_shape: ``(S, S, 3)``: square images whose side is a multiple of the body stride.
        num_classes: object classes ``K``.
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
    image_size = square_image_size(input_shape)
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (object classes K, background not "
                         f"counted), got num_classes={num_classes!r}.")
    body_stride = 2 ** max(len(widths) - 1, 0)  # the backbone pools between its stages
    if int(image_size) != image_size or image_size < body_stride or image_size % body_stride:
        lower = max(int(image_size) // body_stride * body_stride, body_stride)
        raise ValueError(
            f"input_shape={tuple(input_shape)!r}: the side {image_size} must be a multiple of "
            f"the backbone's stride {body_stride} "
            f"(2 ** (len(widths) - 1), widths={tuple(widths)}): otherwise its feature map is "
            "rounded down and RoI pooling scales every box by the wrong factor. Use a side of "
            f"{lower} or {lower + body_stride}."
        )
    body = vgg_backbone((image_size, image_size, 3), widths=widths,
                        convs_per_stage=convs_per_stage, name="backbone")
    stride = image_size // body.output.shape[1]
    roi_pool = RoIMaxPooling(pool_size, 1.0 / stride, name="roi_pool")
    head = detection_head((pool_size, pool_size, widths[-1]), num_classes, fc_units)
    return FastRCNN(body, head, roi_pool, image_size, num_classes, rois_per_image,
                    positive_fraction, lambda_, seed=seed, name=name)
