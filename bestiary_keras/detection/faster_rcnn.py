"""Faster R-CNN (Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with
Region Proposal Networks", NIPS 2015): notebook 05.

The slide's idea: the proposals themselves come from the shared feature map. A small
**Region Proposal Network** slides a 3x3 window over it and, at every position, scores ``A``
anchors (``scales x ratios`` reference boxes) as object / not object and regresses their
offsets; the best proposals after NMS feed the Fast R-CNN head (``fast_rcnn``). The RPN loss is

.. math::
    L(\\{p_i\\}, \\{t_i\\}) = \\frac{1}{N_{cls}} \\sum_i L_{cls}(p_i, p_i^*)
    + \\lambda \\frac{1}{N_{reg}} \\sum_i p_i^* L_{reg}(t_i, t_i^*)

with ``L_cls`` the binary log loss over the ``N_cls`` sampled anchors (256 per image), ``L_reg``
smooth L1 on positives only (``p_i^* = 1``), ``N_reg`` the number of anchor locations and
``lambda`` balancing the two (10 in the paper, with ``N_reg ~ 2400``).

Training here is the paper's *approximate joint training*: one network, one optimiser, the
RPN loss plus the Fast R-CNN loss, and the proposals treated as constants (no gradient through
their coordinates). The paper's 4-step alternating training is not reproduced.
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
from bestiary_keras.detection.fast_rcnn import (
    BOX_VARIANCES,
    deserialize_parts,
    detection_head,
    detections_to_list,
    fast_rcnn_loss,
    postprocess,
    sample_rois,
    smooth_l1,
)

__all__ = [
    "rpn_head",
    "rpn_loss",
    "rpn_targets",
    "propose",
    "FasterRCNN",
    "faster_rcnn",
]


def rpn_head(feature_shape, num_anchors: int, width: int = 128, name="rpn"):
    """The Region Proposal Network: a 3x3 conv "sliding window", then two sibling 1x1 convs.

    Args:
        feature_shape: ``(H, W, C)`` of the shared feature map.
        num_anchors: anchors per position ``A``.
        width: channels of the 3x3 conv (256 for ZF, 512 for VGG in the paper).
        name: model name.

    Returns:
        A ``keras.Model`` feature map -> ``objectness`` logits ``(H * W * A,)`` and ``deltas``
        ``(H * W * A, 4)``, ordered like ``boxes.generate_anchors``.
    """
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be >= 1, got {num_anchors!r}.")
    inputs = keras.Input(feature_shape, name="features")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="rpn_conv")(inputs)
    init = keras.initializers.RandomNormal(stddev=0.01)
    logits = layers.Conv2D(num_anchors, 1, kernel_initializer=init, name="rpn_cls")(x)
    deltas = layers.Conv2D(num_anchors * 4, 1, kernel_initializer=init, name="rpn_bbox")(x)
    h, w = feature_shape[0], feature_shape[1]
    logits = layers.Reshape((h * w * num_anchors,), name="rpn_cls_flat")(logits)
    deltas = layers.Reshape((h * w * num_anchors, 4), name="rpn_bbox_flat")(deltas)
    return keras.Model(inputs, [logits, deltas], name=name)


def rpn_loss(anchor_labels, logits, targets, deltas, num_reg: int, lambda_: float = 10.0,
             num_cls=None, return_terms: bool = False):
    """The slide's RPN loss, averaged over the images of the batch.

    .. math::
        L = \\frac{1}{N_{cls}} \\sum_i L_{cls}(p_i, p_i^*)
          + \\lambda \\frac{1}{N_{reg}} \\sum_i p_i^* L_{reg}(t_i, t_i^*)

    Args:
        anchor_labels: int ``(B, N)``: ``p_i^*`` = 1 (object) or 0 (background) for the sampled
            anchors, -1 for the others (in neither sum).
        logits: ``(B, N)`` objectness logits (``p_i`` = sigmoid).
        targets: ``(B, N, 4)`` ``t_i^*`` (used where ``p_i^* = 1``).
        deltas: ``(B, N, 4)`` predicted ``t_i``.
        num_reg: ``N_reg``, the number of anchor locations (feature map ``H * W``).
        lambda_: the balancing weight.
        num_cls: ``N_cls``; default the number of sampled anchors of each image (256).
        return_terms: also return the two terms.

    Returns:
        The scalar loss, or ``(loss, cls_term, reg_term)``.
    """
    if num_reg is None or num_reg <= 0:
        raise ValueError(f"num_reg must be the number of anchor locations (> 0), got {num_reg!r}.")
    labels = ops.cast(anchor_labels, "int32")
    sampled = ops.cast(labels >= 0, "float32")
    p_star = ops.cast(labels == 1, "float32")
    # -[p* log p + (1 - p*) log(1 - p)] with p = sigmoid(logit), in the overflow-free form
    log_loss = ops.maximum(logits, 0.0) - logits * p_star + ops.log1p(ops.exp(-ops.abs(logits)))
    n_cls = ops.maximum(ops.sum(sampled, axis=-1), 1.0) if num_cls is None else float(num_cls)
    cls_term = ops.sum(log_loss * sampled, axis=-1) / n_cls
    t_star = ops.where(p_star[..., None] > 0, ops.cast(targets, "float32"), deltas)
    reg = ops.sum(smooth_l1(deltas - t_star), axis=-1)
    reg_term = ops.sum(reg * p_star, axis=-1) / float(num_reg)
    cls_term, reg_term = ops.mean(cls_term), ops.mean(reg_term)
    loss = cls_term + lambda_ * reg_term
    return (loss, cls_term, reg_term) if return_terms else loss


def rpn_targets(anchors, gt_boxes, gt_labels, num_samples=256, positive_fraction=0.5,
                positive_iou=0.7, negative_iou=0.3, seed=None):
    """Anchor labels (sampled) and regression targets of a batch, in-graph.

    Labels follow ``boxes.assign_anchors`` (IoU >= 0.7 or the best anchor of an object:
    positive; < 0.3: negative) and ``num_samples`` anchors are kept per image with up to half
    positives (``boxes.sample_balanced``); targets are ``boxes.encode_boxes`` of the matched
    object, computed only for positives (zeros elsewhere, never a padding box).

    Returns:
        ``labels`` int32 ``(B, N)`` (1 / 0 sampled, -1 otherwise), ``targets`` ``(B, N, 4)``.
    """
    gt_boxes = ops.cast(gt_boxes, "float32")
    labels, matched, _ = box_utils.assign_anchors(anchors, gt_boxes, gt_labels >= 0,
                                                  positive_iou=positive_iou,
                                                  negative_iou=negative_iou)
    indices, sampled = box_utils.sample_balanced(labels, num_samples, positive_fraction, seed)
    # scatter the sampled labels back over all anchors (-1 elsewhere)
    num_anchors = labels.shape[-1]
    hits = ops.one_hot(indices, num_anchors)  # (B, S, N)
    chosen = ops.sum(hits * ops.cast(sampled >= 0, "float32")[..., None], axis=1) > 0
    labels = ops.where(chosen, labels, -1)
    matched = ops.maximum(matched, 0)  # -1 (no object) only where no anchor is positive
    objects = ops.take_along_axis(gt_boxes, matched[..., None], axis=1)  # (B, N, 4)
    anchors_b = ops.broadcast_to(ops.cast(anchors, "float32")[None], ops.shape(objects))
    positive = (labels == 1)[..., None]
    targets = box_utils.encode_boxes(ops.where(positive, objects, anchors_b), anchors_b,
                                     BOX_VARIANCES)
    return labels, ops.where(positive, targets, 0.0)


def propose(anchors, logits, deltas, image_size, pre_nms: int = 200, post_nms: int = 50,
            iou_threshold: float = 0.7, min_size: float = 2.0):
    """Region proposals: decode the anchors, clip, keep the ``pre_nms`` best, NMS at 0.7.

    Args:
        anchors: ``(N, 4)``; logits ``(B, N)``; deltas ``(B, N, 4)``.
        image_size: int or ``(height, width)``.
        pre_nms: best-scoring boxes considered per image (6000 in the paper at 600 px).
        post_nms: proposals kept per image after NMS (2000 to train, 300 to test in the paper).
        iou_threshold: NMS threshold (0.7).
        min_size: boxes narrower or lower than this (pixels) are dropped.

    Returns:
        ``proposals (B, post_nms, 4)``, ``scores (B, post_nms)`` (objectness probabilities) and
        ``valid`` bool ``(B, post_nms)``: fewer than ``post_nms`` may survive, the rest is
        zero padding.
    """
    pre_nms = min(int(pre_nms), int(anchors.shape[0]))
    boxes = box_utils.decode_boxes(deltas, ops.cast(anchors, "float32")[None], BOX_VARIANCES)
    boxes = geometry.clip_boxes(boxes, image_size)
    scores = ops.sigmoid(logits)
    scores = ops.where(box_utils.valid_boxes(boxes, min_size), scores, -1.0)
    top_scores, top = ops.top_k(scores, pre_nms)
    top_boxes = ops.take_along_axis(boxes, top[..., None], axis=1)
    proposals, proposal_scores, _, count = box_utils.non_max_suppression(
        top_boxes, top_scores[..., None], iou_threshold=iou_threshold, max_output=post_nms,
        score_threshold=0.0)
    valid = ops.arange(post_nms)[None, :] < count[:, None]
    return proposals, proposal_scores, valid


@keras.saving.register_keras_serializable(package="bestiary_keras")
class FasterRCNN(keras.Model):
    """Faster R-CNN: shared body, RPN, proposals by NMS, RoI max pooling, Fast R-CNN head.

    Trained with ``fit`` on ``data.detection_dataset`` batches (``images``, ``boxes``,
    ``labels``) by approximate joint training: loss = RPN loss + Fast R-CNN loss. Use the
    builder ``faster_rcnn(...)``; ``detect(images)`` gives per-image detections,
    ``proposals(images)`` the RPN's proposals.
    """

    def __init__(self, body, rpn, head, roi_pool, anchors, image_size, num_classes, *,
                 rpn_samples=256, rpn_lambda=1.0, rois_per_image=16, positive_fraction=0.25,
                 head_lambda=1.0, pre_nms_train=200, post_nms_train=50, pre_nms_test=200,
                 post_nms_test=50, score_threshold=0.05, nms_iou=0.3, max_detections=20,
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.body, self.rpn, self.head, self.roi_pool = body, rpn, head, roi_pool
        self.anchors = np.asarray(anchors, np.float32)
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.num_locations = int(body.output.shape[1] * body.output.shape[2])
        self.rpn_samples = int(rpn_samples)
        self.rpn_lambda = float(rpn_lambda)
        self.rois_per_image = int(rois_per_image)
        self.positive_fraction = float(positive_fraction)
        self.head_lambda = float(head_lambda)
        self.pre_nms_train, self.post_nms_train = int(pre_nms_train), int(post_nms_train)
        self.pre_nms_test, self.post_nms_test = int(pre_nms_test), int(post_nms_test)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)
        self.seed_generator = keras.random.SeedGenerator(seed)
        names = ("loss", "rpn_cls", "rpn_reg", "l_cls", "l_loc")
        self.trackers = {k: keras.metrics.Mean(name=k) for k in names}
        self.seed = int(seed)

    PARTS = ("body", "rpn", "head", "roi_pool")
    """The sub-models and layers that ``get_config`` serialises."""

    def get_config(self):
        config = super().get_config()
        config.update({key: keras.saving.serialize_keras_object(getattr(self, key))
                       for key in self.PARTS})
        config.update(
            anchors=self.anchors.tolist(), image_size=self.image_size,
            num_classes=self.num_classes, rpn_samples=self.rpn_samples,
            rpn_lambda=self.rpn_lambda, rois_per_image=self.rois_per_image,
            positive_fraction=self.positive_fraction, head_lambda=self.head_lambda,
            pre_nms_train=self.pre_nms_train, post_nms_train=self.post_nms_train,
            pre_nms_test=self.pre_nms_test, post_nms_test=self.post_nms_test,
            score_threshold=self.score_threshold, nms_iou=self.nms_iou,
            max_detections=self.max_detections, seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_parts(config, cls.PARTS))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def head_outputs(self, features, rois, training=False):
        pooled = self.roi_pool(features, rois)
        shape = ops.shape(pooled)
        flat = ops.reshape(pooled, (-1,) + tuple(pooled.shape[2:]))
        logits, deltas = self.head(flat, training=training)
        return as_float32((ops.reshape(logits, (shape[0], shape[1], self.num_classes + 1)),
                           ops.reshape(deltas, (shape[0], shape[1], self.num_classes, 4))))

    def rpn_outputs(self, features, training=False):
        """The RPN's ``(logits, deltas)`` on ``features``, in float32 (also under a mixed policy)."""
        return as_float32(self.rpn(features, training=training))

    def call(self, images, training=False):
        features = self.body(images, training=training)
        return self.rpn_outputs(features, training=training)

    def compute_losses(self, data, training=True):
        features = self.body(data["images"], training=training)
        rpn_logits, rpn_deltas = self.rpn_outputs(features, training=training)
        anchor_labels, anchor_targets = rpn_targets(
            self.anchors, data["boxes"], data["labels"], self.rpn_samples, seed=self.seed_generator)
        loss_rpn, rpn_cls, rpn_reg = rpn_loss(anchor_labels, rpn_logits, anchor_targets,
                                              rpn_deltas, self.num_locations, self.rpn_lambda,
                                              return_terms=True)
        proposals, _, valid = propose(self.anchors, ops.stop_gradient(rpn_logits),
                                      ops.stop_gradient(rpn_deltas), self.image_size,
                                      self.pre_nms_train, self.post_nms_train)
        rois, class_ids, targets = sample_rois(proposals, valid, data["boxes"], data["labels"],
                                               self.rois_per_image, self.positive_fraction,
                                               seed=self.seed_generator)
        logits, deltas = self.head_outputs(features, ops.stop_gradient(rois), training=training)
        loss_head, l_cls, l_loc = fast_rcnn_loss(class_ids, logits, targets, deltas,
                                                 self.head_lambda, return_terms=True)
        return loss_rpn + loss_head, (rpn_cls, rpn_reg, l_cls, l_loc)

    def _track(self, loss, terms):
        for key, value in zip(self.trackers, (loss,) + tuple(terms)):
            self.trackers[key].update_state(value)
        return {k: t.result() for k, t in self.trackers.items()}

    def train_step(self, data):
        import tensorflow as tf

        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, terms = self.compute_losses(data, training=True)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._track(loss, terms)

    def test_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, terms = self.compute_losses(data, training=False)
        return self._track(loss, terms)

    def proposals_batch(self, images, post_nms=None, pre_nms=None):
        """RPN proposals ``(B, P, 4)``, scores and validity for a batch (test settings)."""
        features = self.body(images, training=False)
        logits, deltas = self.rpn_outputs(features)
        return propose(self.anchors, logits, deltas, self.image_size,
                       pre_nms or self.pre_nms_test, post_nms or self.post_nms_test)

    def detect_batch(self, images):
        """The whole test-time network on one batch: padded ``(boxes, scores, classes, count)``."""
        features = self.body(images, training=False)
        logits, deltas = self.rpn_outputs(features)
        proposals, _, valid = propose(self.anchors, logits, deltas, self.image_size,
                                      self.pre_nms_test, self.post_nms_test)
        cls_logits, box_deltas = self.head_outputs(features, proposals, training=False)
        return postprocess(proposals, cls_logits, box_deltas, self.image_size,
                           self.score_threshold, self.nms_iou, self.max_detections, valid)

    def _compiled(self, name, fn):
        import tensorflow as tf

        if self.run_eagerly:  # debugging and unit tests: no tracing
            return fn
        cache = self.__dict__.setdefault("_fn_cache", {})
        if name not in cache:
            cache[name] = tf.function(fn, reduce_retracing=True)
        return cache[name]

    def detect(self, images, batch_size=16):
        """Detections per image ``[(boxes, scores, classes), ...]`` for ``evaluation``."""
        fn = self._compiled("detect", self.detect_batch)
        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            result = fn(images[start : start + batch_size])
            out.extend(detections_to_list(*[np.asarray(r) for r in result]))
        return out

    def proposals(self, images, post_nms=None, pre_nms=None, batch_size=16):
        """Per image ``(boxes (P_i, 4), scores (P_i,))``: the RPN's proposals after NMS."""
        post = int(post_nms or self.post_nms_test)
        pre = int(pre_nms or self.pre_nms_test)
        fn = self._compiled(f"proposals_{pre}_{post}",
                            lambda x: self.proposals_batch(x, post, pre))
        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            p, s, v = (np.asarray(t) for t in fn(images[start : start + batch_size]))
            out.extend((p[i][v[i]], s[i][v[i]]) for i in range(len(p)))
        return out


