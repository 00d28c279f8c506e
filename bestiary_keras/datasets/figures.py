"""Deterministic offline articulated figures with keypoints: the pose chapter's data.

``make_figures`` draws stick-and-blob people (a 14-joint skeleton, ``JOINT_NAMES``) on crops of
scikit-image's bundled photos. All randomness of image ``i`` comes from one NumPy generator
seeded by ``(seed, i)``, so image ``i`` is the same whatever ``num_images`` is.

A person, in its own frame (neck at the origin, "up" towards the head):

- the torso is a filled quadrilateral between the shoulders and the hips (the skeleton's torso
  limbs are neck-hip), the head a disc above the neck;
- arms and legs are thick segments with round ends, with random lengths and plausible joint
  angles (arms from 40 degrees across the body to 170 degrees raised, elbows bending by up to
  150 degrees; legs mostly downwards, knees bending by up to 80 degrees);
- every person faces the camera, so the person's right side is on the image's left when
  upright. Limb colours are random per person, and half of the people have the same colour
  on the left and on the right: then only context (where the head and the torso are) tells a
  left wrist from a right one. Most people are upright (rotation within +-40 degrees); 15%
  are rotated by any angle (leaning, upside down);
- each limb chain is drawn behind or in front of the torso at random, so limbs cross the
  torso and each other (self-occlusion).

Keypoints are ``(x, y, v)`` in pixels with the continuous convention of ``make_scenes``: pixel
``(row r, column c)`` covers ``[c, c + 1) x [r, r + 1)``, so its centre is ``(c + 0.5, r + 0.5)``
and ``[0, W] x [0, H]`` is the whole image. ``v`` follows COCO: 0 not labelled (outside the
image, or a padding person), 1 labelled but occluded (the pixel under the joint shows another
part or person), 2 visible. The drawing of one image is ``datasets.figure_drawing``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from bestiary_keras.datasets import figure_drawing
from bestiary_keras.datasets.cache import save_npz_atomic
from bestiary_keras.datasets.cache import cache_dir
from bestiary_keras.datasets.scenes import _pair

__all__ = [
    "FIGURE_GENERATOR_VERSION",
    "FLIP_PAIRS",
    "FigureSet",
    "JOINT_NAMES",
    "LIMBS",
    "OKS_SIGMAS",
    "check_keypoints",
    "flip_keypoints",
    "make_figures",
]

FIGURE_GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes, so old caches are not reused."""

JOINT_NAMES = (
    "head", "neck",
    "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
)  # fmt: skip
"""The 14 joints (LSP-like; the head is the centre of the head disc)."""

LIMBS = (
    (1, 0),                      # neck - head
    (1, 2), (2, 3), (3, 4),      # right arm
    (1, 5), (5, 6), (6, 7),      # left arm
    (1, 8), (8, 9), (9, 10),     # torso (neck - right hip), right leg
    (1, 11), (11, 12), (12, 13),  # torso (neck - left hip), left leg
)  # fmt: skip
"""The 13 ``(parent, child)`` joint index pairs of the skeleton, a tree rooted at the neck."""

FLIP_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13))
"""Right/left joint index pairs, swapped by a horizontal flip."""

OKS_SIGMAS = np.array(
    [0.079, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062,
     0.107, 0.087, 0.089, 0.107, 0.087, 0.089], np.float32,
)  # fmt: skip
"""Per-joint OKS sigmas: COCO's values (shoulders 0.079, elbows 0.072, wrists 0.062, hips
0.107, knees 0.087, ankles 0.089); our head and neck have no COCO counterpart and take the
shoulders' 0.079 (COCO's face points are 0.025-0.035, too strict for a head centre)."""


