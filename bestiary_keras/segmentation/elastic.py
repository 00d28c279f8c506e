"""Elastic deformations, the U-Net paper's key data augmentation (section 3.1).

"We generate smooth deformations using random displacement vectors on a coarse 3 by 3 grid. The
displacements are sampled from a Gaussian distribution with 10 pixels standard deviation.
Per-pixel displacements are then computed using bicubic interpolation."

``random_displacement`` draws that field, ``warp`` resamples an array with it
(``scipy.ndimage.map_coordinates``: cubic or linear for images, nearest neighbour, ``order=0``,
for labels, so that no label value is invented) and ``elastic_deform`` applies *one* field to
an image and its labels together, the "correspondingly deformed manual labels" of the slide.
(``elasticdeform`` fails to import under NumPy 2 and albumentations is no longer maintained;
SciPy does all of it.) ``ElasticBatches`` feeds ``fit`` with freshly deformed batches.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bestiary_keras.batching import SeededBatches

__all__ = [
    "elastic_deform", "ElasticBatches", "random_displacement", "warp",
]


def random_displacement(shape, *, grid: int = 3, sigma: float = 10.0, rng=None) -> np.ndarray:
    """A smooth random displacement field: Gaussian vectors on a coarse grid, bicubic in between.

    Args:
        shape: (height, width) of the images.
        grid: the coarse grid has ``grid x grid`` points spread over the image (3 in the paper).
        sigma: standard deviation of the displacements in pixels (10 px for the paper's 572 px
            tiles; scale it with the image size).
        rng: a ``numpy.random.Generator`` (or a seed).

    Returns:
        float32 (2, height, width): the displacement (dy, dx) of every pixel.
    """
    if grid < 2:
        raise ValueError(f"grid must be >= 2 points per side, got {grid!r}.")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 pixels, got {sigma!r}.")
    height, width = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(rng)
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid))
    # Pixel (y, x) sits at grid coordinate (y (grid - 1) / (height - 1), ...): corners on corners.
    gy = np.linspace(0, grid - 1, height)
    gx = np.linspace(0, grid - 1, width)
    coords = np.stack(np.meshgrid(gy, gx, indexing="ij"))
    field = [ndimage.map_coordinates(c, coords, order=3, mode="nearest") for c in coarse]
    return np.stack(field).astype(np.float32)


def warp(array, displacement, *, order: int = 1, mode: str = "reflect") -> np.ndarray:
    """Resamples ``array`` at ``(y + dy, x + dx)``: out(y, x) = array(y + dy(y, x), x + dx(y, x)).

    Args:
        array: (H, W) or (H, W, C) values; channels are warped one by one.
        displacement: (2, H, W) field from ``random_displacement``.
        order: spline order; 0 (nearest) for labels, 1 or 3 for images.
        mode: how to fill outside the image (``"reflect"`` mirrors, like the overlap-tile).

    Returns:
        The warped array, same shape and dtype.
    """
    array = np.asarray(array)
    displacement = np.asarray(displacement)
    if displacement.shape != (2,) + array.shape[:2]:
        raise ValueError(f"displacement must have shape (2, {array.shape[0]}, {array.shape[1]}) "
                         f"for an array of shape {array.shape}, got {displacement.shape}.")
    if array.ndim == 3:
        return np.stack([warp(array[..., c], displacement, order=order, mode=mode)
                         for c in range(array.shape[-1])], axis=-1)
    if array.ndim != 2:
        raise ValueError(f"array must be (H, W) or (H, W, C), got shape {array.shape}.")
    yy, xx = np.meshgrid(np.arange(array.shape[0]), np.arange(array.shape[1]), indexing="ij")
    coords = np.stack([yy + displacement[0], xx + displacement[1]])
    source = array.astype(np.float32) if order > 0 else array
    out = ndimage.map_coordinates(source, coords, order=order, mode=mode)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        out = np.rint(out)
    return out.astype(array.dtype)


def elastic_deform(image, *labels, grid: int = 3, sigma: float = 10.0, image_order: int = 3,
                   rng=None):
    """Deforms an image and its label maps with one random smooth field.

    Args:
        image: (H, W) or (H, W, C) image (interpolated with ``image_order``).
        *labels: any number of (H, W) label maps (instances, classes, weight maps of integer
            type), resampled with nearest neighbour so they keep their values; pass float maps
            (e.g. a weight map) through ``warp(..., order=1)`` with the returned field instead.
        grid, sigma, rng: see ``random_displacement``.
        image_order: 3 (bicubic, the paper) or 1.

    Returns:
        ``(deformed_image, *deformed_labels, displacement)``.
    """
    image = np.asarray(image)
    field = random_displacement(image.shape[:2], grid=grid, sigma=sigma, rng=rng)
    out = [warp(image, field, order=image_order)]
    if image_order > 1 and np.issubdtype(out[0].dtype, np.floating):
        out[0] = np.clip(out[0], image.min(), image.max())  # cubic splines overshoot a little
    out += [warp(label, field, order=0) for label in labels]
    return (*out, field)


class ElasticBatches(SeededBatches):
    """Training batches ``(images, labels, weights)`` for a valid U-Net, optionally deformed.

    A ``batching.SeededBatches`` with one pass over the images per epoch
    (``len(images) // batch_size`` steps): every pass visits the images in a new order fixed by
    ``seed``, so two models trained with the same ``seed`` see identical batches. With
    ``augment=True`` every image, its labels and its weight map get a fresh random elastic
    deformation (one field for the three, drawn from the step's generator) before the labels
    and weights are cropped to the network's output size.

    Args:
        images: float32 (N, H, W) or (N, H, W, C).
        labels: int (N, H, W) class labels at the *input* size.
        weights: float32 (N, H, W) weight maps at the input size (``None``: all ones).
        output_size: the network's output size; labels and weights are centre-cropped to it.
        batch_size: images per batch (at most ``N``).
        augment: apply elastic deformations.
        grid, sigma: see ``random_displacement``.
        seed: fixes the order and the deformations.
    """

    def __init__(self, images, labels, weights=None, *, output_size, batch_size=8,
                 augment=False, grid=3, sigma=2.0, seed=0, **kwargs):
        images = np.asarray(images, np.float32)
        images = images[..., None] if images.ndim == 3 else images
        labels = np.asarray(labels)
        weights = (np.ones(labels.shape, np.float32) if weights is None
                   else np.asarray(weights, np.float32))
        if not (len(images) == len(labels) == len(weights)):
            raise ValueError(f"images ({len(images)}), labels ({len(labels)}) and "
                             f"weights ({len(weights)}) must have the same length.")
        if not 1 <= batch_size <= len(images):
            raise ValueError(f"batch_size must be between 1 and the {len(images)} images, got "
                             f"{batch_size!r}.")
        super().__init__(len(images), batch_size=batch_size, steps=len(images) // batch_size,
                         seed=seed, **kwargs)
        self.images, self.labels, self.weights = images, labels, weights
        self.output_size = int(output_size)
        self.augment, self.grid, self.sigma = augment, grid, float(sigma)

    def make_batch(self, indices, rng):
        from bestiary_keras.segmentation.tiling import center_crop

        images, labels, weights = self.images[indices], self.labels[indices], self.weights[indices]
        if self.augment:
            images, labels, weights = images.copy(), labels.copy(), weights.copy()
            for i in range(len(indices)):
                field = random_displacement(images.shape[1:3], grid=self.grid, sigma=self.sigma,
                                            rng=rng)
                images[i] = np.clip(warp(images[i], field, order=3), 0.0, 1.0)
                labels[i] = warp(labels[i], field, order=0)
                weights[i] = warp(weights[i], field, order=1)
        return (images, center_crop(labels, self.output_size),
                center_crop(weights, self.output_size))
