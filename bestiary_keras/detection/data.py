"""Detection data for notebooks 03 to 07: one scene recipe, fixed train and test sets, tf.data.

All five detectors of the chapter train on ``detection_scenes(n, "train")`` and are compared on
the same ``detection_scenes(n, "test")`` images: 64x64 crops of real photos with 1 to 4 shapes
of three classes, 12 to 32 pixels long, which may touch and hide up to a quarter of one another.
Scene ``i`` of a split never depends on ``n`` (the generator is seeded per image), so the first
100 test images are the same in every profile and every notebook.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.augment import flip_boxes
from bestiary_keras.batching import fixed_tf_data_options
from bestiary_keras.datasets.scenes import make_scenes

__all__ = [
    "DETECTION_CLASSES",
    "SCENE_SETTINGS",
    "SPLIT_SEEDS",
    "detection_scenes",
    "pad_boxes",
    "detection_dataset",
]

DETECTION_CLASSES = ("circle", "square", "triangle")
"""The chapter's three object classes (label ``k`` is ``DETECTION_CLASSES[k]``)."""

SCENE_SETTINGS = dict(
    image_size=64,
    classes=DETECTION_CLASSES,
    min_objects=1,
    max_objects=4,
    object_size=(12, 32),
    max_overlap=0.25,
    background="photo",
)
"""The ``make_scenes`` arguments of the chapter (objects may hide up to 25% of each other)."""

SPLIT_SEEDS = {"train": 0, "test": 1, "val": 2}
"""Scene seeds of the splits: disjoint sets of images, the same in every notebook."""


def detection_scenes(num_images: int, split: str = "train", **overrides):
    """The chapter's scenes (``make_scenes`` with ``SCENE_SETTINGS``) for one split.

    Args:
        num_images: number of scenes.
        split: ``"train"``, ``"val"`` or ``"test"``.
        **overrides: ``make_scenes`` arguments that replace ``SCENE_SETTINGS`` entries (e.g.
            ``min_objects=0`` for images without objects).

    Returns:
        A ``SceneSet``.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEEDS)}, got {split!r}.")
    settings = {**SCENE_SETTINGS, **overrides}
    return make_scenes(int(num_images), seed=SPLIT_SEEDS[split], **settings)


def pad_boxes(boxes_per_image, max_boxes: int | None = None):
    """A list of ``(P_i, 4)`` box arrays (e.g. proposals) -> ``(N, P, 4)`` and a bool mask.

    ``keras.utils.pad_sequences`` at the end of each list (keeping the first ``P`` boxes).

    Args:
        boxes_per_image: list of ``(P_i, 4)`` arrays (``P_i`` may be 0).
        max_boxes: ``P`` (keeps the first ``P`` of each image); default: the largest ``P_i``.

    Returns:
        ``(boxes float32 (N, P, 4), valid bool (N, P))``, zeros where padded.
    """
    import keras

    boxes_per_image = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_per_image]
    if max_boxes is None:
        max_boxes = max([len(b) for b in boxes_per_image] + [1])
    if int(max_boxes) < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes!r}.")
    counts = np.minimum([len(b) for b in boxes_per_image] + [0], int(max_boxes))[:-1]
    if not counts.any():  # pad_sequences cannot tell the box shape from empty lists
        return (np.zeros((len(counts), int(max_boxes), 4), np.float32),
                np.zeros((len(counts), int(max_boxes)), bool))
    boxes = keras.utils.pad_sequences(boxes_per_image, maxlen=int(max_boxes), dtype="float32",
                                      padding="post", truncating="post", value=0.0)
    return boxes, np.arange(int(max_boxes))[None, :] < counts[:, None]


def detection_dataset(scenes, batch_size: int, *, proposals=None, shuffle: bool = True,
                      repeat: bool = True, flip: bool = True, seed: int = 0):
    """A ``tf.data`` pipeline of detection batches.

    Each element is a dict: ``images`` float32 ``(B, H, W, 3)`` in [0, 255], ``boxes`` float32
    ``(B, M, 4)``, ``labels`` int32 ``(B, M)`` (-1 padding), and with ``proposals`` also
    ``proposals`` ``(B, P, 4)`` and ``proposal_valid`` bool ``(B, P)``.

    Args:
        scenes: a ``SceneSet``.
        batch_size: images per batch.
        proposals: optional ``(boxes (N, P, 4), valid (N, P))`` (``pad_boxes``) precomputed per
            image, flipped together with the image.
        shuffle, repeat: training (True) or evaluation (False) order.
        flip: random horizontal flips (boxes and proposals follow).
        seed: shuffling and flipping seed.

    Returns:
        A ``tf.data.Dataset``.
    """
    import tensorflow as tf

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    tensors = {
        "images": scenes.images,
        "boxes": scenes.boxes.astype(np.float32),
        "labels": scenes.labels.astype(np.int32),
    }
    if proposals is not None:
        props, valid = proposals
        if len(props) != len(scenes):
            raise ValueError(
                f"proposals has {len(props)} images but scenes has {len(scenes)}: compute "
                "proposals for every scene (pad_boxes)."
            )
        tensors["proposals"] = np.asarray(props, np.float32)
        tensors["proposal_valid"] = np.asarray(valid, bool)
    width = float(scenes.images.shape[2])
    ds = tf.data.Dataset.from_tensor_slices(tensors)
    if shuffle:
        ds = ds.shuffle(len(scenes), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def prepare(item):
        item = dict(item)
        item["images"] = tf.cast(item["images"], tf.float32)
        return item

    def random_flip(item, key):
        flip_now = tf.random.stateless_uniform((), seed=key) < 0.5
        flipped = dict(item)
        flipped["images"] = item["images"][:, ::-1]
        flipped["boxes"] = flip_boxes(item["boxes"], width, item["labels"] >= 0)
        if "proposals" in item:
            flipped["proposals"] = flip_boxes(item["proposals"], width, item["proposal_valid"])
        return {k: tf.where(flip_now, flipped[k], item[k]) for k in item}

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    if flip:
        keys = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip(ds, keys).map(
            lambda item, key: random_flip(item, key),
            num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(batch_size), drop_remainder=shuffle).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(fixed_tf_data_options())

