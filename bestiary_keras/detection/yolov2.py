"""YOLOv2 (notebook 07): the steps of the paper's ablation, one switch each.

Redmon and Farhadi, "YOLO9000: Better, Faster, Stronger", CVPR 2017, Sec. 2 and Table 2.

Starting from YOLO (``bestiary_keras.detection.yolo``), the paper adds, one at a time:

- **batch normalisation** after every convolution (``yolo.yolo_v1(batch_norm=True)``);
- a **high-resolution classifier**: the backbone, pre-trained as a classifier at low resolution,
  is fine-tuned as a classifier at the detector's resolution before detection training
  (``backbone_classifier``);
- a **fully convolutional head with anchor boxes**: the dense layers are dropped, a
  convolution predicts ``A`` boxes per cell relative to ``A`` anchors, each with its own
  objectness and class probabilities (``yolo_v2(backbone="yolo", location="offset")``);
- the **new network**, Darknet-19: 3x3 convolutions that double the channels after each
  pooling, 1x1 convolutions that compress them in between, batch norm everywhere
  (``darknet_backbone``, scaled down);
- **dimension priors**: the anchors' shapes from k-means on the training boxes with the
  distance ``d(box, centroid) = 1 - IoU(box, centroid)`` (``priors.kmeans_anchors``);
- **direct location prediction**: the box centre is ``(c_x + sigmoid(t_x), c_y + sigmoid(t_y))``
  in cell units, so it cannot leave its cell, instead of Faster R-CNN's unconstrained
  ``x = x_a + t_x w_a`` (``location="direct"`` vs ``"offset"``);
- the **passthrough layer**: the stride-4 features, rearranged by ``SpaceToDepth`` (2x2
  neighbourhoods stacked into channels), are concatenated with the stride-8 features
  (``passthrough=True``);
- **multi-scale training**: the input size changes every few batches among multiples of the
  stride (``yolo_data.YoloBatches(sizes=...)``), which only a fully convolutional network allows;
- a **high-resolution detector**: the multi-scale model evaluated at a larger input.

Predictions are ``(N, S, S, A, 5 + C)`` raw values ``(t_x, t_y, t_w, t_h, t_o, class logits)``,
decoded with the anchors (pixels) and the stride:

.. math::
    b_x = (c_x + \\sigma(t_x))\\, s,\\quad b_y = (c_y + \\sigma(t_y))\\, s,\\quad
    b_w = p_w e^{t_w},\\quad b_h = p_h e^{t_h},\\quad
    \\Pr(\\text{object}) \\cdot \\text{IoU}(b, \\text{object}) = \\sigma(t_o)

(``location="direct"``), or ``b_x = (c_x + 1/2) s + t_x p_w`` (``location="offset"``).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops
from scipy import special

from bestiary_keras import geometry
from bestiary_keras.detection import backbones, priors, yolo
from bestiary_keras.detection import boxes as box_ops

__all__ = [
    "LOCATIONS",
    "SpaceToDepth",
    "backbone_classifier",
    "yolo_v2",
    "yolo_v2_loss_terms",
    "yolo_v2_loss",
    "YoloV2Loss",
    "decode_yolo_v2",
    "yolo_v2_detections",
]

LOCATIONS = ("direct", "offset")


# ----------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="bestiary_keras")
class SpaceToDepth(layers.Layer):
    """YOLOv2's passthrough "reorg": each ``b x b`` neighbourhood becomes ``b * b`` channels.

    ``(N, H, W, C) -> (N, H / b, W / b, b * b * C)``, with TensorFlow's channel order
    (``tf.nn.space_to_depth``): output channel ``(i * b + j) * C + c`` holds input pixel
    ``(b y + i, b x + j)``, channel ``c``. Written with ``keras.ops`` so that it works for any
    backend and any input size divisible by ``b`` (multi-scale training).

    ``input_stride``: image pixels per position of the input map (4 for YOLOv2's passthrough),
    used only to say which image sizes work when a map of known size does not divide into
    blocks (``yolo_v2`` on a 60x60 image: "multiples of 8, use 56 or 64").
    """

    def __init__(self, block_size: int = 2, input_stride: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(block_size) < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}.")
        if int(input_stride) < 1:
            raise ValueError(f"input_stride must be >= 1, got {input_stride!r}.")
        self.block_size = int(block_size)
        self.input_stride = int(input_stride)

    def _check_size(self, height, width):
        """A ValueError naming the image sizes that work, when a known side is not divisible."""
        b, s = self.block_size, self.input_stride
        bad = [(axis, n) for axis, n in (("height", height), ("width", width))
               if n is not None and n % b]
        if not bad:
            return
        multiple = b * s
        where = "the input's" if s == 1 else f"this map has stride {s}, so the input image's"
        nearest = ", ".join(
            f"{max(n * s // multiple * multiple, multiple)} or "
            f"{(n * s // multiple + 1) * multiple} for the {axis} (about {n * s} now)"
            for axis, n in bad)
        raise ValueError(
            f"SpaceToDepth({b}) of layer {self.name!r} got a {height}x{width} map, not divisible "
            f"into {b}x{b} blocks: {where} height and width must be multiples of {multiple}. "
            f"Resize or crop to the nearest valid sizes: {nearest}."
        )

    def call(self, x):
        self._check_size(x.shape[1], x.shape[2])  # static sizes only (eager calls, fixed shapes)
        b = self.block_size
        shape = ops.shape(x)
        height, width, channels = shape[1] // b, shape[2] // b, x.shape[-1]
        x = ops.reshape(x, (-1, height, b, width, b, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, height, width, b * b * channels))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block_size
        return (n, None if h is None else h // b, None if w is None else w // b,
                None if c is None else c * b * b)

    def get_config(self):
        config = super().get_config()
        config.update(block_size=self.block_size, input_stride=self.input_stride)
        return config


# ----------------------------------------------------------------------------- networks
def backbone_classifier(backbone: keras.Model, num_classes: int, *,
                        name: str = "classifier") -> keras.Model:
    """The backbone with global average pooling and a softmax layer: a classifier for
    pre-training (the paper's ImageNet stage). Input size free; the backbone's weights are
    shared with any detector built on it.
    """
    inputs = keras.Input((None, None, 3), name="image")
    features = backbone(inputs)
    if isinstance(features, (list, tuple)):
        features = features[-1]
    x = layers.GlobalAveragePooling2D(name=f"{name}_pool")(features)
    outputs = layers.Dense(num_classes, activation="softmax", name=f"{name}_softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def yolo_v2(input_shape=(None, None, 3), num_classes: int = 3, *,
            anchors=((16.0, 16.0), (22.0, 22.0), (28.0, 28.0)), backbone="darknet",
            passthrough: bool = True, head_filters: int = 64, passthrough_filters: int = 16,
            confidence_prior: float | None = 0.05, name: str = "yolo_v2") -> keras.Model:
    """YOLOv2 at our scale: a fully convolutional detector with anchor boxes, stride 8.

    backbone (stride 8) -> [passthrough: stride-4 features, 1x1 conv, ``SpaceToDepth(2)``,
    concatenated] -> 3x3 conv block -> 1x1 conv with ``A (5 + C)`` filters -> reshaped to
    ``(S, S, A, 5 + C)``.

    Args:
        input_shape: ``(H, W, 3)``; the default ``(None, None, 3)`` takes any size divisible
            by 8 (multi-scale training).
        num_classes: ``C``.
        anchors: ``(A, 2)`` anchor widths and heights in pixels (the decoder and the loss
            take the same array).
        backbone: ``"darknet"`` (``darknet_backbone``), ``"yolo"`` (``yolo.yolo_backbone`` with
            batch norm, YOLO's trunk), or an already built (pre-trained) backbone model of
            stride 8 returning ``[fine, coarse]`` (needed for the passthrough) or ``coarse``.
        passthrough: concatenate the rearranged stride-4 features (needs a ``[fine, coarse]``
            backbone).
        head_filters: filters of the head's 3x3 convolution.
        passthrough_filters: filters of the 1x1 convolution before ``SpaceToDepth`` (the
            paper's 64; x4 channels after it).
        confidence_prior: initial objectness of every anchor (bias of ``t_o``), or None.
        name: model name.

    Returns:
        A ``keras.Model`` from images ``(N, H, W, 3)`` (pixel values in [0, 255], any ``H, W``
        divisible by 8) to raw predictions ``(N, H/8, W/8, A, 5 + C)``.
    """
    anchors = priors.check_anchors(anchors)
    num_anchors = len(anchors)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
    if isinstance(backbone, str):
        if backbone == "darknet":
            backbone = backbones.darknet_backbone()
        elif backbone == "yolo":
            backbone = backbones.yolo_backbone(batch_norm=True)
        else:
            raise ValueError(
                f"backbone must be 'darknet', 'yolo' or a keras.Model, got {backbone!r}."
            )
    inputs = keras.Input(tuple(input_shape), name="image")
    features = backbone(inputs)
    if isinstance(features, (list, tuple)):
        fine, coarse = features
    else:
        fine, coarse = None, features
    x = backbones.conv_block(coarse, head_filters, 3, batch_norm=True, name="head_conv1")
    if passthrough:
        if fine is None:
            raise ValueError(
                "passthrough=True needs a backbone that returns [fine, coarse] features (e.g. "
                "darknet_backbone); this one returns only its last feature map."
            )
        p = backbones.conv_block(fine, passthrough_filters, 1, batch_norm=True, name="passthrough_conv")
        p = SpaceToDepth(2, input_stride=4, name="passthrough_reorg")(p)
        x = layers.Concatenate(name="passthrough_concat")([p, x])
    x = backbones.conv_block(x, head_filters, 3, batch_norm=True, name="head_conv2")
    depth = 5 + num_classes
    bias = np.zeros((num_anchors, depth), np.float32)
    if confidence_prior is not None:
        if not 0.0 < confidence_prior < 1.0:
            raise ValueError(f"confidence_prior must be in (0, 1) or None, got {confidence_prior!r}.")
        bias[:, 4] = math.log(confidence_prior / (1.0 - confidence_prior))
    x = layers.Conv2D(num_anchors * depth, 1, name="head_output")(x)
    outputs = _AnchorReshape(num_anchors, depth, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.get_layer("head_output").bias.assign(bias.reshape(-1))
    return model


@keras.saving.register_keras_serializable(package="bestiary_keras")
class _AnchorReshape(layers.Layer):
    """``(N, S, S, A * D) -> (N, S, S, A, D)`` for any spatial size."""

    def __init__(self, num_anchors: int, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.num_anchors = int(num_anchors)
        self.depth = int(depth)

    def call(self, x):
        shape = ops.shape(x)
        return ops.reshape(x, (-1, shape[1], shape[2], self.num_anchors, self.depth))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.num_anchors, self.depth)

    def get_config(self):
        config = super().get_config()
        config.update(num_anchors=self.num_anchors, depth=self.depth)
        return config


# ----------------------------------------------------------------------------- decoding (ops)
def _check_location(location):
    if location not in LOCATIONS:
        raise ValueError(f"location must be one of {LOCATIONS}, got {location!r}.")


def _decode_ops(raw, anchors, stride, location):
    """Raw ``(N, S, S, A, 5 + C)`` -> xyxy pixel boxes ``(N, S, S, A, 4)`` (keras.ops)."""
    shape = ops.shape(raw)
    rows = ops.cast(ops.arange(shape[1]), "float32")
    cols = ops.cast(ops.arange(shape[2]), "float32")
    grid_y, grid_x = ops.meshgrid(rows, cols, indexing="ij")
    cell = ops.stack([grid_x, grid_y], axis=-1)[None, :, :, None, :]  # (1, S, S, 1, 2)
    anchor_wh = ops.convert_to_tensor(np.asarray(anchors, np.float32))[None, None, None]
    if location == "direct":
        centre = (cell + ops.sigmoid(raw[..., 0:2])) * stride
    else:
        centre = (cell + 0.5) * stride + raw[..., 0:2] * anchor_wh
    size = anchor_wh * ops.exp(ops.minimum(raw[..., 2:4], box_ops.BBOX_CLIP))
    return ops.concatenate([centre - size / 2.0, centre + size / 2.0], axis=-1), cell


def yolo_v2_loss_terms(y_true, y_pred, anchors, *, stride: int = 8, location: str = "direct",
                       lambda_coord: float = 1.0, lambda_obj: float = 5.0,
                       lambda_noobj: float = 1.0, ignore_iou: float = 0.6) -> dict:
    """YOLOv2's loss per image, as the Darknet "region" layer computes it:

    .. math::
        \\lambda_{coord} \\sum_{ij} \\mathbb{1}_{ij}^{obj} \\left[(\\hat u_{ij} - u_{ij})^2
            + (\\hat v_{ij} - v_{ij})^2 + (t_w - \\log\\tfrac{w}{p_w})^2
            + (t_h - \\log\\tfrac{h}{p_h})^2\\right]
        + \\lambda_{obj} \\sum_{ij} \\mathbb{1}_{ij}^{obj} (\\sigma(t_o) - \\text{IoU}(\\hat b, b))^2
        + \\lambda_{noobj} \\sum_{ij} \\mathbb{1}_{ij}^{noobj} [\\max_{b} \\text{IoU}(\\hat b_{ij}, b)
            < 0.6]\\, \\sigma(t_o)^2
        + \\sum_{ij} \\mathbb{1}_{ij}^{obj} \\text{CE}(\\text{softmax}(\\hat p), p)

    ``i`` runs over cells, ``j`` over anchors. :math:`\\mathbb{1}_{ij}^{obj}` marks the
    anchor that ``encode_yolo_v2_targets`` made responsible (the best anchor shape in the
    object's cell). With ``location="direct"``, :math:`(\\hat u, \\hat v) = \\sigma(t_x, t_y)`
    and :math:`(u, v)` is the centre's offset in its cell (0..1); with ``"offset"``,
    :math:`(\\hat u, \\hat v) = (t_x, t_y)` and :math:`(u, v) = ((x - x_a) / p_w, (y - y_a) / p_h)`
    (Faster R-CNN's parameterisation, unbounded). Predictions of other anchors that already
    overlap some object by more than ``ignore_iou`` are not pushed towards "no object".
    Classes use softmax cross-entropy.

    Args:
        y_true: ``(N, S, S, A, 5 + C)`` from ``encode_yolo_v2_targets``.
        y_pred: ``(N, S, S, A, 5 + C)`` raw predictions of ``yolo_v2``.
        anchors: ``(A, 2)`` anchor shapes in pixels.
        stride: pixels per cell.
        location: ``"direct"`` or ``"offset"``.
        lambda_coord, lambda_obj, lambda_noobj: weights of the coordinate, object and
            no-object terms; Darknet's ``yolo-voc.cfg`` uses 1, 5 and 1 (its ``coord_scale``,
            ``object_scale``, ``noobject_scale``): the few responsible anchors' objectness
            weighs five times more than each of the many empty ones.
        ignore_iou: see above.

    Returns:
        dict of ``(N,)`` tensors ``"xy"``, ``"wh"``, ``"obj"``, ``"noobj"``, ``"class"``,
        ``"total"``.
    """
    _check_location(location)
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    anchors = priors.check_anchors(anchors)
    pred_boxes, cell = _decode_ops(y_pred, anchors, stride, location)
    responsible = y_true[..., 0]
    true_boxes = y_true[..., 1:5]
    anchor_wh = ops.convert_to_tensor(anchors)[None, None, None]

    # coordinate targets (only read where responsible; padding rows get finite dummies)
    true_wh = ops.maximum(true_boxes[..., 2:4] - true_boxes[..., 0:2], 1e-3)
    true_centre = (true_boxes[..., 0:2] + true_boxes[..., 2:4]) / 2.0
    if location == "direct":
        pred_uv = ops.sigmoid(y_pred[..., 0:2])
        true_uv = true_centre / stride - cell
    else:
        pred_uv = y_pred[..., 0:2]
        true_uv = (true_centre - (cell + 0.5) * stride) / anchor_wh
    true_twh = ops.log(true_wh / anchor_wh)

    iou = ops.stop_gradient(geometry.elementwise_iou(pred_boxes, true_boxes))
    # best IoU of every prediction with any object of its image (for the ignore rule)
    batch = ops.shape(y_pred)[0]
    flat_pred = ops.reshape(pred_boxes, (batch, -1, 1, 4))
    flat_true = ops.reshape(true_boxes, (batch, 1, -1, 4))
    best_iou = ops.max(geometry.elementwise_iou(flat_pred, flat_true), axis=-1)
    best_iou = ops.stop_gradient(ops.reshape(best_iou, ops.shape(responsible)))
    no_object = (1.0 - responsible) * ops.cast(best_iou < ignore_iou, "float32")

    objectness = ops.sigmoid(y_pred[..., 4])
    log_probs = ops.log_softmax(y_pred[..., 5:], axis=-1)

    def per_image(term):
        return ops.sum(ops.reshape(term, (batch, -1)), axis=-1)

    xy = lambda_coord * per_image(responsible * ops.sum(ops.square(pred_uv - true_uv), -1))
    wh = lambda_coord * per_image(
        responsible * ops.sum(ops.square(y_pred[..., 2:4] - true_twh), -1))
    obj = lambda_obj * per_image(responsible * ops.square(objectness - iou))
    noobj = lambda_noobj * per_image(no_object * ops.square(objectness))
    cls = per_image(responsible * -ops.sum(y_true[..., 5:] * log_probs, -1))
    return {"xy": xy, "wh": wh, "obj": obj, "noobj": noobj, "class": cls,
            "total": xy + wh + obj + noobj + cls}


def yolo_v2_loss(y_true, y_pred, anchors, **kwargs):
    """The sum of ``yolo_v2_loss_terms``, ``(N,)``."""
    return yolo_v2_loss_terms(y_true, y_pred, anchors, **kwargs)["total"]


@keras.saving.register_keras_serializable(package="bestiary_keras")
class YoloV2Loss(keras.losses.Loss):
    """``yolo_v2_loss`` as a Keras loss (averaged over the images of a batch)."""

    def __init__(self, anchors=((16.0, 16.0), (22.0, 22.0), (28.0, 28.0)), stride: int = 8,
                 location: str = "direct", lambda_coord: float = 1.0, lambda_obj: float = 5.0,
                 lambda_noobj: float = 1.0, ignore_iou: float = 0.6, name: str = "yolo_v2_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        _check_location(location)
        self.anchors = priors.check_anchors(anchors)
        self.stride = int(stride)
        self.location = location
        self.lambda_coord = float(lambda_coord)
        self.lambda_obj = float(lambda_obj)
        self.lambda_noobj = float(lambda_noobj)
        self.ignore_iou = float(ignore_iou)

    def call(self, y_true, y_pred):
        return yolo_v2_loss(y_true, y_pred, self.anchors, stride=self.stride,
                            location=self.location, lambda_coord=self.lambda_coord,
                            lambda_obj=self.lambda_obj, lambda_noobj=self.lambda_noobj,
                            ignore_iou=self.ignore_iou)

    def get_config(self):
        config = super().get_config()
        config.update(anchors=self.anchors.tolist(), stride=self.stride, location=self.location,
                      lambda_coord=self.lambda_coord, lambda_obj=self.lambda_obj,
                      lambda_noobj=self.lambda_noobj, ignore_iou=self.ignore_iou)
        return config


def decode_yolo_v2(predictions, anchors, *, stride: int = 8, location: str = "direct",
                   image_size=None):
    """All ``S * S * A`` boxes of each image, before any thresholding (NumPy).

    Args:
        predictions: raw ``(N, S, S, A, 5 + C)`` model outputs.
        anchors: ``(A, 2)`` anchor shapes in pixels.
        stride: pixels per cell.
        location: ``"direct"`` or ``"offset"`` (as trained).
        image_size: clip boxes to this square image (default ``S * stride``).

    Returns:
        ``boxes (N, S*S*A, 4)`` xyxy pixels, ``objectness (N, S*S*A)``,
        ``class_probs (N, S*S*A, C)``.
    """
    _check_location(location)
    predictions = np.asarray(keras.ops.convert_to_numpy(predictions), np.float32)
    if predictions.ndim != 5:
        raise ValueError(f"predictions must be (N, S, S, A, 5 + C), got {predictions.shape}.")
    boxes, _ = _decode_ops(predictions, priors.check_anchors(anchors), stride, location)
    n = len(predictions)
    size = predictions.shape[1] * stride if image_size is None else image_size
    boxes = geometry.clip_boxes(np.asarray(keras.ops.convert_to_numpy(boxes)).reshape(n, -1, 4),
                                size)
    objectness = special.expit(predictions[..., 4].reshape(n, -1))
    probs = special.softmax(predictions[..., 5:].reshape(n, -1, predictions.shape[-1] - 5),
                            axis=-1)
    return boxes, objectness, probs


def yolo_v2_detections(predictions, anchors, *, stride: int = 8, location: str = "direct",
                       score_threshold: float = 0.05, iou_threshold: float = 0.5,
                       max_detections: int = 100, scale: float = 1.0) -> list:
    """Final detections: scores ``Pr(object) * Pr(class | object)``, then per-class NMS.

    Args:
        predictions: raw ``(N, S, S, A, 5 + C)`` outputs.
        anchors, stride, location: as trained.
        score_threshold, iou_threshold, max_detections: as in ``yolo.yolo_v1_detections``.
        scale: multiply the boxes by it (e.g. ``64 / 80`` to report detections made on images
            enlarged to 80x80 in the original 64x64 pixels).

    Returns:
        A list of ``(boxes (K, 4), scores (K,), classes (K,))``, one per image.
    """
    boxes, objectness, probs = decode_yolo_v2(predictions, anchors, stride=stride,
                                              location=location)
    scores = objectness[..., None] * probs
    return [yolo.detections_from_scores(boxes[i] * scale, scores[i],
                                        score_threshold=score_threshold,
                                        iou_threshold=iou_threshold,
                                        max_detections=max_detections)
            for i in range(len(boxes))]
