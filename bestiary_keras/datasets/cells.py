"""Generated microscopy-like cell images for the U-Net notebook (``notebooks/08_unet.ipynb``).

The U-Net paper (Ronneberger et al., 2015) segments cells in light-microscopy images: textured,
*touching* cells whose borders are faint, on an unevenly lit, noisy background. Those images
cannot be downloaded here, so ``make_cells`` draws look-alikes, deterministically and in NumPy:

1. cell centres are placed one by one; most new cells are put right next to an existing one
   (so clusters of touching cells form), the others anywhere in the image;
2. every cell is a wobbly, rotated ellipse ``rho_k(p) = |A_k (p - c_k)| / r_k(theta) <= 1``; a
   pixel covered by several cells goes to the one with the smallest ``rho_k``, which gives
   curved, touching borders as in a tissue;
3. the image: a textured background, per-cell brightness, smooth cytoplasm texture, a nucleus,
   a darker membrane rim of random strength where two cells touch (the only hint of
   their border), an
   optical blur, an uneven illumination field and Gaussian noise.

Labels, as the paper uses them:

- ``instances``: int32 (N, H, W), 0 = background, 1..K the cells of that image;
- ``semantic``: uint8 (N, H, W), 0 = background, 1 = cell, 2 = *border*: the pixels where two
  different cells touch (a pixel with a pixel of another cell among its 8 neighbours). The
  paper's two-class target is ``foreground = semantic == 1``, i.e. the border counts as the
  "separating background" that the weight map emphasises.

Every image ``i`` depends only on ``(seed, i)`` and the keyword arguments, not on
``num_images``: ``make_cells(100)`` is the first 100 images of ``make_cells(600)``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage
from skimage import segmentation

__all__ = [
    "border_class", "CELL_CLASSES", "CellSet", "make_cells",
]

CELL_CLASSES = ("background", "cell", "border")
"""Names of the values of ``CellSet.semantic``."""


@dataclasses.dataclass(frozen=True)
class CellSet:
    """Generated cell images with their labels.

    Attributes:
        images: float32 (N, H, W) grey values in [0, 1].
        instances: int32 (N, H, W), 0 = background, 1..K one label per cell.
        semantic: uint8 (N, H, W), 0 = background, 1 = cell, 2 = border between touching cells.
    """

    images: np.ndarray
    instances: np.ndarray
    semantic: np.ndarray
    class_names: tuple = CELL_CLASSES

    def __len__(self) -> int:
        return len(self.images)

    @property
    def foreground(self) -> np.ndarray:
        """bool (N, H, W): cell pixels, the touching borders excluded (the paper's target)."""
        return self.semantic == 1

    @property
    def num_cells(self) -> np.ndarray:
        """int (N,): cells per image."""
        return self.instances.reshape(len(self), -1).max(axis=1)

    def subset(self, indices) -> "CellSet":
        """The images at ``indices`` (an index array, a slice or a boolean mask)."""
        return CellSet(self.images[indices], self.instances[indices], self.semantic[indices],
                       self.class_names)


def _pair(value, name):
    if np.isscalar(value):
        value = (value, value)
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be a number or a (low, high) pair with low <= high, "
                         f"got {value!r}.")
    return float(value[0]), float(value[1])


