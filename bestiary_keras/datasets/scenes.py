"""Deterministic offline scenes: labelled objects on real photo crops, with exact ground truth.

``make_scenes`` is the data source shared by every chapter (classification, localisation,
detection, segmentation). Each scene is built as follows (all randomness from one NumPy
generator seeded by ``(seed, image index)``, so image ``i`` is the same whatever
``num_images`` is):

1. background: a random crop (random scale, random flips) of one of scikit-image's bundled
   photos (``background="photo"``), a flat random colour (``"plain"``) or smooth coloured noise
   (``"noise"``); photo and noise backgrounds have their contrast lowered to 70% so that
   objects stand out to a person;
2. ``clutter`` unlabelled distractors (strokes and blobs in random colours), under the objects;
3. ``min_objects``..``max_objects`` objects, each of a class drawn uniformly from ``classes``,
   longest side uniform in ``object_size``, random rotation (digits only tilt by up to 15
   degrees), random colour and shading. A placement is accepted when no already placed object
   keeps less than ``1 - max_overlap`` of its own area visible; after 30 refused positions
   (a new size every 10) the object is dropped; a scene that cannot reach ``min_objects`` is
   started again.

Ground truth describes what is visible: ``masks`` are the visible pixels of each object
(coverage >= 0.5, outline included), ``boxes`` are tight around them in pixels as
``[x_min, y_min, x_max, y_max]`` with the exclusive-end convention (``x_max`` = last column
+ 1, so ``x_max - x_min`` is the width in pixels), ``semantic`` is 0 for background and
``k + 1`` where object class ``k`` is visible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from bestiary_keras.datasets import photos as _photos
from bestiary_keras.datasets import shapes as _shapes
from bestiary_keras.datasets.cache import cache_dir, save_npz_atomic
from bestiary_keras.datasets.shapes import ALL_CLASSES, SHAPE_CLASSES

__all__ = [
    "BACKGROUNDS", "GENERATOR_VERSION", "make_classification_data",
    "make_scenes", "SceneSet",
]

GENERATOR_VERSION = 4
"""Bumped whenever the generator's output changes, so old caches are not reused."""

BACKGROUNDS = ("photo", "plain", "noise")
_PLACEMENT_TRIES = 30
_SCENE_RESTARTS = 20
_BACKGROUND_CONTRAST = 0.7