@dataclasses.dataclass(frozen=True)
class FigureSet:
    """A batch of generated figures (see ``make_figures``).

    Attributes:
        images: uint8 (N, H, W, 3).
        keypoints: float32 (N, P, J, 3), ``(x, y, v)`` in pixels (pixel centres at +0.5),
            ``v`` = 0 not labelled, 1 occluded, 2 visible; zeros for padding people.
        num_people: int32 (N,).
        person_masks: bool (N, P, H, W), the visible pixels of each person.
        boxes: float32 (N, P, 4), ``[x_min, y_min, x_max, y_max]`` tight around the visible
            mask (exclusive end, as in ``make_scenes``); zeros for padding or hidden people.
        joint_names, limbs: the skeleton (``JOINT_NAMES``, ``LIMBS``).
    """

    images: np.ndarray
    keypoints: np.ndarray
    num_people: np.ndarray
    person_masks: np.ndarray
    boxes: np.ndarray
    joint_names: tuple = JOINT_NAMES
    limbs: tuple = LIMBS

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def subset(self, indices) -> "FigureSet":
        """The images at ``indices`` (ints, a slice or a boolean mask) as a new FigureSet."""
        pick = indices if isinstance(indices, slice) else np.asarray(indices)
        return FigureSet(self.images[pick], self.keypoints[pick], self.num_people[pick],
                         self.person_masks[pick], self.boxes[pick], self.joint_names, self.limbs)


# ----------------------------------------------------------------------------- validation
def check_keypoints(keypoints, image_size=None, *, num_joints: int | None = len(JOINT_NAMES),
                    name: str = "keypoints") -> np.ndarray:
    """Validates ``(..., J, 3)`` keypoints ``(x, y, v)`` and returns them as float32.

    Raises a ``ValueError`` when the last axis is not 3, when ``J`` is not ``num_joints``
    (``None`` accepts any), when ``v`` is not 0, 1 or 2, or (given ``image_size``, an int or
    ``(height, width)``) when a labelled keypoint (``v > 0``) lies outside ``[0, W] x [0, H]``.
    """
    array = np.asarray(keypoints, np.float32)
    if array.ndim < 2 or array.shape[-1] != 3:
        raise ValueError(
            f"{name} must have shape (..., num_joints, 3) holding (x, y, v), got shape "
            f"{array.shape}; add a visibility column v (2 = visible) if you only have (x, y)."
        )
    if num_joints is not None and array.shape[-2] != num_joints:
        raise ValueError(
            f"{name} has {array.shape[-2]} joints (shape {array.shape}), the skeleton has "
            f"{num_joints} ({', '.join(JOINT_NAMES) if num_joints == len(JOINT_NAMES) else ''}); "
            "pass keypoints of the same skeleton or set num_joints."
        )
    v = array[..., 2]
    if not np.isin(v, (0, 1, 2)).all():
        raise ValueError(f"{name}[..., 2] (visibility) must be 0, 1 or 2, got values "
                         f"{np.unique(v)[:6].tolist()}.")
    if image_size is not None:
        height, width = _pair(image_size, "image_size")
        labelled = v > 0
        x, y = array[..., 0], array[..., 1]
        outside = labelled & ((x < 0) | (x > width) | (y < 0) | (y > height))
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(
                f"{name}{list(where)} = {array[where][:2].tolist()} is labelled (v > 0) but "
                f"outside the {height}x{width} image [0, {width}] x [0, {height}]; set its v to "
                "0 (not labelled) or clip it."
            )
    return array


def flip_keypoints(keypoints, image_width: int) -> np.ndarray:
    """Keypoints of the horizontally flipped image: ``x -> W - x`` and left/right swapped.

    Args:
        keypoints: (..., 14, 3) ``(x, y, v)`` in pixels.
        image_width: W in pixels.

    Returns:
        float32 array of the same shape (unlabelled joints keep zeros).
    """
    flipped = check_keypoints(keypoints, (1 << 30, image_width)).copy()
    labelled = flipped[..., 2] > 0
    flipped[..., 0] = np.where(labelled, image_width - flipped[..., 0], 0.0)
    right, left = (list(side) for side in zip(*FLIP_PAIRS))
    flipped[..., right + left, :] = flipped[..., left + right, :]
    return flipped


def _generate(num_images, height, width, people, size_range, allow_cut, seed):
    max_people = people[1]
    images = np.zeros((num_images, height, width, 3), np.uint8)
    keypoints = np.zeros((num_images, max_people, 14, 3), np.float32)
    counts = np.zeros(num_images, np.int32)
    masks = np.zeros((num_images, max_people, height, width), bool)
    boxes = np.zeros((num_images, max_people, 4), np.float32)
    for i in range(num_images):
        rng = np.random.default_rng([int(seed), i])
        count = int(rng.integers(people[0], people[1] + 1))
        image, kp, mk = figure_drawing.draw_people(rng, height, width, count, size_range, allow_cut)
        images[i] = np.round(image * 255.0).astype(np.uint8)
        keypoints[i, :count], masks[i, :count], counts[i] = kp, mk, count
        for p in range(count):
            rows, cols = np.flatnonzero(mk[p].any(1)), np.flatnonzero(mk[p].any(0))
            if len(rows):
                boxes[i, p] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return FigureSet(images, keypoints, counts, masks, boxes)


