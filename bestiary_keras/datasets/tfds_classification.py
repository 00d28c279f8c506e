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
    "smallnorb_triplets", "SmallNorbViews",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
"""The 10 CIFAR-10 labels, in TFDS's order."""

SMALLNORB_CATEGORIES = ("four-legged animal", "human figure", "airplane", "truck", "car")
"""The 5 smallNORB categories (``label_category``), in TFDS's order."""

_NORB_AZIMUTH_STEP_DEG = 20.0
_NORB_ELEVATION_START_DEG, _NORB_ELEVATION_STEP_DEG = 30.0, 5.0
_NEIGHBOURS = tuple((da, de) for da in (-1, 0, 1) for de in (-1, 0, 1) if da or de)


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

    def take(self, index) -> SmallNorbViews:
        """The views at ``index`` (integer positions or a boolean mask)."""
        return SmallNorbViews(*(np.asarray(getattr(self, f))[index] for f in (
            "images", "category", "instance", "azimuth", "elevation", "lighting")))


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


def smallnorb_triplets(views: SmallNorbViews, num: int, rng: np.random.Generator, *,
                       other_object_fraction: float = 0.8):
    """Training samples ``(i, j, k, i')`` of Wohlhart and Lepetit's cost on smallNORB's pose grid.

    The counterpart of ``metric_learning.triplet.sample_triplets`` for views on a grid of
    azimuths (steps of 20 degrees, circular) and elevations (steps of 5 degrees). Two poses are
    ``d`` grid steps apart with ``d = max(azimuth steps, elevation steps)``:

    - ``i``: any view;
    - ``j``: the same object one step away (``d = 1``), any lighting; the same pose if the
      object has no view one step away;
    - ``k``: with probability ``other_object_fraction`` another object at any pose, else the
      same object at least two steps away (another object if it has none);
    - ``i'``: the same object at the same pose, under another lighting where there is one.

    Args:
        views: from ``load_smallnorb``.
        num: number of samples.
        rng: NumPy generator.
        other_object_fraction: share of negatives taken from another object.

    Returns:
        int64 array ``(num, 4)`` of positions in ``views``.
    """
    if len(views) < 2:
        raise ValueError(f"views must hold at least 2 views, got {len(views)}.")
    obj = views.object
    az = np.round(np.asarray(views.azimuth) / _NORB_AZIMUTH_STEP_DEG).astype(int) % 18
    el = np.round((np.asarray(views.elevation) - _NORB_ELEVATION_START_DEG)
                  / _NORB_ELEVATION_STEP_DEG).astype(int)
    cells = {}  # (object, azimuth step, elevation step) -> positions
    for n, key in enumerate(zip(obj.tolist(), az.tolist(), el.tolist())):
        cells.setdefault(key, []).append(n)
    poses = {}  # object -> its (azimuth step, elevation step) cells
    for o, a, e in cells:
        poses.setdefault(o, []).append((a, e))
    several_objects = len(poses) > 1

    def steps_apart(a1, e1, a2, e2):
        da = abs(a1 - a2) % 18
        return max(min(da, 18 - da), abs(e1 - e2))

    def other_object(o):
        while True:  # at least one other object exists: a few draws suffice
            k = int(rng.integers(len(obj)))
            if obj[k] != o:
                return k

    out = np.empty((num, 4), np.int64)
    for s, i in enumerate(rng.integers(0, len(obj), num)):
        o, a, e = int(obj[i]), int(az[i]), int(el[i])
        same = cells[(o, a, e)]
        near = [cells[key] for key in ((o, (a + da) % 18, e + de) for da, de in _NEIGHBOURS)
                if key in cells]
        j_pool = near[rng.integers(len(near))] if near else same
        j = j_pool[rng.integers(len(j_pool))]
        far = []
        if not several_objects or rng.random() >= other_object_fraction:
            far = [cells[(o, pa, pe)] for pa, pe in poses[o] if steps_apart(a, e, pa, pe) >= 2]
        if far:
            k_pool = far[rng.integers(len(far))]
            k = k_pool[rng.integers(len(k_pool))]
        elif several_objects:
            k = other_object(o)
        else:  # a single object, seen at no pose 2 steps away: nothing is a true negative
            k = int(rng.integers(len(obj)))
        others = [n for n in same if n != i]
        twin = others[rng.integers(len(others))] if others else int(i)
        out[s] = (i, j, k, twin)
    return out
