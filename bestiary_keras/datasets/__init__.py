"""Data for every chapter, generated offline, and the loaders of real (TFDS) datasets.

Import from the submodule (``from bestiary_keras.datasets.scenes import make_scenes``):

- ``scenes``: ``make_scenes`` draws labelled shapes and digits on crops of scikit-image's bundled
  photos, deterministically and without any download (chapters 01-07, 09-11); ``SceneSet``,
  ``make_classification_data``.
- ``shapes``: the classes (``SHAPE_CLASSES``, ``DIGIT_CLASSES``, ``ALL_CLASSES``) and their
  rasteriser; ``photos``: the bundled photos used as backgrounds.
- ``cells`` (08): touching cells with instance labels; ``figures`` and ``figure_drawing``
  (12, 13): people with 14 joints; ``video`` (14): ray-cast corridor video with depth and poses.
- ``tfds_data`` (the generic reader, Oxford-IIIT Pet), ``tfds_classification`` (CIFAR-10, MNIST,
  smallNORB), ``tfds_detection`` (PASCAL VOC 2007), ``tfds_instances`` (LVIS), ``tfds_pose``
  (CelebA): real datasets for each notebook's ``DATA = "tfds"`` path, when they have been
  prepared beforehand, never downloaded implicitly.
- ``cache``: where generated data is cached (``cache_dir``: ``data/cache/``) and atomic saves.

See ``data/README.md`` for every dataset's origin, licence and size.
"""

__all__ = [
    "cache", "cells", "figure_drawing", "figures", "photos", "scenes", "shapes",
    "tfds_classification", "tfds_data", "tfds_detection", "tfds_instances", "tfds_pose", "video",
]