@dataclasses.dataclass(frozen=True)
class SceneSet:
    """A batch of generated scenes (see ``make_scenes``).

    Attributes:
        images: uint8 (N, H, W, 3).
        labels: int32 (N, M), class index into ``class_names``, -1 for padding.
        boxes: float32 (N, M, 4), ``[x_min, y_min, x_max, y_max]`` in pixels, tight around the
            visible mask, exclusive end (``x_max`` = last column + 1); zeros for padding.
        masks: bool (N, M, H, W), visible pixels of each object (all False for padding).
        semantic: uint8 (N, H, W), 0 = background, ``k + 1`` = class ``k``.
        class_names: tuple of str.
        areas: int32 (N, M), each object's full (unoccluded) area in pixels, 0 for padding;
            ``masks.sum((2, 3)) / areas`` is the visible fraction.

    Objects are stored in placement order (a later object may hide part of an earlier one).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray
    class_names: tuple
    areas: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_objects(self) -> np.ndarray:
        """int32 (N,): how many objects each scene holds."""
        return (self.labels >= 0).sum(axis=1).astype(np.int32)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices) -> "SceneSet":
        """The scenes at ``indices`` (an int array, a slice or a boolean mask) as a new SceneSet."""
        if isinstance(indices, slice):
            pick = indices
        else:
            pick = np.asarray(indices)
            if pick.dtype != bool:
                pick = pick.astype(np.int64).reshape(-1)
        return SceneSet(
            images=self.images[pick],
            labels=self.labels[pick],
            boxes=self.boxes[pick],
            masks=self.masks[pick],
            semantic=self.semantic[pick],
            class_names=self.class_names,
            areas=None if self.areas is None else self.areas[pick],
        )


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.") from None


def _check_arguments(num_images, image_size, classes, min_objects, max_objects, object_size,
                     max_overlap, clutter, background, seed):
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive int, got {num_images!r}.")
    height, width = _pair(image_size, "image_size")
    if height < 8 or width < 8:
        raise ValueError(f"image_size must be at least 8 pixels per side, got {image_size!r}.")
    if isinstance(classes, str):
        raise ValueError(
            f"classes must be a sequence of class names, got the string {classes!r}; "
            f"write classes=({classes!r},)."
        )
    classes = tuple(classes)
    if not classes:
        raise ValueError("classes is empty: name at least one class, e.g. classes=SHAPE_CLASSES.")
    unknown = [c for c in classes if c not in ALL_CLASSES]
    if unknown:
        raise ValueError(
            f"Unknown class name(s) {unknown} in classes: known classes are "
            f"{', '.join(ALL_CLASSES)}."
        )
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes contains duplicates: {classes}.")
    if not (isinstance(min_objects, (int, np.integer)) and min_objects >= 0):
        raise ValueError(f"min_objects must be an int >= 0, got {min_objects!r}.")
    if not (isinstance(max_objects, (int, np.integer)) and max_objects >= 1):
        raise ValueError(f"max_objects must be an int >= 1, got {max_objects!r}.")
    if min_objects > max_objects:
        raise ValueError(
            f"min_objects={min_objects} is larger than max_objects={max_objects}: "
            "raise max_objects or lower min_objects."
        )
    lo, hi = _pair(object_size, "object_size")
    if lo < 4 or lo > hi:
        raise ValueError(
            f"object_size={object_size!r} must be an int >= 4 or a pair (low, high) with "
            "4 <= low <= high (pixels, longest side)."
        )
    if hi > min(height, width) - 4:
        raise ValueError(
            f"object_size={object_size!r} does not fit an image of {height}x{width}: the "
            f"largest object must be at most {min(height, width) - 4} pixels (image side - 4); "
            "lower object_size or raise image_size."
        )
    if not 0.0 <= float(max_overlap) < 1.0:
        raise ValueError(
            f"max_overlap must be in [0, 1) (the fraction of an object that later objects may "
            f"hide; 0 = no occlusion), got {max_overlap!r}."
        )
    if not (isinstance(clutter, (int, np.integer)) and clutter >= 0):
        raise ValueError(f"clutter must be an int >= 0 (number of distractors), got {clutter!r}.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    if background not in BACKGROUNDS:
        raise ValueError(
            f"Unknown background {background!r}: expected one of {', '.join(BACKGROUNDS)}."
        )
    return int(num_images), (height, width), classes, (lo, hi)


# ----------------------------------------------------------------------------- one scene
def _background(rng, height, width, background):
    import cv2

    if background == "plain":
        colour = _shapes.random_colour(rng) * rng.uniform(0.3, 1.0)
        return np.full((height, width, 3), colour, np.float32)
    if background == "noise":
        cells = rng.integers(2, 9)
        low = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        image = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
        image = image + rng.normal(0, 0.08, image.shape).astype(np.float32)
    else:
        image = _photos.random_crop(rng, height, width)
    mean = np.array(cv2.mean(image)[:3], np.float32)  # (much faster than image.mean)
    return np.clip(mean + _BACKGROUND_CONTRAST * (image - mean), 0.0, 1.0)


def _draw_clutter(rng, image, count):
    """Unlabelled distractors: short strokes and small blobs, half of them with a dark outline
    like the objects' (so an outline alone does not mean "object")."""
    import cv2

    height, width = image.shape[:2]
    scale = 16  # fixed-point sub-pixel coordinates for cv2 (shift=4)
    for _ in range(count):
        base = _shapes.random_colour(rng) * rng.uniform(0.3, 1.0)
        colour = tuple(float(v) for v in base)
        outline = tuple(float(v) for v in base * rng.uniform(0.15, 0.35))
        with_outline = rng.random() < 0.5
        if rng.random() < 0.5:  # a stroke: a short random polyline
            n = rng.integers(2, 5)
            start = rng.uniform([0, 0], [width, height])
            steps = rng.normal(0, min(height, width) / 8, (n - 1, 2))
            pts = np.concatenate([start[None], start + np.cumsum(steps, 0)])
            pts = [np.round(pts * scale).astype(np.int32).reshape(-1, 1, 2)]
            thickness = int(rng.integers(1, 3))
            if with_outline:
                cv2.polylines(image, pts, False, outline, thickness + 2, cv2.LINE_AA, 4)
            cv2.polylines(image, pts, False, colour, thickness, cv2.LINE_AA, 4)
        else:  # a blob: a small filled ellipse
            centre = tuple(int(v) for v in np.round(rng.uniform([0, 0], [width, height]) * scale))
            axes = rng.uniform(1.5, min(height, width) / 12, 2)
            angle = float(rng.uniform(0, 180))
            if with_outline:
                big = tuple(int(v) for v in np.round((axes + 1) * scale))
                cv2.ellipse(image, centre, big, angle, 0, 360, outline, -1, cv2.LINE_AA, 4)
            axes = tuple(int(v) for v in np.round(axes * scale))
            cv2.ellipse(image, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA, 4)
    return image


