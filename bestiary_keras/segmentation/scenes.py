"""The multi-class scenes of notebooks 09 (SegNet) and 10 (RefineNet), one recipe for both.

The foundation's ``make_scenes`` draws shapes of random colour, stripes and outline on crops of
photos; the class of a pixel is the *shape* of the object it belongs to, so a network must see
the whole object to label a pixel. Four well distinguished shapes on 48 x 48 images keep the
training within the ``ci`` budget; the ``semantic`` maps give 0 = background, k + 1 = shape k.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SCENE_RECIPE", "SEGMENTATION_CLASSES", "segmentation_scenes",
]

SEGMENTATION_CLASSES = ("circle", "square", "triangle", "cross")
"""The shapes of the segmentation scenes (label k + 1 is shape k, 0 is the background)."""

SCENE_RECIPE = dict(classes=SEGMENTATION_CLASSES, min_objects=1, max_objects=3,
                    object_size=(12, 26), max_overlap=0.2)
"""Arguments of ``make_scenes`` shared by notebooks 09 and 10."""


def segmentation_scenes(num_images: int, image_size: int = 48, *, seed: int = 0):
    """Images and class maps for semantic segmentation.

    Args:
        num_images: number of scenes (scene ``i`` does not depend on ``num_images``).
        image_size: height and width.
        seed: the generator's seed.

    Returns:
        ``(images, labels, class_names)``: float32 (N, H, W, 3) in [0, 1], int32 (N, H, W) and
        the names of the labels, ``("background", "circle", ...)``.
    """
    from bestiary_keras.datasets.scenes import make_scenes

    scenes = make_scenes(num_images, image_size, seed=seed, **SCENE_RECIPE)
    images = scenes.images.astype(np.float32) / 255.0
    return images, scenes.semantic.astype(np.int32), ("background",) + tuple(scenes.class_names)
