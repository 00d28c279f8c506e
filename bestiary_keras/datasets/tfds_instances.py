"""Real images with instance masks through TFDS: LVIS, for Mask R-CNN (notebook 11).

Which TFDS dataset has instance masks (checked in tensorflow_datasets 4.9): ``coco/2017``
stores only boxes and labels per object (its builder says "more info could be added, like the
segmentation"); ``coco/2017_panoptic`` stores one panoptic PNG per image, from which thing
instances could be decoded; ``lvis`` (v1) stores, for every object of the COCO 2017 images, its
own ``segmentation`` mask (``objects/segmentation``, ``(num_objects, H, W, 1)`` uint8, 255
inside), with a ``bbox`` and one of 1,203 labels. LVIS is therefore the one whose instance
masks come as they are (same images as the paper's COCO, a larger vocabulary), and it is what
``load_lvis_instances`` reads. Like every loader here it reads a prepared copy only
(``tfds build lvis --data_dir DIR`` elsewhere; about 25 GB with the COCO images) and raises
``DatasetNotAvailableError`` otherwise.

The result is a ``SceneSet``, like ``make_scenes``: square uint8 images, boxes tight around each
resized mask (exclusive end), bool masks, labels with -1 padding, so a model trained on the
generated scenes runs on it unchanged.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from bestiary_keras.datasets.scenes import SceneSet
from bestiary_keras.datasets.tfds_data import (
    _class_lookup,
    _image_size,
    _resize,
    load_tfds,
)

__all__ = ["lvis_class_names", "load_lvis_instances"]


@functools.lru_cache(maxsize=1)
def lvis_class_names() -> tuple:
    """The 1,203 LVIS class names, in TFDS's label order (from the installed builder)."""
    import tensorflow_datasets as tfds

    path = os.fspath(tfds.core.tfds_path("datasets/lvis/classes.txt"))
    with open(path, encoding="utf-8") as f:  # plain open: tfds.testing.mock_data fakes epath
        return tuple(line.strip() for line in f if line.strip())


def _tight_box(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def load_lvis_instances(split="validation", image_size=128, *, classes=None,
                        max_objects: int = 10, min_pixels: int = 4, keep_aspect: bool = False,
                        data_dir=None, download: bool = False, max_examples: int | None = None):
    """LVIS images with their instance masks, as a ``SceneSet``.

    Args:
        split: TFDS split (``"train"``, ``"validation"``, ``"minival"``; slicing allowed).
        image_size: output size, int or (height, width).
        classes: LVIS class names to keep (labels become their positions in this tuple); other
            objects are dropped. None keeps all 1,203 classes.
        max_objects: objects kept per image, the largest first (``M`` of the arrays).
        min_pixels: objects whose resized mask has fewer pixels are dropped.
        keep_aspect: pad to keep the aspect ratio instead of stretching (see ``tfds_data``).
        data_dir, download: see ``tfds_data.load_tfds`` (never downloads unless asked).
        max_examples: read at most this many images.

    Returns:
        A ``SceneSet``; images without a kept object stay (all padding), so ``min_objects``
        is 0. Objects whose resized mask is empty or tiny (``min_pixels``) are dropped, so
        every kept box has a positive area. An example whose numbers of masks and labels
        differ (never in LVIS; TFDS's random mock data) pairs them in order up to the
        shorter of the two.

    Raises:
        DatasetNotAvailableError: LVIS is not prepared in ``data_dir``.
        ValueError: bad arguments (an unknown class name, ``max_objects < 1``,
            ``min_pixels < 1``).
    """
    import tensorflow as tf

    size_hw = _image_size(image_size)
    if int(max_objects) < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects!r}.")
    if int(min_pixels) < 1:
        raise ValueError(f"min_pixels must be >= 1 (an empty mask has no box), got "
                         f"{min_pixels!r}.")
    keep_names, lookup = _class_lookup(
        lvis_class_names(), classes, "LVIS",
        " (see lvis_class_names(), e.g. 'person', 'car_(automobile)')")
    dataset = load_tfds("lvis", split, data_dir=data_dir, download=download)
    if max_examples is not None:
        dataset = dataset.take(int(max_examples))

    def convert(example):
        image, *_ = _resize(tf, example["image"], size_hw, keep_aspect, "bilinear")
        masks = tf.cast(example["objects"]["segmentation"], tf.float32)
        masks = tf.map_fn(lambda m: _resize(tf, m, size_hw, keep_aspect, "bilinear")[0], masks,
                          fn_output_signature=tf.TensorSpec((*size_hw, 1), tf.float32))
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return image, masks[..., 0] >= 127.5, example["objects"]["label"]

    height, width = size_hw
    images, all_masks, all_labels = [], [], []
    for image, masks, labels in dataset.map(convert).as_numpy_iterator():
        masks = np.asarray(masks, bool).reshape(-1, height, width)
        # on real data there is one mask per label; tfds.testing.mock_data draws the two
        # lengths independently, so only the common prefix is used (as in tfds_detection)
        count = min(len(masks), len(labels))
        masks, labels = masks[:count], lookup[np.asarray(labels[:count], np.int64)]
        pixels = masks.sum(axis=(1, 2))
        keep = np.nonzero((labels >= 0) & (pixels >= min_pixels))[0]
        keep = keep[np.argsort(-pixels[keep], kind="stable")][: int(max_objects)]
        images.append(image)
        all_masks.append(masks[keep])
        all_labels.append(labels[keep])
    n = len(images)
    m = int(max_objects)
    out_masks = np.zeros((n, m, height, width), bool)
    out_labels = np.full((n, m), -1, np.int32)
    out_boxes = np.zeros((n, m, 4), np.float32)
    semantic = np.zeros((n, height, width), np.uint8)
    for i, (masks, labels) in enumerate(zip(all_masks, all_labels)):
        out_masks[i, : len(masks)] = masks
        out_labels[i, : len(labels)] = labels
        for j, mask in enumerate(masks):
            out_boxes[i, j] = _tight_box(mask)
        for mask, label in zip(masks[::-1], labels[::-1]):  # the largest object on top
            semantic[i][mask] = min(int(label) + 1, 255)
    return SceneSet(
        images=np.stack(images) if n else np.zeros((0, height, width, 3), np.uint8),
        labels=out_labels, boxes=out_boxes, masks=out_masks, semantic=semantic,
        class_names=keep_names, areas=out_masks.sum(axis=(2, 3)).astype(np.int32))
