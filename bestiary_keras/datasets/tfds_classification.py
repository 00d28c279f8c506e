"""Real images with class (and pose) labels through TFDS: CIFAR-10, MNIST, smallNORB.

The real-data paths of notebooks 02 (ResNet: CIFAR-10, the paper's section 4.2), 15 (Siamese
networks: MNIST, Hadsell et al.'s data) and 16 (triplet descriptors: smallNORB, standing in for
the paper's LineMOD, which TFDS does not have). Like every loader here they read a prepared copy
only, through ``tfds_data.load_tfds`` (``tfds build cifar10|mnist|smallnorb --data_dir DIR``
on a machine with internet), and raise ``DatasetNotAvailableError`` with that command otherwise.

smallNORB (LeCun, Huang, Bottou 2004): 5 categories of toys x 10 instances, each photographed by
a stereo pair of cameras at 18 azimuths (0 to 340 degrees every 20), 9 elevations (30 to 70
degrees every 5) and under 6 lightings: 24,300 stereo pairs per split, 96x96 grey. The
``train`` split holds instances 4, 6, 7, 8, 9 of every category and ``test`` the others
(0, 1, 2, 3, 5). TFDS stores the labels as class indices (azimuth 0..17, elevation 0..8);
``load_smallnorb`` returns them in degrees and uses the first camera's image (``image``).

TensorFlow and TFDS are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bestiary_keras.datasets.tfds_data import _image_size, _resize, _to_numpy, load_tfds

__all__ = [
    "CIFAR10_CLASSES", "load_cifar10", "load_mnist", "load_smallnorb", "SMALLNORB_CATEGORIES",
    "SmallNorbViews",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
"""The 10 CIFAR-10 labels, in TFDS's order."""

SMALLNORB_CATEGORIES = ("four-legged animal", "human figure", "airplane", "truck", "car")
"""The 5 smallNORB categories (``label_category``), in TFDS's order."""

_NORB_AZIMUTH_STEP_DEG = 20.0
_NORB_ELEVATION_START_DEG, _NORB_ELEVATION_STEP_DEG = 30.0, 5.0


def _image_label_arrays(name, split, max_examples, data_dir, download):
    """``(images, labels)`` of an ``image``/``label`` TFDS dataset, uint8 and int32."""
    dataset = load_tfds(name, split, data_dir=data_dir, download=download)
    dataset = dataset.map(lambda example: (example["image"], example["label"]))
    arrays = _to_numpy(dataset, max_examples, name, data_dir)
    if arrays is None:
        raise ValueError(f"Split {split!r} of {name} is empty.")
    images, labels = arrays
    return images.astype(np.uint8), labels.astype(np.int32)


def load_cifar10(split="train", *, max_examples: int | None = None, data_dir=None,
                 download: bool = False):
    """CIFAR-10 images and labels (the ResNet paper's section 4.2 experiment).

    Args:
        split: TFDS split, slicing allowed: ``train`` (50,000 images) or ``test`` (10,000).
        max_examples: read at most this many examples (the first ones of ``split``).
        data_dir, download: see ``tfds_data.load_tfds`` (never downloads unless asked).

    Returns:
        ``(images, labels)``: uint8 ``(N, 32, 32, 3)`` and int32 ``(N,)`` in 0..9 (names in
        ``CIFAR10_CLASSES``).

    Raises:
        DatasetNotAvailableError: CIFAR-10 is not prepared in ``data_dir``.
        ValueError: ``split`` is empty.
    """
    return _image_label_arrays("cifar10", split, max_examples, data_dir, download)


def load_mnist(split="train", *, max_examples: int | None = None, data_dir=None,
               download: bool = False):
    """MNIST digits and labels (the data of Hadsell, Chopra and LeCun's DrLIM, 2006).

    Args:
        split: TFDS split, slicing allowed: ``train`` (60,000 images) or ``test`` (10,000).
        max_examples: read at most this many examples (the first ones of ``split``).
        data_dir, download: see ``tfds_data.load_tfds`` (never downloads unless asked).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28, 1)`` (0 = background, 255 = ink) and int32
        ``(N,)`` in 0..9.

    Raises:
        DatasetNotAvailableError: MNIST is not prepared in ``data_dir``.
        ValueError: ``split`` is empty.
    """
    return _image_label_arrays("mnist", split, max_examples, data_dir, download)


@dataclass
class SmallNorbViews:
    """smallNORB views with their ground truth.

    Attributes:
        images: uint8 ``(N, S, S, 1)``, the first camera's image resized to ``S x S``.
        category: int32 ``(N,)`` in 0..4 (``SMALLNORB_CATEGORIES``).
        instance: int32 ``(N,)`` in 0..9, the toy within its category.
        azimuth: float32 ``(N,)`` degrees, 0 to 340 in steps of 20.
        elevation: float32 ``(N,)`` degrees, 30 to 70 in steps of 5.
        lighting: int32 ``(N,)`` in 0..5.
    """

    images: np.ndarray
    category: np.ndarray
    instance: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    lighting: np.ndarray

    def __len__(self):
        return len(self.category)

    @property
    def object(self) -> np.ndarray:
        """One id per toy, ``10 * category + instance`` (0..49): the object identity."""
        return (10 * self.category + self.instance).astype(np.int32)


def load_smallnorb(split="train", image_size=32, *, max_examples: int | None = None,
                   data_dir=None, download: bool = False) -> SmallNorbViews:
    """smallNORB views with category, instance, azimuth, elevation and lighting.

    Args:
        split: TFDS split, slicing allowed: ``train`` (instances 4, 6, 7, 8, 9 of each
            category) or ``test`` (instances 0, 1, 2, 3, 5), 24,300 views each.
        image_size: output size, int or (height, width); the 96x96 images are resized with
            area averaging (96 -> 32 averages 3x3 blocks).
        max_examples: read at most this many examples (the first ones of ``split``).
        data_dir, download: see ``tfds_data.load_tfds`` (never downloads unless asked).

    Returns:
        A ``SmallNorbViews``; angles in degrees (TFDS's azimuth class ``a`` is ``20 a``
        degrees, its elevation class ``e`` is ``30 + 5 e`` degrees).

    Raises:
        DatasetNotAvailableError: smallNORB is not prepared in ``data_dir``.
        ValueError: bad ``image_size``, or ``split`` is empty.
    """
    import tensorflow as tf

    size_hw = _image_size(image_size)
    dataset = load_tfds("smallnorb", split, data_dir=data_dir, download=download)

    def convert(example):
        image, *_ = _resize(tf, example["image"], size_hw, False, "area")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        labels = [example[k] for k in ("label_category", "instance", "label_azimuth",
                                       "label_elevation", "label_lighting")]
        return (image, *labels)

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    arrays = _to_numpy(dataset, max_examples, "smallnorb", data_dir)
    if arrays is None:
        raise ValueError(f"Split {split!r} of smallnorb is empty.")
    images, category, instance, azimuth, elevation, lighting = arrays
    return SmallNorbViews(
        images=images.astype(np.uint8),
        category=category.astype(np.int32),
        instance=instance.astype(np.int32),
        azimuth=(_NORB_AZIMUTH_STEP_DEG * azimuth).astype(np.float32),
        elevation=(_NORB_ELEVATION_START_DEG
                   + _NORB_ELEVATION_STEP_DEG * elevation).astype(np.float32),
        lighting=lighting.astype(np.int32),
    )
