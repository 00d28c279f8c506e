"""The YOLOv2 paper's ablation (Table 2, "the path from YOLO to YOLOv2") at our scale (notebook 07).

Each row adds one change to the row above: ``ablation_configs`` lists the rows' settings,
``new_backbone`` / ``pretrain_classifier`` (on ``ClassifierBatches``) / ``object_crops``
pre-train a row's backbone as a classifier, and ``build_ablation_detector`` builds the row's detector with what it needs to
train and to detect. The models, losses and decoders are those of ``yolo`` and ``yolov2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from bestiary_keras import geometry
from bestiary_keras.batching import SeededBatches
from bestiary_keras.detection import backbones, priors, yolo, yolo_data, yolov2

__all__ = [
    "ABLATION_BASE",
    "ABLATION_STEPS",
    "ablation_configs",
    "new_backbone",
    "object_crops",
    "ClassifierBatches",
    "pretrain_classifier",
    "AblationDetector",
    "build_ablation_detector",
]


@dataclass
class AblationDetector:
    """One ablation row's detector: the model, its loss, its target encoder
    ``encode(boxes, labels, size)`` and its decoder ``detect(predictions, scale=1.0)``.

    ``model`` may be replaced by the model to train, ``row.model = TRAINING.compile(row.model,
    ...)`` (under mixed precision a wrapper with float32 outputs)."""

    model: keras.Model
    loss: keras.losses.Loss
    encode: Callable
    detect: Callable


ABLATION_BASE = dict(batch_norm=False, hires_classifier=False, head="dense", backbone="yolo",
                     priors="hand", location="offset", passthrough=False, multi_scale=False,
                     test_size=64)
"""Row 1 of the ablation: YOLO (dense head, no batch norm, backbone pre-trained as a classifier
at low resolution only)."""

ABLATION_STEPS = (
    ("YOLO", {}),
    ("+ batch norm", {"batch_norm": True}),
    ("+ hi-res classifier", {"hires_classifier": True}),
    ("+ convolutional, anchor boxes", {"head": "anchors"}),
    ("+ new network", {"backbone": "darknet"}),
    ("+ dimension priors", {"priors": "kmeans"}),
    ("+ location prediction", {"location": "direct"}),
    ("+ passthrough", {"passthrough": True}),
    ("+ multi-scale", {"multi_scale": True}),
    ("+ hi-res detector", {"test_size": 80}),
)
"""The rows of the paper's Table 2, each adding one change to the row above (at our scale:
64x64 inputs, stride 8; the high-resolution detector is evaluated at 80x80)."""


def ablation_configs() -> list:
    """``[(row name, settings), ...]``: the cumulative settings of each ablation row."""
    rows, current = [], dict(ABLATION_BASE)
    for name, change in ABLATION_STEPS:
        current = {**current, **change}
        rows.append((name, dict(current)))
    return rows


def new_backbone(config: dict) -> keras.Model:
    """A fresh (untrained) backbone for an ablation row: YOLO's trunk (with or without batch
    norm) or the Darknet-style network."""
    if config["backbone"] == "darknet":
        return backbones.darknet_backbone()
    if config["backbone"] == "yolo":
        return backbones.yolo_backbone(batch_norm=config["batch_norm"])
    raise ValueError(f"config['backbone'] must be 'yolo' or 'darknet', got {config['backbone']!r}.")


def object_crops(images, boxes, labels, size: int, *, context: float = 2.0):
    """Square crops centred on every object, resized to ``size`` (classification data).

    Each crop is ``context`` times the object's longest side (the object fills about half of
    it, as in an ImageNet photo), bilinear ``tf.image.crop_and_resize`` (Keras has no
    crop-and-resize op), zero padding outside the image.

    Returns:
        ``(crops float32 (K, size, size, 3) in [0, 255], labels int32 (K,))``.
    """
    import tensorflow as tf

    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32)
    labels = np.asarray(labels)
    image_index, slot = np.nonzero((labels >= 0) & (geometry.box_area(boxes) > 0))
    chosen = boxes[image_index, slot]
    centre = (chosen[:, :2] + chosen[:, 2:]) / 2.0
    half = context * np.max(chosen[:, 2:] - chosen[:, :2], axis=1, keepdims=True) / 2.0
    height, width = images.shape[1:3]
    normalised = np.concatenate([(centre[:, 1:2] - half) / height, (centre[:, 0:1] - half) / width,
                                 (centre[:, 1:2] + half) / height, (centre[:, 0:1] + half) / width],
                                axis=1)
    crops = tf.image.crop_and_resize(images.astype(np.float32), normalised,
                                     image_index.astype(np.int32), (size, size))
    return crops.numpy(), labels[image_index, slot].astype(np.int32)


class ClassifierBatches(SeededBatches):
    """The classification batches that pre-train a row's backbone: a ``batching.SeededBatches``
    whose batch at step ``g`` takes that step's images and, drawn from the step's generator,
    mirrors them left-right and transposes them, each with probability 1/2 (symmetries of the
    square keep the shapes' classes).

    Args:
        images: ``(N, S, S, 3)`` float32 crops.
        labels: ``(N,)`` class indices.
        **kwargs: ``batch_size``, ``steps``, ``seed`` of ``SeededBatches``.
    """

    def __init__(self, images, labels, **kwargs):
        self.images = np.asarray(images, np.float32)
        self.labels = np.asarray(labels)
        if len(self.labels) != len(self.images):
            raise ValueError(f"labels has {len(self.labels)} entries for {len(self.images)} "
                             "images; give one class index per image.")
        super().__init__(len(self.images), **kwargs)

    def make_batch(self, indices, rng):
        x = self.images[indices]
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < 0.5:
            x = np.swapaxes(x, 1, 2)
        return x, self.labels[indices]


def pretrain_classifier(backbone: keras.Model, images, labels, *, num_classes: int, steps: int,
                        batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
                        training=None) -> float:
    """Trains ``backbone`` as a classifier (``backbone_classifier``) for ``steps`` batches of
    ``images`` (any size the backbone takes), ``ClassifierBatches`` with random flips.

    Args:
        training: ``None`` (plain ``model.compile``) or a ``distributed.TrainingPlan``: the
            classifier's head is built in its scope and compiled by it (devices, precision);
            ``train_on_batch`` then runs under the plan's strategy. On the CPU in the ``ci``
            and ``default`` profiles both give the same weights.

    Returns:
        The training accuracy over the last 20% of the steps.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}.")
    batches = ClassifierBatches(images, labels, batch_size=batch_size, steps=steps, seed=seed)
    if training is None:
        classifier = yolov2.backbone_classifier(backbone, num_classes)
        classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        with training.scope():
            classifier = yolov2.backbone_classifier(backbone, num_classes)
        classifier = training.compile(classifier,
                                      optimizer=lambda: keras.optimizers.Adam(learning_rate),
                                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    correct = seen = 0
    for step in range(int(steps)):
        _, accuracy = classifier.train_on_batch(*batches[step])
        if step >= 0.8 * steps:
            correct += accuracy * batch_size
            seen += batch_size
    return float(correct / max(seen, 1))


def build_ablation_detector(config: dict, *, num_classes: int, hand_anchors, kmeans_anchors,
                            backbone: keras.Model | None = None, image_size: int = 64):
    """The detector of one ablation row, with what it needs to train and to detect.

    Args:
        config: one row's settings (``ablation_configs``).
        num_classes: ``C``.
        hand_anchors: ``(A, 2)`` hand-picked anchor shapes (before "dimension priors").
        kmeans_anchors: ``(A, 2)`` k-means anchor shapes.
        backbone: the (pre-trained) backbone; a fresh ``new_backbone(config)`` when None.
        image_size: training size of the dense-head rows (YOLO v1 has a fixed input).

    Returns:
        An ``AblationDetector``: ``model``, ``loss``, ``encode(boxes, labels, size)`` that
        builds a batch's targets and ``detect(predictions, scale=1.0)`` that returns per-image
        detections.
    """
    backbone = new_backbone(config) if backbone is None else backbone
    if config["head"] == "dense":
        model = yolo.yolo_v1((image_size, image_size, 3), num_classes, grid_size=image_size // 8,
                             boxes_per_cell=2,
                             batch_norm=config["batch_norm"], backbone=backbone)
        loss = yolo.YoloV1Loss(boxes_per_cell=2, num_classes=num_classes)

        def encode(boxes, labels, size):
            return yolo_data.encode_yolo_v1_targets(boxes, labels, size, size // 8, num_classes)

        def detect(predictions, scale=1.0):
            size = predictions.shape[1] * 8
            return [(b * scale, s, c) for b, s, c in yolo.yolo_v1_detections(
                predictions, size, boxes_per_cell=2, num_classes=num_classes)]

        return AblationDetector(model, loss, encode, detect)
    if config["head"] != "anchors":
        raise ValueError(f"config['head'] must be 'dense' or 'anchors', got {config['head']!r}.")
    anchors = priors.check_anchors(kmeans_anchors if config["priors"] == "kmeans"
                                   else hand_anchors)
    location = config["location"]
    model = yolov2.yolo_v2(num_classes=num_classes, anchors=anchors, backbone=backbone,
                           passthrough=config["passthrough"])
    loss = yolov2.YoloV2Loss(anchors, location=location)

    def encode(boxes, labels, size):
        return yolo_data.encode_yolo_v2_targets(boxes, labels, size, anchors, num_classes)

    def detect(predictions, scale=1.0):
        return yolov2.yolo_v2_detections(predictions, anchors, location=location, scale=scale)

    return AblationDetector(model, loss, encode, detect)
