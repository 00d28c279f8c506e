"""Real images with object boxes through TFDS: PASCAL VOC 2007, for the detectors of notebooks
03 to 07 (R-CNN, Fast R-CNN, Faster R-CNN, YOLO, YOLOv2).

VOC 2007 is the benchmark of R-CNN, Fast R-CNN, Faster R-CNN and YOLO: 9,963 images with
24,640 objects of 20 classes, in three splits that TFDS ``voc/2007`` keeps apart (``train``
2,501 images, ``validation`` 2,510, ``test`` 4,952; the papers train on train + validation,
"trainval", and report mAP@0.5 on test). Each object has a box, a class, and the flags
``is_difficult`` (the VOC evaluation ignores these objects) and ``is_truncated``. Like every
loader here, ``load_voc_detection`` reads a prepared copy only (``tfds build voc/2007
--data_dir DIR`` elsewhere; about 870 MB to download) and raises ``DatasetNotAvailableError``
otherwise.

The result is a ``SceneSet``, like ``make_scenes``: square (or ``(height, width)``) uint8
images, boxes ``[x_min, y_min, x_max, y_max]`` in pixels of the resized image with exclusive
end, labels with -1 padding, so a detector trained on the generated scenes runs on it
unchanged. VOC 2007's detection annotations have **no masks**: the masks (and ``semantic``)
are the boxes filled in.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.datasets.scenes import SceneSet
from bestiary_keras.datasets.tfds_data import (
    _class_lookup,
    _image_size,
    _reading,
    _resize,
    load_tfds,
)

__all__ = ["VOC_CLASSES", "VOC_NAME", "box_masks", "load_voc_detection"]

VOC_NAME = "voc/2007"
"""The TFDS name (with its config) that ``load_voc_detection`` reads."""

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
"""The 20 VOC classes, in TFDS's label order (``objects/label`` ``k`` is ``VOC_CLASSES[k]``)."""


