"""Real keypoint data through TFDS, read from disk only: CelebA's five facial landmarks.

The installed TFDS catalogue has no human-body keypoint dataset (its ``coco`` builder has boxes
and panoptic masks, no keypoints; LSP, MPII and COCO keypoints are not in it). The keypoint
datasets it does have are faces: ``celeb_a`` (5 landmarks on 202,599 aligned faces),
``aflw2k3d`` (68 landmarks, 2,000 faces) and ``the300w_lp`` (68 landmarks). A CPM trains on
CelebA unchanged (5 belief maps instead of 14), and its landmarks have a left and a right side,
so the question of context stays; that is the real-data path of notebook 12.

As everywhere in the project nothing is downloaded implicitly (``load_tfds``): prepare it with
``tfds build celeb_a --data_dir DIR`` on a machine with internet (about 1.4 GB).

Keypoints follow ``datasets.figures``: ``(x, y, v)`` in pixels of the returned image, pixel
centres at ``+0.5`` (CelebA's integer landmark positions are pixel indices, so ``+0.5``),
``v = 2`` for a landmark inside the image and ``v = 0`` outside.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.datasets.scenes import _pair
from bestiary_keras.datasets.tfds_data import load_tfds

__all__ = ["CELEBA_LANDMARKS", "CELEBA_LIMBS", "load_celeba_landmarks"]

CELEBA_LANDMARKS = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
"""CelebA's landmark names, in its order. CelebA names them by image side: ``lefteye`` is the
eye on the image's left (the person's right eye for a face looking at the camera)."""

CELEBA_LIMBS = ((2, 0), (2, 1), (2, 3), (2, 4), (0, 1), (3, 4))
"""Segments for drawing (``figures.draw_keypoints``): nose to each landmark, eye to eye,
mouth corner to mouth corner."""


def load_celeba_landmarks(split="train", image_size=64, *, data_dir=None, download: bool = False,
                          max_examples: int | None = None):
    """CelebA's aligned faces with their five landmarks, centre-cropped to a square.

    Each 218 x 178 image is cropped to its central 178 x 178 square (20 rows off the top and
    the bottom), then resized to ``image_size``; the landmarks follow.

    Args:
        split: TFDS split (``train``: 162,770, ``validation``: 19,867, ``test``: 19,962 faces;
            slicing allowed, e.g. ``"train[:5000]"``).
        image_size: output size, an int or ``(height, width)``.
        data_dir, download: see ``tfds_data.load_tfds``.
        max_examples: read at most this many examples.

    Returns:
        ``(images, keypoints)``: uint8 (N, H, W, 3) and float32 (N, 5, 3) ``(x, y, v)``, joints
        in the order of ``CELEBA_LANDMARKS``.

    Raises:
        DatasetNotAvailableError: the dataset is not prepared in ``data_dir``.
    """
    import tensorflow as tf

    out_h, out_w = _pair(image_size, "image_size")
    dataset = load_tfds("celeb_a", split, data_dir=data_dir, download=download)

    def convert(example):
        image = example["image"]
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        crop = image[top:top + side, left:left + side]
        resized = tf.image.resize(crop, (out_h, out_w), method="area")
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
        marks = example["landmarks"]
        xs = tf.stack([tf.cast(marks[f"{n}_x"], tf.float32) for n in CELEBA_LANDMARKS])
        ys = tf.stack([tf.cast(marks[f"{n}_y"], tf.float32) for n in CELEBA_LANDMARKS])
        scale_x = out_w / tf.cast(side, tf.float32)
        scale_y = out_h / tf.cast(side, tf.float32)
        x = (xs + 0.5 - tf.cast(left, tf.float32)) * scale_x
        y = (ys + 0.5 - tf.cast(top, tf.float32)) * scale_y
        inside = (x >= 0) & (x <= out_w) & (y >= 0) & (y <= out_h)
        v = tf.where(inside, 2.0, 0.0)
        keypoints = tf.stack([tf.where(inside, x, 0.0), tf.where(inside, y, 0.0), v], axis=-1)
        return resized, keypoints

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if max_examples is not None:
        dataset = dataset.take(int(max_examples))
    batches = list(dataset.batch(256).as_numpy_iterator())
    if not batches:
        raise ValueError(f"Split {split!r} of celeb_a is empty.")
    images = np.concatenate([b[0] for b in batches])
    keypoints = np.concatenate([b[1] for b in batches]).astype(np.float32)
    return images, keypoints