# ----------------------------------------------------------------------------- cache
def _cache_path(arguments):
    text = json.dumps({"figure_generator_version": FIGURE_GENERATOR_VERSION, **arguments},
                      sort_keys=True)
    return cache_dir() / f"figures_{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"


def _load_cached(path: Path):
    try:
        with np.load(path, allow_pickle=False) as data:
            width = data["images"].shape[2]
            masks = np.unpackbits(data["masks_packed"], axis=-1, count=width).astype(bool)
            return FigureSet(data["images"], data["keypoints"], data["num_people"], masks,
                             data["boxes"])
    except Exception:  # a corrupt or partial file: regenerate
        return None


def _save_cached(path: Path, figures: FigureSet) -> None:
    # a cache that cannot be written is not an error: the figures were generated anyway
    save_npz_atomic(path, images=figures.images, keypoints=figures.keypoints,
                    num_people=figures.num_people, boxes=figures.boxes,
                    masks_packed=np.packbits(figures.person_masks, axis=-1))


# ----------------------------------------------------------------------------- public API
def make_figures(num_images: int, image_size=64, *, people=(1, 1), figure_size=None,
                 allow_cut: bool | None = None, seed: int = 0, cache: bool = True) -> FigureSet:
    """Generates (or loads from the cache) images of articulated figures with keypoints.

    Args:
        num_images: number of images.
        image_size: an int (square) or ``(height, width)``, at least 24 pixels per side.
        people: ``(min, max)`` people per image (an int for a fixed number); later people may
            hide earlier ones.
        figure_size: ``(low, high)``, the larger side of a figure's extent as a fraction of the
            image's smaller side; default ``(0.55, 0.9)`` for one person, ``(0.35, 0.7)``
            for several.
        allow_cut: let figures stick out of the image (at least 5 joints stay inside);
            default True when ``people`` allows more than one person.
        seed: the seed; image ``i`` depends only on ``seed``, ``i`` and the other arguments.
        cache: load from / save to ``cache_dir()`` (keyed by a hash of the arguments).

    Returns:
        A ``FigureSet``.
    """
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive int, got {num_images!r}.")
    height, width = _pair(image_size, "image_size")
    if min(height, width) < 24:
        raise ValueError(f"image_size must be at least 24 pixels per side (a figure needs "
                         f"room for 14 joints), got {image_size!r}.")
    lo_people, hi_people = _pair(people, "people")
    if not 1 <= lo_people <= hi_people <= 10:
        raise ValueError(f"people must be (min, max) with 1 <= min <= max <= 10, got {people!r}.")
    if figure_size is None:
        figure_size = (0.55, 0.9) if hi_people == 1 else (0.35, 0.7)
    try:
        size_range = (float(figure_size[0]), float(figure_size[1]))
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"figure_size must be a pair (low, high), got {figure_size!r}.") from None
    if not 0.2 <= size_range[0] <= size_range[1] <= 0.95:
        raise ValueError(f"figure_size must satisfy 0.2 <= low <= high <= 0.95 (fractions of "
                         f"the image side), got {figure_size!r}.")
    if allow_cut is None:
        allow_cut = hi_people > 1
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}.")
    arguments = dict(num_images=int(num_images), image_size=[height, width],
                     people=[lo_people, hi_people], figure_size=list(size_range),
                     allow_cut=bool(allow_cut), seed=int(seed))
    path = _cache_path(arguments) if cache else None
    if path is not None and path.exists():
        figures = _load_cached(path)
        if figures is not None:
            return figures
    figures = _generate(int(num_images), height, width, (lo_people, hi_people), size_range,
                        bool(allow_cut), int(seed))
    if path is not None:
        _save_cached(path, figures)
    return figures
