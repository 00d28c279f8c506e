"""Mask R-CNN (He, Gkioxari, Dollár, Girshick, "Mask R-CNN", ICCV 2017): notebook 11.

The slide: "Add segmentation mask prediction for each ROI". Faster R-CNN (``faster_rcnn``) gets a
third head next to classification and box regression: a small fully convolutional network
that, for every RoI, predicts one ``m x m`` mask **per class** with a per-pixel sigmoid. The
loss on each sampled RoI is

.. math::
    L = L_{cls} + L_{box} + L_{mask},\\qquad
    L_{mask} = -\\frac{1}{m^2} \\sum_{ij} \\left[ y_{ij} \\log \\sigma(s^u_{ij})
    + (1 - y_{ij}) \\log (1 - \\sigma(s^u_{ij})) \\right]

defined on foreground RoIs only, and only on the mask ``s^u`` of the RoI's ground-truth class
``u``: the classes do not compete for pixels (the paper's "decoupling"; ``softmax=True`` gives
the coupled alternative of its Table 2b). The target ``y`` is the RoI's matched instance mask
cropped to the RoI and resized to ``m x m`` (``mask_targets``). The features are read with
``roi_align.RoIAlign`` instead of RoI max pooling.

Here the mask head reads the stride-4 map of the shared backbone (the paper's FPN variant also
reads its masks from the finest levels), while the RPN and the box head keep notebook 05's
stride-8 map. Paste-back into the image and mask AP are in ``mask_evaluation``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras.augment import flip_boxes
from bestiary_keras.batching import SeededBatches
from bestiary_keras.training import as_float32
from bestiary_keras.detection import boxes as box_utils
from bestiary_keras.detection import faster_rcnn as frcnn
from bestiary_keras.detection.fast_rcnn import (
    deserialize_parts,
    fast_rcnn_loss,
    postprocess,
    sample_rois,
)
from bestiary_keras.detection.roi_align import RoIAlign
from bestiary_keras.detection.roi_pooling import RoIMaxPooling

__all__ = [
    "MASK_SIZE",
    "check_instances",
    "MaskBatches",
    "feature_maps",
    "mask_head",
    "mask_targets",
    "mask_loss",
    "MaskRCNN",
    "mask_rcnn",
]

MASK_SIZE = 14
"""``m``: side of the predicted mask of each RoI (the paper: 28 with 14x14 RoIAlign features)."""


def check_instances(boxes, labels, masks, num_classes: int):
    """Raises a ``ValueError`` when instance masks do not fit boxes and labels.

    Args:
        boxes: ``(N, M, 4)``; labels: ``(N, M)`` (-1 = padding); masks: ``(N, M, H, W)``.
        num_classes: labels must lie in ``[-1, num_classes)``.
    """
    boxes, labels, masks = np.asarray(boxes), np.asarray(labels), np.asarray(masks)
    if masks.ndim != 4 or boxes.ndim != 3 or masks.shape[:2] != boxes.shape[:2] \
            or labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"masks of shape {masks.shape} do not match boxes of shape {boxes.shape} and labels "
            f"of shape {labels.shape}: give one (H, W) mask per box, masks (N, M, H, W) for "
            "boxes (N, M, 4) and labels (N, M)."
        )
    bad = (labels < -1) | (labels >= num_classes)
    if bad.any():
        raise ValueError(
            f"labels of shape {labels.shape} hold {sorted(set(labels[bad].tolist()))}, outside "
            f"the {num_classes} classes [0, {num_classes}) (-1 marks padding); boxes have shape "
            f"{boxes.shape}."
        )


class MaskBatches(SeededBatches):
    """Training batches with instance masks: dicts ``images``, ``boxes``, ``labels``, ``masks``.

    Each scene is mirrored left-right with probability 0.5 (image, boxes and masks together),
    drawn from the batch's seeded generator (``batching.SeededBatches``).

    Args:
        scenes: a ``SceneSet`` (or anything with ``images``, ``boxes``, ``labels``, ``masks``).
        flip: random horizontal flips.
        **kwargs: ``batch_size``, ``steps``, ``seed`` of ``SeededBatches``.
    """

    def __init__(self, scenes, *, flip: bool = True, **kwargs):
        names = getattr(scenes, "class_names", None)
        num_classes = len(names) if names else int(np.max(scenes.labels, initial=-1)) + 1
        check_instances(scenes.boxes, scenes.labels, scenes.masks, num_classes)
        super().__init__(len(scenes.images), **kwargs)
        self.images, self.boxes = scenes.images, np.asarray(scenes.boxes, np.float32)
        self.labels, self.masks = np.asarray(scenes.labels, np.int32), scenes.masks
        self.flip = bool(flip)

    def make_batch(self, indices, rng):
        images = self.images[indices].astype(np.float32)
        boxes, labels = self.boxes[indices], self.labels[indices]
        masks = self.masks[indices].astype(np.float32)
        if self.flip:
            mirror = rng.random(len(indices)) < 0.5
            images[mirror] = images[mirror, :, ::-1]
            masks[mirror] = masks[mirror, :, :, ::-1]
            boxes = np.where(mirror[:, None, None],
                             flip_boxes(boxes, float(images.shape[2]), labels >= 0), boxes)
        return ({"images": images, "boxes": boxes, "labels": labels, "masks": masks},)


def feature_maps(body, strides=(4, 8), name="features"):
    """The backbone's maps at several strides, as one ``keras.Model`` sharing its layers.

    The map of stride ``s`` is the last layer whose output is ``1 / s`` of the input (the end
    of a stage, before its pooling).
    """
    size = body.input.shape[1]
    last = {}
    for layer in body.layers:
        shape = layer.output.shape
        if len(shape) == 4:
            last[size // shape[1]] = layer.output
    missing = [s for s in strides if s not in last]
    if missing:
        raise ValueError(
            f"strides {missing} are not in the backbone (its stages give strides {sorted(last)})."
        )
    return keras.Model(body.input, [last[s] for s in strides], name=name)


def mask_head(pooled_shape, num_classes: int, width: int = 64, convs: int = 2,
              softmax: bool = False, name="mask_head"):
    """The mask branch: 3x3 convs, a 2x2 transposed conv (``m = 2P``), one 1x1 conv of masks.

    Args:
        pooled_shape: ``(P, P, C)`` of one pooled RoI.
        num_classes: ``K``; the output has ``K`` mask logits per pixel (``K + 1`` with
            ``softmax``, channel 0 = background).
        width, convs: channels and number of the 3x3 convs (the paper: 256 and 4).
        softmax: the coupled variant (a soft-max across classes per pixel).

    Returns:
        A ``keras.Model`` ``(N, P, P, C)`` -> ``(N, 2P, 2P, K)`` (or ``K + 1``) logits.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
    inputs = keras.Input(pooled_shape, name="pooled_roi")
    x = inputs
    for i in range(1, convs + 1):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"mask_conv{i}")(x)
    x = layers.Conv2DTranspose(width, 2, strides=2, activation="relu", name="mask_deconv")(x)
    outputs = layers.Conv2D(num_classes + int(softmax), 1, name="mask_logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _sample_boxes(rois, mask_size, image_hw):
    """``tf.image.crop_and_resize`` boxes that sample bin centres of ``rois`` (aligned)."""
    height, width = image_hw
    x0, y0, x1, y1 = (rois[..., i] for i in range(4))
    half_x, half_y = 0.5 * (x1 - x0) / mask_size, 0.5 * (y1 - y0) / mask_size
    # first and last bin centres, in pixel-index coordinates (pixel i is centred at i)
    return ops.stack([(y0 + half_y - 0.5) / (height - 1), (x0 + half_x - 0.5) / (width - 1),
                      (y1 - half_y - 0.5) / (height - 1), (x1 - half_x - 0.5) / (width - 1)], -1)


def mask_targets(gt_masks, rois, matched, mask_size: int = MASK_SIZE):
    """Mask targets: each RoI's matched instance mask cropped to the RoI, resized to ``m x m``.

    The instance mask is sampled bilinearly at the centres of the RoI's ``m x m`` bins
    (``tf.image.crop_and_resize``, the same half-pixel convention as ``RoIAlign``) and
    thresholded at 0.5; outside the image it is 0.

    Args:
        gt_masks: ``(B, M, H, W)`` instance masks (bool or 0/1).
        rois: ``(B, R, 4)`` xyxy pixels; matched: int ``(B, R)`` index of each RoI's object.

    Returns:
        ``(B, R, m, m)`` float32 in {0, 1}.
    """
    import tensorflow as tf

    gt_masks = ops.cast(gt_masks, "float32")
    batch, num_objects = ops.shape(gt_masks)[0], gt_masks.shape[1]
    height, width = gt_masks.shape[2], gt_masks.shape[3]
    flat = ops.reshape(gt_masks, (-1, height, width, 1))
    index = ops.arange(batch, dtype="int32")[:, None] * num_objects + ops.cast(matched, "int32")
    boxes = _sample_boxes(ops.cast(rois, "float32"), mask_size, (height, width))
    crops = tf.image.crop_and_resize(flat, ops.reshape(boxes, (-1, 4)),
                                     ops.reshape(index, (-1,)), (mask_size, mask_size))
    crops = ops.reshape(crops, (batch, -1, mask_size, mask_size))
    return ops.cast(crops >= 0.5, "float32")


def mask_loss(class_ids, targets, logits, softmax: bool = False):
    """``L_mask``: mean per-pixel binary cross-entropy of the true class's mask, foreground only.

    .. math::
        L_{mask} = -\\frac{1}{m^2} \\sum_{ij} y_{ij} \\log \\sigma(s^u_{ij})
        + (1 - y_{ij}) \\log(1 - \\sigma(s^u_{ij}))

    averaged over the RoIs with ``u >= 1``; 0 (not NaN) when there are none.

    Args:
        class_ids: int ``(..., R)``: ``u`` (0 = background, ``k + 1`` = class ``k``, -1 =
            ignored); only RoIs with ``u >= 1`` count.
        targets: ``(..., R, m, m)`` in {0, 1}.
        logits: ``(..., R, m, m, K)`` mask logits (``K + 1`` with ``softmax``).
        softmax: the coupled variant: cross-entropy of a soft-max over background and the
            ``K`` classes, the target being class ``u`` on the mask and background elsewhere.

    Returns:
        The scalar loss.
    """
    u = ops.cast(class_ids, "int32")
    foreground = ops.cast(u >= 1, "float32")
    targets = ops.cast(targets, "float32")
    channels = logits.shape[-1]
    if softmax:
        pixel_class = ops.cast(targets, "int32") * ops.maximum(u, 0)[..., None, None]
        log_p = ops.log_softmax(logits, axis=-1)
        per_pixel = -ops.sum(log_p * ops.one_hot(pixel_class, channels), axis=-1)
    else:
        pick = ops.one_hot(ops.maximum(u - 1, 0), channels)[..., None, None, :]
        s = ops.sum(logits * pick, axis=-1)  # (..., R, m, m): s^u
        per_pixel = ops.maximum(s, 0.0) - s * targets + ops.log1p(ops.exp(-ops.abs(s)))
    per_roi = ops.mean(per_pixel, axis=(-2, -1))
    return ops.sum(per_roi * foreground) / ops.maximum(ops.sum(foreground), 1.0)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class MaskRCNN(frcnn.FasterRCNN):
    """Faster R-CNN (``faster_rcnn.FasterRCNN``) with a mask branch.

    ``features`` maps an image to its stride-``mask_stride`` and box-head maps; the RPN and box
    head work as in notebook 05, and the mask head reads ``mask_pool`` (``RoIAlign`` or
    ``RoIMaxPooling``) of the finer map. Batches are dicts with ``images``, ``boxes``,
    ``labels`` and ``masks`` (``mask_dataset``). ``segment(images)`` gives per image
    ``(boxes, scores, classes, mask_probs)`` with ``m x m`` mask probabilities of the detected
    class (``mask_evaluation.paste_masks`` puts them into the image).
    """

    def __init__(self, body, rpn, head, roi_pool, anchors, image_size, num_classes, *,
                 features, mask_pool, mask_net, softmax=False, mask_lambda=1.0, **kwargs):
        super().__init__(body, rpn, head, roi_pool, anchors, image_size, num_classes, **kwargs)
        self.features, self.mask_pool, self.mask_net = features, mask_pool, mask_net
        self.softmax = bool(softmax)
        self.mask_lambda = float(mask_lambda)
        self.mask_size = int(mask_net.output.shape[1])
        self.trackers["l_mask"] = keras.metrics.Mean(name="l_mask")

    PARTS = frcnn.FasterRCNN.PARTS + ("mask_pool", "mask_net")

    def get_config(self):
        config = super().get_config()
        config.update({key: keras.saving.serialize_keras_object(getattr(self, key))
                       for key in ("mask_pool", "mask_net")})
        # ``features`` shares the body's layers: saved as the strides it reads, rebuilt on load
        strides = [self.image_size // int(out.shape[1]) for out in self.features.outputs]
        config.update(features=strides, softmax=self.softmax, mask_lambda=self.mask_lambda)
        return config

    @classmethod
    def from_config(cls, config):
        config = deserialize_parts(config, cls.PARTS)
        config["features"] = feature_maps(config["body"], tuple(config["features"]))
        return cls(**config)

    def mask_logits(self, fine, rois, training=False):
        """``(B, R, m, m, K)`` (or ``K + 1``) mask logits of ``rois`` on the fine map."""
        pooled = self.mask_pool(fine, rois)
        shape = ops.shape(pooled)
        logits = self.mask_net(ops.reshape(pooled, (-1,) + tuple(pooled.shape[2:])),
                               training=training)
        return as_float32(ops.reshape(logits, (shape[0], shape[1]) + tuple(logits.shape[1:])))

    def compute_losses(self, data, training=True):
        fine, coarse = self.features(data["images"], training=training)
        rpn_logits, rpn_deltas = self.rpn_outputs(coarse, training=training)
        anchor_labels, anchor_targets = frcnn.rpn_targets(
            self.anchors, data["boxes"], data["labels"], self.rpn_samples, seed=self.seed_generator)
        loss_rpn, rpn_cls, rpn_reg = frcnn.rpn_loss(anchor_labels, rpn_logits, anchor_targets,
                                                    rpn_deltas, self.num_locations,
                                                    self.rpn_lambda, return_terms=True)
        proposals, _, valid = frcnn.propose(self.anchors, ops.stop_gradient(rpn_logits),
                                            ops.stop_gradient(rpn_deltas), self.image_size,
                                            self.pre_nms_train, self.post_nms_train)
        rois, class_ids, targets = sample_rois(proposals, valid, data["boxes"], data["labels"],
                                               self.rois_per_image, self.positive_fraction,
                                               seed=self.seed_generator)
        rois = ops.stop_gradient(rois)
        logits, deltas = self.head_outputs(coarse, rois, training=training)
        loss_head, l_cls, l_loc = fast_rcnn_loss(class_ids, logits, targets, deltas,
                                                 self.head_lambda, return_terms=True)
        # sample_rois puts the foreground first: the mask branch sees only those slots
        slots = int(round(self.rois_per_image * self.positive_fraction))
        pos_rois, pos_ids = rois[:, :slots], class_ids[:, :slots]
        _, matched, _ = box_utils.assign_anchors(pos_rois, data["boxes"], data["labels"] >= 0,
                                                 positive_iou=0.5, negative_iou=0.5,
                                                 force_best=False)
        matched = ops.maximum(matched, 0)  # -1 (no object in the image): any mask, unused
        y = mask_targets(data["masks"], pos_rois, matched, self.mask_size)
        l_mask = mask_loss(pos_ids, y, self.mask_logits(fine, pos_rois, training), self.softmax)
        loss = loss_rpn + loss_head + self.mask_lambda * l_mask
        return loss, (rpn_cls, rpn_reg, l_cls, l_loc, l_mask)

    def class_mask_probs(self, logits, classes):
        """``(B, D, m, m)`` probabilities of each detection's own class's mask."""
        if self.softmax:
            probs = ops.softmax(logits, axis=-1)
            pick = ops.one_hot(ops.cast(classes, "int32") + 1, logits.shape[-1])
        else:
            probs = ops.sigmoid(logits)
            pick = ops.one_hot(ops.cast(classes, "int32"), logits.shape[-1])
        return ops.sum(probs * pick[:, :, None, None, :], axis=-1)

    def segment_batch(self, images):
        """Test time: boxes as in Faster R-CNN, then one mask per detected box."""
        fine, coarse = self.features(images, training=False)
        rpn_logits, rpn_deltas = self.rpn_outputs(coarse)
        proposals, _, valid = frcnn.propose(self.anchors, rpn_logits, rpn_deltas, self.image_size,
                                            self.pre_nms_test, self.post_nms_test)
        cls_logits, box_deltas = self.head_outputs(coarse, proposals, training=False)
        boxes, scores, classes, count = postprocess(
            proposals, cls_logits, box_deltas, self.image_size, self.score_threshold,
            self.nms_iou, self.max_detections, valid)
        probs = self.class_mask_probs(self.mask_logits(fine, boxes), classes)
        return boxes, scores, classes, count, probs

    def segment(self, images, batch_size=16):
        """Per image ``(boxes (D, 4), scores (D,), classes (D,), mask_probs (D, m, m))``."""
        fn = self._compiled("segment", self.segment_batch)
        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            boxes, scores, classes, count, probs = (np.asarray(t) for t in
                                                    fn(images[start : start + batch_size]))
            out.extend((boxes[i, : count[i]], scores[i, : count[i]], classes[i, : count[i]],
                        probs[i, : count[i]]) for i in range(len(count)))
        return out


def mask_rcnn(input_shape=(64, 64, 3), num_classes: int = 3, *, mask_pool: str = "align",
              mask_stride: int = 4, mask_pool_size: int = 7, mask_width: int = 64,
              mask_convs: int = 2, softmax: bool = False, mask_lambda: float = 1.0,
              sampling_ratio: int = 2, name="mask_rcnn", **faster_rcnn_kwargs):
    """Builds a ``MaskRCNN``: ``faster_rcnn.faster_rcnn``'s detector plus a mask branch.

    Args:
        input_shape, num_classes: as in ``faster_rcnn.faster_rcnn``.
        mask_pool: ``"align"`` (``RoIAlign``) or ``"max"`` (``RoIMaxPooling``, the ablation).
        mask_stride: stride of the map the mask head reads (4 or 8 with the default backbone).
        mask_pool_size: ``P`` of the mask branch's pooling; masks are ``m = 2P`` (7 -> 14).
        mask_width, mask_convs: the mask head's 3x3 convs.
        softmax: per-pixel soft-max across classes instead of per-class sigmoids (ablation).
        mask_lambda: weight of ``L_mask``.
        sampling_ratio: RoIAlign's points per bin and axis.
        **faster_rcnn_kwargs: everything else of ``faster_rcnn.faster_rcnn`` (anchors, pool
            size and width of the box head, RoIs per image, seed, ...).

    Returns:
        A ``MaskRCNN``.
    """
    if mask_pool not in ("align", "max"):
        raise ValueError(f"mask_pool must be 'align' (RoIAlign) or 'max' (RoI max pooling), "
                         f"got {mask_pool!r}.")
    base = frcnn.faster_rcnn(input_shape, num_classes, name=name, **faster_rcnn_kwargs)
    image_size = base.image_size
    coarse_stride = image_size // base.body.output.shape[1]
    features = feature_maps(base.body, (mask_stride, coarse_stride))
    scale = 1.0 / mask_stride
    pool = (RoIAlign(mask_pool_size, scale, sampling_ratio, name="mask_roi_align")
            if mask_pool == "align" else RoIMaxPooling(mask_pool_size, scale, name="mask_roi_pool"))
    net = mask_head((mask_pool_size, mask_pool_size, features.output[0].shape[-1]), num_classes,
                    mask_width, mask_convs, softmax)
    keep = dict(rpn_samples=base.rpn_samples, rpn_lambda=base.rpn_lambda,
                rois_per_image=base.rois_per_image, positive_fraction=base.positive_fraction,
                post_nms_train=base.post_nms_train, post_nms_test=base.post_nms_test,
                seed=faster_rcnn_kwargs.get("seed", 0))
    return MaskRCNN(base.body, base.rpn, base.head, base.roi_pool, base.anchors, image_size,
                    num_classes, features=features, mask_pool=pool, mask_net=net,
                    softmax=softmax, mask_lambda=mask_lambda, name=name, **keep)