def faster_rcnn(input_shape=(64, 64, 3), num_classes: int = 3, *, widths=(16, 32, 64, 128),
                convs_per_stage=(1, 1, 2, 2),
                anchor_scales=(12, 20, 32), anchor_ratios=(0.5, 1.0, 2.0), rpn_width=128,
                pool_size=7, fc_units=(256, 256), rpn_lambda=1.0, rois_per_image=16,
                positive_fraction=0.25, post_nms_train=50, post_nms_test=50, seed=0,
                name="faster_rcnn"):
    """Builds a ``FasterRCNN`` detector.

    Args:
        num_classes: object classes ``K``.
        input_shape: ``(S, S, 3)``, square images.
        widths, convs_per_stage: the backbone's stages (stride ``2 ** (len(widths) - 1)``).
        anchor_scales: anchor sizes in pixels (square root of the area).
        anchor_ratios: anchor aspect ratios ``h / w``.
        rpn_width: channels of the RPN's 3x3 conv.
        pool_size: RoI max pooling grid.
        fc_units: FC widths of the head.
        rpn_lambda: ``lambda`` of the RPN loss (with ``N_reg`` = feature-map locations).
        rois_per_image: RoIs sampled per image for the head (the biggest speed lever here).
        positive_fraction: largest foreground share of the sampled RoIs (0.25 in the paper).
        post_nms_train, post_nms_test: proposals kept after NMS.
        seed: seed of the in-graph anchor and RoI sampling.
        name: model name.

    Returns:
        A ``FasterRCNN``.
    """
    image_size = square_image_size(input_shape)
    body = vgg_backbone((image_size, image_size, 3), widths=widths,
                        convs_per_stage=convs_per_stage, name="backbone")
    fh, fw, channels = body.output.shape[1:]
    stride = image_size // fh
    anchors = box_utils.generate_anchors((fh, fw), stride, anchor_scales, anchor_ratios)
    num_anchors = len(anchor_scales) * len(anchor_ratios)
    rpn = rpn_head((fh, fw, channels), num_anchors, rpn_width)
    roi_pool = RoIMaxPooling(pool_size, 1.0 / stride, name="roi_pool")
    head = detection_head((pool_size, pool_size, channels), num_classes, fc_units)
    return FasterRCNN(body, rpn, head, roi_pool, anchors, image_size, num_classes,
                      rpn_lambda=rpn_lambda, rois_per_image=rois_per_image,
                      positive_fraction=positive_fraction, post_nms_train=post_nms_train,
                      post_nms_test=post_nms_test, seed=seed,
                      name=name)