def _one_scene(rng, height, width, class_ids, class_names, min_objects, max_objects,
               size_range, max_overlap, clutter, background):
    """Returns (image float32, labels list, visible masks list, full areas list)."""
    for _ in range(_SCENE_RESTARTS):
        image = np.array(_background(rng, height, width, background), np.float32)
        if clutter:
            image = _draw_clutter(rng, image, clutter)
        wanted = int(rng.integers(min_objects, max_objects + 1))
        labels, visible, areas = [], [], []
        for _obj in range(wanted):
            cls = int(class_ids[rng.integers(len(class_ids))])
            for attempt in range(_PLACEMENT_TRIES):
                if attempt % 10 == 0:
                    size = int(rng.integers(size_range[0], size_range[1] + 1))
                    alpha, rgb = _shapes.render_object(rng, class_names[cls], size)
                    mask = alpha >= 0.5
                    ph, pw = alpha.shape
                    # the patch may stick out of the image by its empty margin, never more
                    # (object_size <= image side - 4 guarantees that the mask fits)
                    ys, xs = np.nonzero(mask)
                    ymin, ymax, xmin, xmax = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
                y0 = int(rng.integers(-ymin, height - ymax + 1))
                x0 = int(rng.integers(-xmin, width - xmax + 1))
                # the window of the image covered by the patch, and of the patch in the image
                iy0, iy1 = max(y0, 0), min(y0 + ph, height)
                ix0, ix1 = max(x0, 0), min(x0 + pw, width)
                py0, px0 = iy0 - y0, ix0 - x0
                window = mask[py0 : py0 + iy1 - iy0, px0 : px0 + ix1 - ix0]
                # every earlier object must keep >= (1 - max_overlap) of its own area visible
                ok = True
                for vis, area in zip(visible, areas):
                    hidden = np.count_nonzero(vis[iy0:iy1, ix0:ix1] & window)
                    if hidden and np.count_nonzero(vis) - hidden < (1.0 - max_overlap) * area:
                        ok = False
                        break
                if not ok:
                    continue
                a = alpha[py0 : py0 + iy1 - iy0, px0 : px0 + ix1 - ix0, None]
                c = rgb[py0 : py0 + iy1 - iy0, px0 : px0 + ix1 - ix0]
                region = image[iy0:iy1, ix0:ix1]
                image[iy0:iy1, ix0:ix1] = region * (1.0 - a) + c * a
                for vis in visible:
                    vis[iy0:iy1, ix0:ix1] &= ~window
                full = np.zeros((height, width), bool)
                full[iy0:iy1, ix0:ix1] = window
                labels.append(cls)
                visible.append(full)
                areas.append(int(np.count_nonzero(mask)))
                break
            # an object that found no place is dropped; the scene restarts below if that
            # leaves fewer than min_objects
        if len(labels) >= min_objects:
            return image, labels, visible, areas
    raise ValueError(
        f"Could not place {min_objects} objects of size {size_range} in a {height}x{width} "
        f"image with max_overlap={max_overlap} after {_SCENE_RESTARTS} tries: lower "
        "min_objects or object_size, or raise max_overlap or image_size."
    )


def _generate(num_images, height, width, classes, min_objects, max_objects, size_range,
              max_overlap, clutter, background, seed):
    class_ids = np.arange(len(classes))
    images = np.zeros((num_images, height, width, 3), np.uint8)
    labels = np.full((num_images, max_objects), -1, np.int32)
    boxes = np.zeros((num_images, max_objects, 4), np.float32)
    masks = np.zeros((num_images, max_objects, height, width), bool)
    semantic = np.zeros((num_images, height, width), np.uint8)
    areas = np.zeros((num_images, max_objects), np.int32)
    for i in range(num_images):
        rng = np.random.default_rng([int(seed), i])
        image, objs, vis, full_areas = _one_scene(
            rng, height, width, class_ids, classes, min_objects, max_objects, size_range,
            max_overlap, clutter, background,
        )
        images[i] = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        for j, (cls, m) in enumerate(zip(objs, vis)):
            labels[i, j] = cls
            masks[i, j] = m
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            boxes[i, j] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
            semantic[i][m] = cls + 1
            areas[i, j] = full_areas[j]
    return SceneSet(images, labels, boxes, masks, semantic, tuple(classes), areas)


