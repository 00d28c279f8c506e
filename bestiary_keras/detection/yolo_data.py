"""Training batches of the YOLO notebooks (06, 07): augmentation, multi-scale sizes, targets.

``YoloBatches`` draws random scenes, applies a random symmetry of the square
(``augment.flip_scenes``), resizes them (``augment.resize_scenes``, YOLOv2's multi-scale
training) and encodes their targets with the detector's own encoder (e.g.
``yolo.encode_yolo_v1_targets`` or ``yolov2.encode_yolo_v2_targets``).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import augment
from bestiary_keras.batching import fixed_tf_data_options

__all__ = ["YoloBatches"]


class YoloBatches:
    """Training batches for YOLO and YOLOv2: augmentation, multi-scale, target encoding.

    Every batch draws ``batch_size`` random scenes, applies one random symmetry of the square
    (``augment=True``: flips and transposition), resizes them to the current input size and
    encodes their targets with ``encode(boxes, labels, image_size)``. With several ``sizes``
    the input size changes every ``change_every`` batches (YOLOv2's multi-scale training: the
    paper picks a new size, a multiple of 32, every 10 batches; ours are multiples of the
    network's stride).

    ``batches[step]`` is batch number ``step`` (deterministic given ``seed``); ``dataset()``
    streams them to ``model.fit`` as a ``tf.data.Dataset`` whose spatial dimensions are left
    free (the per-cell layout, ``example.shape[3:]``, stays fixed), so that one traced training
    step serves every input size (a Keras ``PyDataset`` would fix the shapes of its first
    batches)::

        model.fit(batches.dataset(), steps_per_epoch=100, epochs=10)

    Args:
        images: ``(N, S0, S0, 3)`` images, pixel values in [0, 255] (uint8 or float); batches
            are float32 in the same range.
        boxes: ``(N, M, 4)`` xyxy pixel boxes at size ``S0``.
        labels: ``(N, M)`` class indices, -1 for padding.
        encode: ``encode(boxes, labels, image_size) -> targets`` for one batch.
        batch_size: scenes per batch.
        sizes: input sizes to draw from (default: the native size only).
        change_every: batches between two size changes.
        augment: random flips / transposition.
        seed: seed of the batch sampler.
    """

    def __init__(self, images, boxes, labels, encode, *, batch_size: int = 16, sizes=None,
                 change_every: int = 10, augment: bool = True, seed: int = 0):
        self.images = np.asarray(images)
        self.boxes = np.asarray(boxes, np.float32)
        self.labels = np.asarray(labels)
        if len(self.images) == 0:
            raise ValueError("YoloBatches got no images.")
        if batch_size < 1 or change_every < 1:
            raise ValueError(
                f"batch_size and change_every must be >= 1, got {batch_size} and {change_every}."
            )
        self.encode = encode
        self.batch_size = int(batch_size)
        self.sizes = tuple(int(s) for s in (sizes or (self.images.shape[1],)))
        self.change_every = int(change_every)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.size_log: list[int] = []

    def size_at(self, step: int) -> int:
        """The input size of batch ``step`` (fixed per block of ``change_every`` batches)."""
        if len(self.sizes) == 1:
            return self.sizes[0]
        block = int(step) // self.change_every
        return self.sizes[np.random.default_rng([self.seed, 1, block]).integers(len(self.sizes))]

    def __getitem__(self, step):
        step = int(step)
        rng = np.random.default_rng([self.seed, 0, step])
        pick = rng.integers(0, len(self.images), self.batch_size)
        images, boxes, labels = self.images[pick], self.boxes[pick], self.labels[pick]
        if self.augment:
            h, v, t = rng.integers(0, 2, 3).astype(bool)
            images, boxes = augment.flip_scenes(images, boxes, horizontal=h, vertical=v,
                                                transpose=t)
        size = self.size_at(step)
        images, boxes = augment.resize_scenes(images, boxes, size)
        return images.astype(np.float32), self.encode(boxes, labels, size)

    def dataset(self, start: int = 0):
        """An endless ``tf.data.Dataset`` of batches ``start, start + 1, ...``."""
        import tensorflow as tf

        _, example = self[start]

        def generate():
            step = start
            while True:
                self.size_log.append(self.size_at(step))
                yield self[step]
                step += 1

        # batch and grid dimensions free, the per-cell layout fixed
        signature = (tf.TensorSpec((None, None, None, 3), tf.float32),
                     tf.TensorSpec((None, None, None) + example.shape[3:], tf.float32))
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
        return dataset.with_options(fixed_tf_data_options())  # a fixed buffer of two batches
