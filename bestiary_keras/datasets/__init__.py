"""Data for every chapter: the offline scene generator and real-data (TFDS) loaders.

``make_scenes`` draws labelled shapes and digits on crops of scikit-image's bundled photos,
deterministically and without any download; ``tfds_data`` loads real datasets (Oxford-IIIT Pet)
when they have been prepared beforehand. See ``data/README.md``.
"""

from bestiary_keras.datasets.photos import PHOTO_NAMES
from bestiary_keras.datasets.scenes import (
    BACKGROUNDS,
    GENERATOR_VERSION,
    SceneSet,
    cache_dir,
    make_classification_data,
    make_scenes,
)
from bestiary_keras.datasets.shapes import ALL_CLASSES, DIGIT_CLASSES, SHAPE_CLASSES
from bestiary_keras.datasets.tfds_data import (
    DatasetNotAvailableError,
    load_pets_localization,
    load_pets_segmentation,
    load_tfds,
)

__all__ = [
    "ALL_CLASSES",
    "BACKGROUNDS",
    "DIGIT_CLASSES",
    "DatasetNotAvailableError",
    "GENERATOR_VERSION",
    "PHOTO_NAMES",
    "SHAPE_CLASSES",
    "SceneSet",
    "cache_dir",
    "load_pets_localization",
    "load_pets_segmentation",
    "load_tfds",
    "make_classification_data",
    "make_scenes",
]
