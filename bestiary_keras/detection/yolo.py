"""YOLO (v1): one network pass over an S x S grid (notebook 06).

Redmon, Divvala, Girshick, Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection", CVPR 2016.

The image is divided into an ``S x S`` grid. The cell that contains the centre of an object is
responsible for it. Every cell predicts ``B`` boxes ``(x, y, w, h)`` with a confidence each, and
``C`` class probabilities ``Pr(class_c | object)`` shared by its boxes: the output is one
``S x S x (5B + C)`` tensor. ``(x, y)`` is the box centre as an offset inside its cell (0..1),
``(w, h)`` its size as a fraction of the image, and the confidence is trained towards
``Pr(object) * IoU(prediction, truth)``. At test time each box gets class-specific scores
``confidence * Pr(class_c | object)``, and non-maximum suppression removes duplicates.

Layout of the last axis of a prediction (``predictions[..., :]``)::

    [x_1, y_1, w_1, h_1, conf_1, ..., x_B, y_B, w_B, h_B, conf_B, p_1, ..., p_C]

and of a target (``encode_yolo_v1_targets``)::

    [has_object, x, y, w, h, one_hot_1, ..., one_hot_C]

One deliberate change from the paper: the paper's last layer is linear; here box coordinates
and confidences go through a sigmoid and the class probabilities through a softmax
(``YoloV1Output``), so every prediction lives in its valid range from the first step. The
loss is the paper's, term by term (``yolo_v1_loss_terms``).

Grid cells are indexed ``[row, column]`` (``row`` along ``y``), like the image.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras import geometry
from bestiary_keras.detection import backbones
from bestiary_keras.detection import boxes as box_ops
from bestiary_keras.detection.backbones import square_image_size

__all__ = [
    "YoloV1Output",
    "yolo_v1",
    "safe_sqrt",
    "yolo_v1_loss_terms",
    "yolo_v1_loss",
    "YoloV1Loss",
    "decode_yolo_v1",
    "detections_from_scores",
    "yolo_v1_detections",
    "class_probability_map",
]


# ----------------------------------------------------------------------------- model
def _num_pools(image_size, grid_size) -> int:
    """How many 2x2 poolings take images of side ``image_size`` (from ``input_shape``) to
    ``grid_size`` (a ValueError naming ``input_shape`` otherwise)."""
    if not isinstance(grid_size, (int, np.integer)) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int (S of the S x S grid), got {grid_size!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < grid_size:
        raise ValueError(
            f"input_shape must be (size, size, 3) with size an int >= grid_size={grid_size} "
            f"(square images), got size {image_size!r}."
        )
    ratio = image_size / grid_size
    pools = int(round(math.log2(ratio))) if ratio >= 1 else -1
    if pools < 0 or grid_size * 2**pools != image_size:
        fits = sorted({grid_size * 2**p for p in range(1, 7)}, key=lambda s: abs(s - image_size))[:2]
        raise ValueError(
            f"input_shape=({image_size}, {image_size}, 3): {image_size} is not "
            f"grid_size={grid_size} times a power of two, so 2x2 poolings cannot turn the image "
            f"into the {grid_size}x{grid_size} grid; use input_shape "
            f"{' or '.join(f'({s}, {s}, 3)' for s in sorted(fits))}."
        )
    return pools


@keras.saving.register_keras_serializable(package="bestiary_keras")
class YoloV1Output(layers.Layer):
    """Turns the raw ``S x S x (5B + C)`` output into YOLO's predictions.

    Sigmoid on every ``x, y, w, h, confidence`` (offsets in the cell, size as a fraction of the
    image, confidence in [0, 1]), softmax over the ``C`` class probabilities of each cell.
    """

    def __init__(self, boxes_per_cell: int, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.boxes_per_cell = int(boxes_per_cell)
        self.num_classes = int(num_classes)

    def call(self, raw):
        n_box = 5 * self.boxes_per_cell
        return ops.concatenate(
            [ops.sigmoid(raw[..., :n_box]), ops.softmax(raw[..., n_box:], axis=-1)], axis=-1
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes)
        return config


def yolo_v1(input_shape=(64, 64, 3), num_classes: int = 3, *, grid_size: int = 8,
            boxes_per_cell: int = 2, widths=(16, 32, 64, 128), reduce_channels: int = 16,
            hidden_units: int = 256, dropout: float = 0.3, batch_norm: bool = False,
            confidence_prior: float | None = 0.05, backbone: keras.Model | None = None,
            name: str = "yolo_v1") -> keras.Model:
    """YOLO v1: convolutions, then fully connected layers that see the whole image and emit the
    ``S x S x (5B + C)`` grid of predictions.

    The paper's network (24 convolutions, a 4096-unit layer, 448x448 inputs, a 7x7 grid) is
    scaled down to our 64x64 scenes: a few conv blocks down to the ``S x S`` grid, a 1x1
    convolution that reduces the channels, one hidden dense layer with dropout, and the output
    layer reshaped to the grid.

    Args:
        input_shape: ``(size, size, 3)``: square images whose side is ``grid_size`` times a
            power of two.
        num_classes: ``C``.
        grid_size: ``S``.
        boxes_per_cell: ``B``.
        widths: filters of the backbone's conv blocks (ignored when ``backbone`` is given).
        reduce_channels: filters of the 1x1 convolution before the dense layers.
        hidden_units: width of the hidden dense layer (the paper's 4096).
        dropout: dropout rate after the hidden layer (the paper's 0.5).
        batch_norm: batch normalisation after every convolution (YOLOv2's first step).
        confidence_prior: initial confidence of every box (the bias of the confidence outputs
            is set to its logit, as RetinaNet does for its classifier): most predictors see no
            object, and starting near 0 instead of 0.5 spares the first hundreds of steps that
            would only push every confidence down. None keeps the zero bias (0.5).
        backbone: an already built (e.g. pre-trained) backbone whose output stride is
            ``image_size / grid_size``; built with ``yolo_backbone`` when None.
        name: model name.

    Returns:
        A ``keras.Model`` from images ``(N, image_size, image_size, 3)`` (pixel values in
        [0, 255], like ``detection.data``'s batches) to
        predictions ``(N, S, S, 5B + C)`` laid out as in the module docstring.
    """
    image_size = square_image_size(input_shape)
    num_pools = _num_pools(image_size, grid_size)
    if boxes_per_cell < 1:
        raise ValueError(f"boxes_per_cell must be >= 1 (B), got {boxes_per_cell!r}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (C), got {num_classes!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if backbone is None:
        backbone = backbones.yolo_backbone(widths, num_pools=num_pools, batch_norm=batch_norm)
    depth = 5 * boxes_per_cell + num_classes
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(inputs)
    if features.shape[1] != grid_size:
        raise ValueError(
            f"backbone maps {image_size}x{image_size} images to {features.shape[1]}x"
            f"{features.shape[2]} features, not the {grid_size}x{grid_size} grid: give a "
            f"backbone of stride {image_size // grid_size}."
        )
    x = backbones.conv_block(features, reduce_channels, 1, batch_norm=batch_norm, name="head_reduce")
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dense(hidden_units, kernel_initializer="he_normal", name="head_dense")(x)
    x = layers.LeakyReLU(negative_slope=0.1, name="head_leaky")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(grid_size * grid_size * depth, name="head_output")(x)
    x = layers.Reshape((grid_size, grid_size, depth), name="head_grid")(x)
    outputs = YoloV1Output(boxes_per_cell, num_classes, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    if confidence_prior is not None:
        if not 0.0 < confidence_prior < 1.0:
            raise ValueError(f"confidence_prior must be in (0, 1) or None, got {confidence_prior!r}.")
        bias = np.zeros((grid_size, grid_size, depth), np.float32)
        bias[..., 4:5 * boxes_per_cell:5] = math.log(confidence_prior / (1.0 - confidence_prior))
        model.get_layer("head_output").bias.assign(bias.reshape(-1))
    return model


# ----------------------------------------------------------------------------- loss
def safe_sqrt(x, eps: float = 1e-6):
    """``sqrt(max(x, 0))`` with finite values and gradients everywhere, ``x = 0`` included.

    The gradient of ``sqrt`` at 0 is infinite (and ``0 * inf`` is NaN in the backward pass, even
    where a mask multiplies the term by 0). Below ``eps`` the square root is replaced by the
    line ``x / sqrt(eps)`` through 0, which meets it at ``x = eps``: above ``eps`` the value is
    the exact square root, below it the slope is at most ``1 / sqrt(eps)``.
    """
    x = ops.maximum(x, 0.0)
    above = x > eps
    return ops.where(above, ops.sqrt(ops.where(above, x, eps)), x / math.sqrt(eps))


def _grid_offsets(grid_size: int):
    """``(S, S, 2)`` tensor of ``(col, row)`` of every cell (x first, like a box)."""
    rows, cols = ops.meshgrid(ops.arange(grid_size, dtype="float32"),
                              ops.arange(grid_size, dtype="float32"), indexing="ij")
    return ops.stack([cols, rows], axis=-1)


def _cell_boxes_to_xyxy(xy, wh, grid_size: int):
    """Cell offsets ``(x, y)`` and image-fraction sizes ``(w, h)`` -> xyxy in image fractions.

    ``xy`` and ``wh`` have shape ``(N, S, S, [B,] 2)``.
    """
    offsets = _grid_offsets(grid_size)
    if len(xy.shape) == 5:
        offsets = ops.expand_dims(offsets, 2)
    centre = (xy + offsets) / grid_size
    return ops.concatenate([centre - wh / 2.0, centre + wh / 2.0], axis=-1)


def yolo_v1_loss_terms(y_true, y_pred, *, boxes_per_cell: int, num_classes: int,
                       lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> dict:
    """The five terms of YOLO's loss, per image (the paper's Eq. 3):

    .. math::
        \\lambda_{coord} \\sum_{i=0}^{S^2} \\sum_{j=0}^{B} \\mathbb{1}_{ij}^{obj}
            \\left[(x_i - \\hat x_i)^2 + (y_i - \\hat y_i)^2\\right]
        + \\lambda_{coord} \\sum_{i} \\sum_{j} \\mathbb{1}_{ij}^{obj}
            \\left[(\\sqrt{w_i} - \\sqrt{\\hat w_i})^2 + (\\sqrt{h_i} - \\sqrt{\\hat h_i})^2\\right]
        + \\sum_{i} \\sum_{j} \\mathbb{1}_{ij}^{obj} (C_i - \\hat C_i)^2
        + \\lambda_{noobj} \\sum_{i} \\sum_{j} \\mathbb{1}_{ij}^{noobj} (C_i - \\hat C_i)^2
        + \\sum_{i} \\mathbb{1}_{i}^{obj} \\sum_{c} (p_i(c) - \\hat p_i(c))^2

    - :math:`\\mathbb{1}_{i}^{obj}`: an object's centre lies in cell ``i``;
    - :math:`\\mathbb{1}_{ij}^{obj}`: predictor ``j`` of that cell is "responsible" for it, i.e.
      its current box has the highest IoU with the ground truth among the cell's ``B`` boxes
      (ties, e.g. all IoUs 0 early in training, go to the first predictor);
    - :math:`\\mathbb{1}_{ij}^{noobj} = 1 - \\mathbb{1}_{ij}^{obj}`: every other predictor,
      including the non-responsible ones of a cell with an object;
    - the confidence target :math:`C_i` of a responsible predictor is the IoU of its box with
      the ground truth (treated as a constant), 0 for the others;
    - square roots of ``w`` and ``h`` (so that a small error matters more in a small box) go
      through ``safe_sqrt``: finite values and gradients at ``w = h = 0``.

    Args:
        y_true: ``(N, S, S, 5 + C)`` targets from ``encode_yolo_v1_targets``.
        y_pred: ``(N, S, S, 5B + C)`` predictions of ``yolo_v1``.
        boxes_per_cell: ``B``.
        num_classes: ``C``.
        lambda_coord: weight of the coordinate terms (the paper's 5).
        lambda_noobj: weight of the confidence of predictors without object (the paper's 0.5).

    Returns:
        dict of ``(N,)`` tensors: ``"xy"``, ``"wh"``, ``"obj"``, ``"noobj"``, ``"class"`` and
        their sum ``"total"``.
    """
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    grid_size = y_pred.shape[1]
    b, c = int(boxes_per_cell), int(num_classes)
    if y_pred.shape[-1] != 5 * b + c:
        raise ValueError(
            f"y_pred has {y_pred.shape[-1]} channels, but B={b} boxes and C={c} classes need "
            f"5B + C = {5 * b + c}: check boxes_per_cell and num_classes."
        )
    if y_true.shape[-1] != 5 + c:
        raise ValueError(
            f"y_true has {y_true.shape[-1]} channels, expected 5 + C = {5 + c} "
            "(has_object, x, y, w, h, one-hot classes from encode_yolo_v1_targets)."
        )
    pred = ops.reshape(y_pred[..., : 5 * b], (-1, grid_size, grid_size, b, 5))
    pred_xy, pred_wh, pred_conf = pred[..., 0:2], pred[..., 2:4], pred[..., 4]
    pred_probs = y_pred[..., 5 * b:]
    has_object = y_true[..., 0]  # 1_i^obj, (N, S, S)
    true_xy = ops.expand_dims(y_true[..., 1:3], 3)  # (N, S, S, 1, 2)
    true_wh = ops.expand_dims(y_true[..., 3:5], 3)
    true_probs = y_true[..., 5:]

    # the responsible predictor: the highest IoU with the ground truth in its cell
    iou = geometry.elementwise_iou(_cell_boxes_to_xyxy(pred_xy, pred_wh, grid_size),
                                       _cell_boxes_to_xyxy(true_xy, true_wh, grid_size))
    iou = ops.stop_gradient(iou)  # (N, S, S, B)
    best = ops.one_hot(ops.argmax(iou, axis=-1), b)
    responsible = ops.expand_dims(has_object, -1) * best  # 1_ij^obj
    no_object = 1.0 - responsible  # 1_ij^noobj

    def per_image(term):
        return ops.sum(ops.reshape(term, (ops.shape(term)[0], -1)), axis=-1)

    xy = lambda_coord * per_image(responsible * ops.sum(ops.square(pred_xy - true_xy), -1))
    wh = lambda_coord * per_image(
        responsible * ops.sum(ops.square(safe_sqrt(pred_wh) - safe_sqrt(true_wh)), -1))
    obj = per_image(responsible * ops.square(pred_conf - iou))
    noobj = lambda_noobj * per_image(no_object * ops.square(pred_conf))
    cls = per_image(has_object * ops.sum(ops.square(pred_probs - true_probs), -1))
    return {"xy": xy, "wh": wh, "obj": obj, "noobj": noobj, "class": cls,
            "total": xy + wh + obj + noobj + cls}


def yolo_v1_loss(y_true, y_pred, *, boxes_per_cell: int, num_classes: int,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5):
    """YOLO's loss per image, ``(N,)``: the sum of ``yolo_v1_loss_terms``."""
    return yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=boxes_per_cell,
                              num_classes=num_classes, lambda_coord=lambda_coord,
                              lambda_noobj=lambda_noobj)["total"]


@keras.saving.register_keras_serializable(package="bestiary_keras")
class YoloV1Loss(keras.losses.Loss):
    """``yolo_v1_loss`` as a Keras loss (averaged over the images of a batch)."""

    def __init__(self, boxes_per_cell: int = 2, num_classes: int = 3, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5, name: str = "yolo_v1_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.boxes_per_cell = int(boxes_per_cell)
        self.num_classes = int(num_classes)
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)

    def call(self, y_true, y_pred):
        return yolo_v1_loss(y_true, y_pred, boxes_per_cell=self.boxes_per_cell,
                            num_classes=self.num_classes, lambda_coord=self.lambda_coord,
                            lambda_noobj=self.lambda_noobj)

    def get_config(self):
        config = super().get_config()
        config.update(boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes,
                      lambda_coord=self.lambda_coord, lambda_noobj=self.lambda_noobj)
        return config


# ----------------------------------------------------------------------------- decoding
def decode_yolo_v1(predictions, image_size: int, *, boxes_per_cell: int, num_classes: int):
    """All ``S * S * B`` boxes of each image, in pixels, before any thresholding.

    Args:
        predictions: ``(N, S, S, 5B + C)`` model outputs (NumPy or tensor).
        image_size: side of the square input in pixels.
        boxes_per_cell, num_classes: ``B`` and ``C``.

    Returns:
        NumPy ``boxes`` ``(N, S*S*B, 4)`` xyxy pixels clipped to the image, ``confidence``
        ``(N, S*S*B)`` and ``class_probs`` ``(N, S*S*B, C)`` (each cell's probabilities,
        repeated for its ``B`` boxes). Order: row, column, box.
    """
    predictions = np.asarray(keras.ops.convert_to_numpy(predictions), np.float32)
    n, s = predictions.shape[0], predictions.shape[1]
    b, c = int(boxes_per_cell), int(num_classes)
    if predictions.shape[-1] != 5 * b + c:
        raise ValueError(
            f"predictions have {predictions.shape[-1]} channels, expected 5B + C = {5 * b + c}."
        )
    pred = predictions[..., : 5 * b].reshape(n, s, s, b, 5)
    rows, cols = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    offsets = np.stack([cols, rows], axis=-1)[None, :, :, None, :].astype(np.float32)
    centre = (pred[..., 0:2] + offsets) / s * image_size
    size = pred[..., 2:4] * image_size
    xyxy = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=-1)
    xyxy = geometry.clip_boxes(xyxy.reshape(n, -1, 4), image_size)
    probs = np.repeat(predictions[..., 5 * b:].reshape(n, s * s, 1, c), b, axis=2)
    return xyxy, pred[..., 4].reshape(n, -1), probs.reshape(n, -1, c)


def detections_from_scores(boxes, scores, *, score_threshold: float = 0.05,
                           iou_threshold: float = 0.5, max_detections: int = 100):
    """Per-class NMS on class-specific scores, for one image.

    Every box is a candidate for every class with score ``scores[box, class]``; candidates
    not above ``score_threshold`` are dropped, then ``boxes.non_max_suppression`` suppresses
    duplicates within each class.

    Args:
        boxes: ``(P, 4)`` xyxy pixel boxes.
        scores: ``(P, C)`` class-specific scores.

    Returns:
        ``(boxes (K, 4), scores (K,), classes (K,))`` NumPy arrays, best score first (K may be 0).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32)
    scores = scores.reshape(len(boxes), scores.shape[-1])
    out_boxes, out_scores, classes, count = box_ops.non_max_suppression(
        boxes[None], scores[None], iou_threshold=iou_threshold, max_output=max_detections,
        score_threshold=score_threshold)
    count = int(count[0])
    return out_boxes[0, :count], out_scores[0, :count], classes[0, :count]


def yolo_v1_detections(predictions, image_size: int, *, boxes_per_cell: int, num_classes: int,
                       score_threshold: float = 0.05, iou_threshold: float = 0.5,
                       max_detections: int = 100) -> list:
    """Final detections: class-specific scores ``confidence * Pr(class | object)``, then NMS.

    Args:
        predictions: ``(N, S, S, 5B + C)`` model outputs.
        image_size: side of the square input in pixels.
        boxes_per_cell, num_classes: ``B`` and ``C``.
        score_threshold: class-specific scores below it are dropped before NMS.
        iou_threshold: NMS threshold (per class).
        max_detections: at most this many per image.

    Returns:
        A list of ``N`` tuples ``(boxes (K, 4) xyxy pixels, scores (K,), classes (K,))``, the
        input of ``bestiary_keras.detection.evaluation``.
    """
    xyxy, confidence, probs = decode_yolo_v1(predictions, image_size,
                                             boxes_per_cell=boxes_per_cell,
                                             num_classes=num_classes)
    scores = confidence[..., None] * probs
    return [detections_from_scores(xyxy[i], scores[i], score_threshold=score_threshold,
                                   iou_threshold=iou_threshold, max_detections=max_detections)
            for i in range(len(xyxy))]


def class_probability_map(predictions, *, boxes_per_cell: int, num_classes: int) -> np.ndarray:
    """The most likely class of every cell, ``(N, S, S)`` int (the paper's coloured grid, Fig. 2)."""
    predictions = np.asarray(keras.ops.convert_to_numpy(predictions))
    return np.argmax(predictions[..., 5 * boxes_per_cell: 5 * boxes_per_cell + num_classes],
                     axis=-1)