def border_class(instances: np.ndarray) -> np.ndarray:
    """Labels of one image as 0 = background, 1 = cell, 2 = border between touching cells.

    A cell pixel is *border* when one of its 8 neighbours belongs to a different cell (not to
    the background), so the border between two touching cells is two pixels wide.

    Args:
        instances: int (H, W) instance labels, 0 = background.

    Returns:
        uint8 (H, W).
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be one (H, W) label image, got shape {instances.shape}.")
    big = np.iinfo(np.int32).max
    footprint = np.ones((3, 3), bool)
    # Largest and smallest *cell* label around each pixel (background ignored in the minimum).
    largest = ndimage.maximum_filter(instances, footprint=footprint, mode="nearest")
    smallest = ndimage.minimum_filter(np.where(instances > 0, instances, big), footprint=footprint,
                                      mode="nearest")
    cell = instances > 0
    touching = cell & ((largest != instances) | (smallest != instances))
    return np.where(touching, 2, cell.astype(np.uint8)).astype(np.uint8)


def _place_cells(rng, size, count, radius, touch_probability):
    """Centres (K, 2) as (y, x) and radii (K,): touching clusters and a few loners."""
    centres, radii = [], []
    for _ in range(50 * count):
        if len(centres) == count:
            break
        r = rng.uniform(*radius)
        if centres and rng.random() < touch_probability:
            j = rng.integers(len(centres))
            angle = rng.uniform(0, 2 * np.pi)
            distance = (radii[j] + r) * rng.uniform(0.7, 0.95)
            c = centres[j] + distance * np.array([np.sin(angle), np.cos(angle)])
        else:
            c = rng.uniform(0, size, 2)
        if not (-0.3 * r <= c[0] < size + 0.3 * r and -0.3 * r <= c[1] < size + 0.3 * r):
            continue
        if any(np.hypot(*(c - c2)) < 0.65 * (r + r2) for c2, r2 in zip(centres, radii)):
            continue
        centres.append(c)
        radii.append(r)
    return np.array(centres, np.float32).reshape(-1, 2), np.array(radii, np.float32)


def _smooth_noise(rng, shape, sigma):
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def _one_image(rng, size, count, radius, touch_probability, noise, illumination):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centres, radii = _place_cells(rng, size, count, radius, touch_probability)
    k = len(centres)
    # Normalised distance rho_k of every pixel to every cell: a rotated ellipse with a wobbly
    # outline r_k(theta) = r_k (1 + sum_m a_m cos(m theta + phi_m)), m = 2, 3, 4.
    rho = np.full((max(k, 1), size, size), np.inf, np.float32)
    for i in range(k):
        # Only a window around the cell is computed (the outline never reaches 1.6 radii).
        reach = int(np.ceil(1.6 * 1.45 * radii[i]))
        y0, y1 = max(int(centres[i, 0]) - reach, 0), min(int(centres[i, 0]) + reach + 1, size)
        x0, x1 = max(int(centres[i, 1]) - reach, 0), min(int(centres[i, 1]) + reach + 1, size)
        dy, dx = yy[y0:y1, x0:x1] - centres[i, 0], xx[y0:y1, x0:x1] - centres[i, 1]
        turn = rng.uniform(0, np.pi)
        aspect = rng.uniform(1.0, 1.45)
        u = (np.cos(turn) * dx + np.sin(turn) * dy) / np.sqrt(aspect)
        v = (-np.sin(turn) * dx + np.cos(turn) * dy) * np.sqrt(aspect)
        theta = np.arctan2(v, u)
        wobble = 1.0 + sum(rng.uniform(0, 0.1) * np.cos(m * theta + rng.uniform(0, 2 * np.pi))
                           for m in (2, 3, 4))
        rho[i, y0:y1, x0:x1] = np.hypot(u, v) / (radii[i] * wobble)
    nearest = rho.argmin(0)
    instances = np.where(rho.min(0) <= 1.0, nearest + 1, 0).astype(np.int32)
    # Renumber the cells that are visible 1..K, keeping the order of their placement (cells
    # whose every pixel lies outside the image or under other cells are dropped).
    instances, lookup, _ = segmentation.relabel_sequential(instances)
    present = np.arange(1, instances.max() + 1)

    # Rendering.
    background = 0.22 + 0.04 * _smooth_noise(rng, (size, size), 3.0)
    image = background.copy()
    inside = instances > 0
    brightness = rng.uniform(0.5, 0.8, len(present) + 1).astype(np.float32)
    rim_strength = rng.uniform(0.3, 0.6, len(present) + 1).astype(np.float32)
    texture = 0.06 * _smooth_noise(rng, (size, size), 1.2)
    # The membrane rim darkens the cells where they touch (the only hint of the border).
    semantic = border_class(instances)
    depth = ndimage.distance_transform_edt(semantic != 2).astype(np.float32)
    cell_value = brightness[instances] * (1.0 + texture)
    # Nucleus: a darker blob half-way between centre and a random point inside the cell.
    centre_y = np.zeros(len(present) + 1, np.float32)
    centre_x = np.zeros(len(present) + 1, np.float32)
    spread = np.ones(len(present) + 1, np.float32)
    for i, label in enumerate(lookup[np.arange(1, k + 1)]):
        offset = rng.uniform(-0.3, 0.3, 2) * radii[i]
        if label > 0:
            centre_y[label], centre_x[label] = centres[i] + offset
            spread[label] = radii[i] * rng.uniform(0.3, 0.45)
    d2 = (yy - centre_y[instances]) ** 2 + (xx - centre_x[instances]) ** 2
    nucleus = np.exp(-d2 / (2 * spread[instances] ** 2)) * inside
    cell_value = cell_value * (1.0 - 0.25 * nucleus)
    rim = np.exp(-(depth**2) / 2.0) * rim_strength[instances]
    cell_value = cell_value * (1.0 - rim)
    image = np.where(inside, cell_value, image)
    image = ndimage.gaussian_filter(image, 0.7)
    # Uneven illumination: a linear ramp plus a broad bright spot, up to +-illumination.
    ramp = rng.uniform(-1, 1) * (yy / size - 0.5) + rng.uniform(-1, 1) * (xx / size - 0.5)
    spot_c = rng.uniform(0, size, 2)
    spot = np.exp(-((yy - spot_c[0]) ** 2 + (xx - spot_c[1]) ** 2) / (2 * (0.4 * size) ** 2))
    field = 1.0 + illumination * (ramp + spot - 0.5)
    image = image * field
    sigma = rng.uniform(*noise)
    image = image + sigma * rng.standard_normal((size, size)).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32), instances, semantic


@functools.lru_cache(maxsize=8)
def _generate(num_images, size, cells, radius, touch_probability, noise, illumination, seed):
    images = np.zeros((num_images, size, size), np.float32)
    instances = np.zeros((num_images, size, size), np.int32)
    semantic = np.zeros((num_images, size, size), np.uint8)
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        count = int(rng.integers(int(cells[0]), int(cells[1]) + 1))
        images[i], instances[i], semantic[i] = _one_image(
            rng, size, count, radius, touch_probability, noise, illumination)
    for array in (images, instances, semantic):
        array.flags.writeable = False
    return CellSet(images, instances, semantic)


def make_cells(
    num_images: int,
    image_size: int = 92,
    *,
    cells=(6, 14),
    radius=(7.0, 12.0),
    touch_probability: float = 0.8,
    noise=(0.02, 0.06),
    illumination: float = 0.3,
    seed: int = 0,
) -> CellSet:
    """Microscopy-like images of touching, textured cells with instance labels.

    Args:
        num_images: how many images.
        image_size: height and width in pixels (92 is the input of a two-pooling valid U-Net).
        cells: (low, high) number of cells placed per image (cells pushed out of the image by
            their neighbours are dropped, so an image may hold fewer).
        radius: (low, high) cell radius in pixels.
        touch_probability: chance that a new cell is placed touching an existing one.
        noise: (low, high) standard deviation of the additive Gaussian noise (grey values 0-1).
        illumination: strength of the uneven illumination (0 = even).
        seed: images depend only on ``seed`` and their index.

    Returns:
        A frozen ``CellSet`` (arrays read-only; results are cached per argument set).
    """
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}.")
    if int(image_size) != image_size or image_size < 16:
        raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}.")
    cells = _pair(cells, "cells")
    if cells[0] < 1:
        raise ValueError(f"cells must be at least 1, got {cells!r}.")
    radius = _pair(radius, "radius")
    if radius[0] < 2 or radius[1] > image_size / 2:
        raise ValueError(f"radius {radius!r} must lie in [2, image_size / 2 = {image_size / 2}].")
    noise = _pair(noise, "noise")
    if not 0.0 <= touch_probability <= 1.0:
        raise ValueError(f"touch_probability must lie in [0, 1], got {touch_probability!r}.")
    if illumination < 0:
        raise ValueError(f"illumination must be >= 0, got {illumination!r}.")
    return _generate(int(num_images), int(image_size), cells, radius, float(touch_probability),
                     noise, float(illumination), int(seed))
