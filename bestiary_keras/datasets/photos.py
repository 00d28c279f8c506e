"""Real photo backgrounds from scikit-image's bundled sample images (no download).

The photos below ship inside the ``scikit-image`` wheel (``skimage/data/*.png|jpg``), so they
load offline. Grey photos are returned as RGB. See ``data/README.md`` for their origin and
licences.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "COLOR_PHOTOS", "GREY_PHOTOS", "load_photo", "load_photos", "PHOTO_NAMES", "random_crop",
]

COLOR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
)
GREY_PHOTOS = ("camera", "brick", "grass", "gravel", "moon", "coins")
PHOTO_NAMES = COLOR_PHOTOS + GREY_PHOTOS
"""The scikit-image sample photos used as backgrounds, all bundled with the package."""

_MAX_SIDE = 512  # larger photos are downscaled once, so crops stay cheap


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """One bundled scikit-image photo as a read-only uint8 RGB array (H, W, 3).

    Args:
        name: one of ``PHOTO_NAMES``.

    Returns:
        uint8 array, at most 512 pixels on its longest side.
    """
    if name not in PHOTO_NAMES:
        raise ValueError(f"Unknown photo {name!r}: expected one of {', '.join(PHOTO_NAMES)}.")
    import cv2
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:  # e.g. bool or float sample images
        image = (np.clip(image.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    scale = _MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image)
    image.setflags(write=False)
    return image


def load_photos(names=PHOTO_NAMES) -> list[np.ndarray]:
    """All photos in ``names`` (see ``load_photo``)."""
    return [load_photo(name) for name in names]


def random_crop(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    names=PHOTO_NAMES,
    scale=(0.12, 0.6),
) -> np.ndarray:
    """A random crop of a random photo, flipped at random, resized to (height, width).

    Args:
        rng: NumPy generator (the only source of randomness).
        height, width: output size in pixels.
        names: photos to draw from.
        scale: range of the crop's shorter side as a fraction of the photo's shorter side.

    Returns:
        float32 RGB array (height, width, 3) in [0, 1].
    """
    import cv2

    photo = load_photo(names[rng.integers(len(names))])
    ph, pw = photo.shape[:2]
    aspect = width / height
    side = rng.uniform(*scale) * min(ph, pw)
    ch, cw = side, side * aspect
    if cw > pw:  # very wide outputs: shrink the crop to fit
        ch, cw = ch * pw / cw, pw
    ch, cw = max(int(round(ch)), 1), max(int(round(cw)), 1)
    y0 = rng.integers(0, ph - ch + 1)
    x0 = rng.integers(0, pw - cw + 1)
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
    interpolation = cv2.INTER_AREA if ch > height else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (width, height), interpolation=interpolation)  # handles the stride
    if flip_x:
        crop = crop[:, ::-1]
    if flip_y:
        crop = crop[::-1]
    return crop.astype(np.float32) / 255.0