# ----------------------------------------------------------------------------- cache
def _cache_key(arguments: dict) -> str:
    text = json.dumps({"generator_version": GENERATOR_VERSION, **arguments}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _load_cached(path: Path):
    try:
        with np.load(path, allow_pickle=False) as data:
            width = data["images"].shape[2]
            masks = np.unpackbits(data["masks_packed"], axis=-1, count=width).astype(bool)
            return SceneSet(
                images=data["images"], labels=data["labels"], boxes=data["boxes"],
                masks=masks, semantic=data["semantic"],
                class_names=tuple(str(c) for c in data["class_names"]),
                areas=data["areas"],
            )
    except Exception:  # a corrupt or partial file: regenerate
        return None


def _save_cached(path: Path, scenes: SceneSet) -> None:
    # A cache that cannot be written (read-only, disk full) is not an error: the scenes were
    # generated anyway. save_npz_atomic leaves no temporary file behind, whatever happens.
    save_npz_atomic(
        path, images=scenes.images, labels=scenes.labels, boxes=scenes.boxes,
        masks_packed=np.packbits(scenes.masks, axis=-1), semantic=scenes.semantic,
        class_names=np.array(scenes.class_names), areas=scenes.areas,
    )


# ----------------------------------------------------------------------------- public API
def make_scenes(
    num_images: int,
    image_size=64,
    *,
    classes=SHAPE_CLASSES,
    min_objects: int = 1,
    max_objects: int = 1,
    object_size=(12, 32),
    max_overlap: float = 0.0,
    clutter: int = 0,
    background: str = "photo",
    seed: int = 0,
    cache: bool = True,
) -> SceneSet:
    """Generates (or loads from the cache) labelled scenes of shapes and digits.

    Args:
        num_images: number of scenes.
        image_size: an int (square) or ``(height, width)`` in pixels.
        classes: class names from ``SHAPE_CLASSES`` and ``DIGIT_CLASSES`` (``"digit_0"`` to
            ``"digit_9"``); their order defines the label indices.
        min_objects, max_objects: objects per scene, drawn uniformly in this range.
        object_size: longest side of an object in pixels, an int or a ``(low, high)`` range.
        max_overlap: the largest fraction of an object's own area that later objects may hide
            (0 = no occlusion, must be < 1).
        clutter: number of unlabelled distractors (strokes, blobs) drawn under the objects.
        background: ``"photo"`` (crops of scikit-image sample photos), ``"plain"`` or
            ``"noise"``.
        seed: the seed; the same arguments and seed give identical arrays, and scene ``i``
            does not depend on ``num_images``.
        cache: load from / save to ``cache_dir()`` (a compressed ``.npz`` keyed by a hash of
            all arguments and ``GENERATOR_VERSION``).

    Returns:
        A ``SceneSet`` (images uint8, labels int32 with -1 padding, boxes float32 xyxy pixels
        with exclusive end, visible masks bool, semantic uint8, class_names).
    """
    num_images, (height, width), classes, size_range = _check_arguments(
        num_images, image_size, classes, min_objects, max_objects, object_size, max_overlap,
        clutter, background, seed,
    )
    arguments = dict(
        num_images=num_images, image_size=[height, width], classes=list(classes),
        min_objects=int(min_objects), max_objects=int(max_objects),
        object_size=list(size_range), max_overlap=float(max_overlap), clutter=int(clutter),
        background=background, seed=int(seed),
    )
    path = cache_dir() / f"scenes_{_cache_key(arguments)}.npz" if cache else None
    if path is not None and path.exists():
        scenes = _load_cached(path)
        if scenes is not None:
            return scenes
    scenes = _generate(num_images, height, width, classes, int(min_objects), int(max_objects),
                       size_range, float(max_overlap), int(clutter), background, int(seed))
    if path is not None:
        _save_cached(path, scenes)
    return scenes


def make_classification_data(
    num_images: int,
    image_size=64,
    *,
    classes=SHAPE_CLASSES,
    object_size=(12, 32),
    clutter: int = 0,
    background: str = "photo",
    seed: int = 0,
    cache: bool = True,
):
    """Single-object scenes for classification and localisation (VGG, ResNet chapters).

    Returns:
        ``(images, labels, boxes)``: float32 (N, H, W, 3) in [0, 1], int32 (N,) and float32
        (N, 4) boxes ``[x_min, y_min, x_max, y_max]`` in pixels (exclusive end).
    """
    scenes = make_scenes(
        num_images, image_size, classes=classes, min_objects=1, max_objects=1,
        object_size=object_size, clutter=clutter, background=background, seed=seed,
        cache=cache,
    )
    images = scenes.images.astype(np.float32) / 255.0
    return images, scenes.labels[:, 0].copy(), scenes.boxes[:, 0].copy()