def box_masks(boxes, height: int, width: int):
    """Boxes filled in: bool ``(K, height, width)``, the pixels whose centre lies in each box.

    Pixel ``(row, column)`` has its centre at ``(row + 0.5, column + 0.5)``; it belongs to the
    box ``[x_min, y_min, x_max, y_max]`` (exclusive end) when ``x_min <= column + 0.5 < x_max``
    and ``y_min <= row + 0.5 < y_max``. A box ``[0, 0, 2, 1]`` covers the pixels ``(0, 0)`` and
    ``(0, 1)``; a box narrower than a pixel may cover none (zero area at this resolution).

    Args:
        boxes: ``(K, 4)`` boxes in pixels.
        height, width: the image size.

    Returns:
        A bool array ``(K, height, width)``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres_x = np.arange(int(width)) + 0.5
    centres_y = np.arange(int(height)) + 0.5
    inside_x = (centres_x >= boxes[:, 0:1]) & (centres_x < boxes[:, 2:3])  # (K, W)
    inside_y = (centres_y >= boxes[:, 1:2]) & (centres_y < boxes[:, 3:4])  # (K, H)
    return inside_y[:, :, None] & inside_x[:, None, :]


def load_voc_detection(split="train", image_size=128, *, classes=None, max_objects: int = 10,
                       keep_aspect: bool = False, include_difficult: bool = False,
                       data_dir=None, download: bool = False, max_examples: int | None = None):
    """PASCAL VOC 2007 images with their object boxes, as a ``SceneSet``.

    TFDS stores each box normalised, ``[y_min, x_min, y_max, x_max]`` in [0, 1]; it becomes
    ``[x_min, y_min, x_max, y_max]`` in pixels of the resized image (the image stretched to
    ``image_size``, or with ``keep_aspect`` shrunk into it and centred, the boxes shifted
    alike), clipped to the image. Objects whose box covers no pixel centre after resizing
    (zero area at this resolution; see ``box_masks``) are dropped, then the ``max_objects``
    largest are kept, largest first.

    VOC 2007 has no instance masks for detection: ``masks`` are the boxes filled in
    (``box_masks``) and ``semantic`` paints them, the largest first, so that a smaller object
    in front of a larger one stays visible (``k + 1`` for class ``k``, 0 = background);
    ``areas`` are the box-filled pixel counts.

    Args:
        split: TFDS split: ``"train"`` (2,501 images), ``"validation"`` (2,510), ``"test"``
            (4,952); slicing allowed (``"train[:500]"``, ``"train+validation"``).
        image_size: output size, int or (height, width).
        classes: VOC class names to keep (see ``VOC_CLASSES``); labels become their positions
            in this tuple, other objects are dropped and so are images left without objects.
            None keeps all 20 classes with VOC's label indices.
        max_objects: objects kept per image (``M`` of the arrays), the largest first.
        keep_aspect: pad to keep the aspect ratio instead of stretching (see ``tfds_data``).
        include_difficult: keep the objects VOC marks ``difficult`` (its evaluation ignores
            them; here they would count as objects to find). By default they are dropped.
        data_dir, download: see ``tfds_data.load_tfds`` (never downloads unless asked).
        max_examples: read at most this many images (before dropping any).

    Returns:
        A ``SceneSet`` with ``images`` uint8 (N, H, W, 3), ``boxes`` float32 (N, M, 4),
        ``labels`` int32 (N, M) with -1 padding, ``masks`` bool (N, M, H, W), ``semantic``
        uint8 (N, H, W), ``class_names`` and ``areas``. Every image holds at least one object.

    Raises:
        DatasetNotAvailableError: VOC 2007 is not prepared in ``data_dir`` (or a record cannot
            be read); the message says which ``tfds build`` command prepares it.
        ValueError: bad arguments (an unknown class name, ``max_objects < 1``).
    """
    import tensorflow as tf

    size_hw = _image_size(image_size)
    if int(max_objects) < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects!r}.")
    keep_names, lookup = _class_lookup(VOC_CLASSES, classes, "VOC",
                                       f"; choose from {VOC_CLASSES}")
    dataset = load_tfds(VOC_NAME, split, data_dir=data_dir, download=download)
    if max_examples is not None:
        dataset = dataset.take(int(max_examples))
    height, width = size_hw

    def convert(example):
        image, new_h, new_w, top, left = _resize(tf, example["image"], size_hw, keep_aspect,
                                                 "bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        objects = example["objects"]
        bbox = tf.reshape(tf.cast(objects["bbox"], tf.float32), (-1, 4))
        scale = tf.cast(tf.stack([new_w, new_h, new_w, new_h]), tf.float32)
        offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
        boxes = tf.gather(bbox, [1, 0, 3, 2], axis=1) * scale + offset
        return image, boxes, objects["label"], objects["is_difficult"]

    images, all_boxes, all_labels = [], [], []
    with _reading(VOC_NAME, data_dir):
        for image, boxes, labels, difficult in dataset.map(convert).as_numpy_iterator():
            # on real data the three have one entry per object; tfds.testing.mock_data draws
            # their lengths independently, so only the common prefix is used
            count = min(len(boxes), len(labels), len(difficult))
            boxes = np.clip(boxes[:count], 0.0, [width, height, width, height])
            labels = lookup[np.asarray(labels[:count], np.int64)]
            keep = labels >= 0
            if not include_difficult:
                keep &= ~np.asarray(difficult[:count], bool)
            pixels = box_masks(boxes, height, width).sum(axis=(1, 2))
            keep = np.flatnonzero(keep & (pixels > 0))
            if len(keep) == 0:
                continue
            keep = keep[np.argsort(-pixels[keep], kind="stable")][: int(max_objects)]
            images.append(image)
            all_boxes.append(boxes[keep])
            all_labels.append(labels[keep])
    n, m = len(images), int(max_objects)
    out_boxes = np.zeros((n, m, 4), np.float32)
    out_labels = np.full((n, m), -1, np.int32)
    out_masks = np.zeros((n, m, height, width), bool)
    semantic = np.zeros((n, height, width), np.uint8)
    for i, (boxes, labels) in enumerate(zip(all_boxes, all_labels)):
        out_boxes[i, : len(boxes)] = boxes
        out_labels[i, : len(labels)] = labels
        out_masks[i, : len(boxes)] = box_masks(boxes, height, width)
        for mask, label in zip(out_masks[i, : len(boxes)], labels):  # largest first, smaller on top
            semantic[i][mask] = int(label) + 1
    return SceneSet(
        images=np.stack(images) if n else np.zeros((0, height, width, 3), np.uint8),
        labels=out_labels, boxes=out_boxes, masks=out_masks, semantic=semantic,
        class_names=tuple(keep_names), areas=out_masks.sum(axis=(2, 3)).astype(np.int32))
