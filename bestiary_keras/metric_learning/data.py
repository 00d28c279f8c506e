"""Digit images and pairs for the Siamese network of notebook 15.

- ``load_digits``: scikit-learn's 1,797 bundled 8x8 handwritten digits (offline, the default)
  or TFDS ``mnist`` (the real-data path: needs the dataset prepared in the TFDS data directory;
  it is never downloaded from a notebook), split into train and test, as float32 in [0, 1].
- ``make_class_pairs``: balanced pairs of indices, label 1 = same class, 0 = different class.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIGIT_SOURCES", "load_digits", "make_class_pairs"]

DIGIT_SOURCES = ("sklearn", "mnist")


def _load_sklearn_digits(test_fraction, seed):
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    labels = digits.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(test_fraction * len(images)))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def _load_mnist(max_train, max_test, data_dir):
    # The one MNIST reader (datasets.tfds_classification): never downloads, raises
    # DatasetNotAvailableError with the command that prepares the data when it is missing.
    from bestiary_keras.datasets.tfds_classification import load_mnist

    x_train, y_train = load_mnist("train", max_examples=max_train, data_dir=data_dir)
    x_test, y_test = load_mnist("test", max_examples=max_test, data_dir=data_dir)
    return (x_train.astype(np.float32) / 255.0, y_train,
            x_test.astype(np.float32) / 255.0, y_test)


def load_digits(source: str = "sklearn", *, test_fraction: float = 0.33, seed: int = 0,
                max_train: int | None = None, max_test: int | None = None, data_dir=None):
    """Digit images for the Siamese network, split into train and test.

    Args:
        source: ``"sklearn"`` (1,797 images of 8x8, bundled with scikit-learn, split at random
            with ``test_fraction`` and ``seed``) or ``"mnist"`` (TFDS, 28x28, its own splits;
            raises ``bestiary_keras.datasets.tfds_data.DatasetNotAvailableError`` when the
            dataset is not prepared on this machine).
        test_fraction: share of the scikit-learn digits held out for testing.
        seed: seed of the scikit-learn split.
        max_train, max_test: keep at most this many MNIST images (the first ones).
        data_dir: TFDS data directory (default: TFDS's own).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 images ``(N, H, W, 1)`` in [0, 1] and
        int32 labels 0-9.
    """
    if source == "sklearn":
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        return _load_sklearn_digits(test_fraction, seed)
    if source == "mnist":
        return _load_mnist(max_train, max_test, data_dir)
    raise ValueError(f"Unknown source {source!r}: expected one of {', '.join(DIGIT_SOURCES)}.")


def make_class_pairs(labels, num_pairs: int, rng: np.random.Generator,
                     positive_fraction: float = 0.5):
    """Random pairs of indices, ``positive_fraction`` of them of the same class.

    Args:
        labels: class of each item, shape ``(N,)`` (every class needs two items or more for
            positives, and at least two classes are needed for negatives).
        num_pairs: how many pairs.
        rng: NumPy generator.
        positive_fraction: share of same-class pairs.

    Returns:
        ``(first, second, same)``: int arrays of indices and float32 labels (1 = same class,
        0 = different), each ``(num_pairs,)``.
    """
    labels = np.asarray(labels).reshape(-1)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"labels must contain at least two classes, got {len(classes)}.")
    if num_pairs < 1 or not 0 <= positive_fraction <= 1:
        raise ValueError(f"num_pairs must be >= 1 and positive_fraction in [0, 1], got "
                         f"num_pairs={num_pairs}, positive_fraction={positive_fraction}.")
    classes = classes[counts >= 2]
    members = {c: np.flatnonzero(labels == c) for c in classes}
    same = (rng.random(num_pairs) < positive_fraction).astype(np.float32)
    first = rng.integers(0, len(labels), num_pairs)
    second = np.empty(num_pairs, np.int64)
    for k in range(num_pairs):
        if same[k]:
            if labels[first[k]] not in members:  # a class with a single item: pick another
                first[k] = rng.choice(members[classes[rng.integers(len(classes))]])
            pool = members[labels[first[k]]]
            choice = rng.choice(pool[pool != first[k]])
        else:
            choice = rng.integers(0, len(labels))
            while labels[choice] == labels[first[k]]:
                choice = rng.integers(0, len(labels))
        second[k] = choice
    return first.astype(np.int64), second, same
