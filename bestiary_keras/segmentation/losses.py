"""The U-Net loss: pixel-wise soft-max cross-entropy weighted by a map that favours borders.

Ronneberger et al. (2015), section 3: the energy is a weighted cross-entropy over the pixels,

    E = - sum_x w(x) log p_{l(x)}(x),

with the weight map (their equation 2)

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2)),

where ``w_c`` balances the class frequencies, ``d1`` is the distance to the border of the
nearest cell and ``d2`` the distance to the border of the second nearest cell; the paper uses
``w0 = 10`` and ``sigma ~ 5`` pixels. The second term is large only in the narrow background gaps
between touching cells, the pixels that the network must get right to keep cells apart.

In Keras the map is handed to ``fit`` as a per-pixel ``sample_weight`` next to the labels, with
the plain ``SparseCategoricalCrossentropy`` loss (its reduction averages the weighted terms).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from scipy import ndimage

__all__ = [
    "border_weight_term", "class_balance_map", "median_frequency_weights", "trimap_targets",
    "unet_weight_map", "weighted_pixel_crossentropy",
]


def class_balance_map(labels, num_classes: int | None = None, frequencies=None) -> np.ndarray:
    """``w_c(x) = 1 / (K f_{l(x)})``: every class gets the same total weight.

    Args:
        labels: int array of class labels (any shape).
        num_classes: K; defaults to ``labels.max() + 1``.
        frequencies: (K,) class frequencies to use (e.g. of the whole training set); computed
            from ``labels`` when ``None``. A class with frequency 0 gets weight 0.

    Returns:
        float32 array of the shape of ``labels``; its mean is 1 when ``frequencies`` are those of
        ``labels`` and every class occurs.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("labels is empty; class_balance_map needs at least one pixel.")
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got a minimum of {labels.min()}.")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if frequencies is None:
        frequencies = np.bincount(labels.ravel().astype(np.int64), minlength=num_classes)
        frequencies = frequencies / labels.size
    frequencies = np.asarray(frequencies, np.float64)
    if frequencies.shape != (num_classes,):
        raise ValueError(f"frequencies must have shape ({num_classes},), got {frequencies.shape}.")
    with np.errstate(divide="ignore"):
        weights = np.where(frequencies > 0, 1.0 / (num_classes * frequencies), 0.0)
    return weights[labels].astype(np.float32)


def border_weight_term(instances, *, w0: float = 10.0, sigma: float = 5.0,
                       margin: float | None = None) -> np.ndarray:
    """``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on the background pixels of one image.

    ``d1`` and ``d2`` are the Euclidean distances from a background pixel to the nearest and the
    second nearest cell (distance transforms, ``scipy.ndimage.distance_transform_edt``); cell
    pixels get 0 (as in the paper's figure 3d, where the weight is high in the gaps). An image with
    fewer than two cells gets 0 everywhere.

    Args:
        instances: int (H, W) instance labels, 0 = background (the gaps between touching cells
            must be background, e.g. ``instances * (semantic == 1)`` for ``make_cells``).
        w0, sigma: the paper's constants (10 and 5 pixels at the paper's scale).
        margin: distances are computed only within ``margin`` pixels of each cell, which changes
            the result by less than ``w0 * exp(-margin**2 / (2 sigma**2))``; default ``6 sigma``.

    Returns:
        float32 (H, W).
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be one (H, W) label image, got shape {instances.shape}.")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}.")
    margin = 6.0 * sigma if margin is None else float(margin)
    labels = np.unique(instances)
    labels = labels[labels > 0]
    height, width = instances.shape
    if len(labels) < 2:
        return np.zeros((height, width), np.float32)
    reach = int(math.ceil(margin)) + 1
    distances = np.full((len(labels), height, width), np.inf, np.float32)
    boxes = ndimage.find_objects(instances)
    for i, label in enumerate(labels):
        rows, cols = boxes[label - 1]
        y0, y1 = max(rows.start - reach, 0), min(rows.stop + reach, height)
        x0, x1 = max(cols.start - reach, 0), min(cols.stop + reach, width)
        window = instances[y0:y1, x0:x1] != label
        distances[i, y0:y1, x0:x1] = ndimage.distance_transform_edt(window)
    two_nearest = np.partition(distances, 1, axis=0)[:2]
    total = two_nearest[0] + two_nearest[1]
    with np.errstate(over="ignore", invalid="ignore"):
        term = w0 * np.exp(-(total.astype(np.float64) ** 2) / (2.0 * sigma**2))
    term = np.where(np.isfinite(total) & (instances == 0), term, 0.0)
    return term.astype(np.float32)


def unet_weight_map(instances, *, w0: float = 10.0, sigma: float = 5.0, frequencies=None,
                    margin: float | None = None) -> np.ndarray:
    """The paper's weight map ``w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` for a batch.

    Args:
        instances: int (H, W) or (N, H, W) instance labels, 0 = background (separating gaps
            between touching cells are background).
        w0, sigma: the paper's constants (``sigma`` in pixels of *these* images).
        frequencies: (2,) background/foreground frequencies for ``w_c``; by default those of
            ``instances`` (the whole batch).
        margin: see ``border_weight_term``.

    Returns:
        float32 of the shape of ``instances``.
    """
    instances = np.asarray(instances)
    single = instances.ndim == 2
    if single:
        instances = instances[None]
    if instances.ndim != 3:
        raise ValueError(f"instances must be (H, W) or (N, H, W), got shape {instances.shape}.")
    weights = class_balance_map((instances > 0).astype(np.int64), 2, frequencies)
    for i in range(len(instances)):
        weights[i] += border_weight_term(instances[i], w0=w0, sigma=sigma, margin=margin)
    return weights[0] if single else weights


def weighted_pixel_crossentropy(labels, probabilities, weights=None):
    """``E = sum_x w(x) (-log p_{l(x)}(x)) / #pixels``: the U-Net energy, averaged as Keras does.

    The same number as ``keras.losses.SparseCategoricalCrossentropy()(labels, probabilities,
    sample_weight=weights)``; written out for the worked example of the notebook.

    Args:
        labels: int (..., H, W) class labels.
        probabilities: float (..., H, W, K) soft-max outputs.
        weights: float (..., H, W) weight map; ``None`` means 1 everywhere.

    Returns:
        A scalar tensor.
    """
    ops = keras.ops
    labels = ops.convert_to_tensor(labels, "int32")
    probabilities = ops.convert_to_tensor(probabilities, "float32")
    picked = ops.take_along_axis(probabilities, ops.expand_dims(labels, -1), axis=-1)[..., 0]
    losses = -ops.log(ops.clip(picked, 1e-7, 1.0))
    if weights is not None:
        losses = losses * ops.convert_to_tensor(weights, "float32")
    return ops.mean(losses)


def trimap_targets(masks, *, border_weight: float = 0.0):
    """Two-class U-Net targets from trimaps (0 = background, 1 = object, 2 = border).

    The Oxford-IIIT Pet trimaps (``bestiary_keras.datasets.tfds_data.load_pets_segmentation``)
    mark a ring of "not classified" pixels around each pet; like the cells' border class it is
    trained as background, but by default with weight 0, so the network is not told either way.

    Args:
        masks: uint8 (..., H, W) with values 0, 1, 2.
        border_weight: the weight of the border pixels.

    Returns:
        ``(labels, weights)``: int32 labels (1 = object) and float32 per-pixel weights.
    """
    masks = np.asarray(masks)
    if masks.size and (masks.min() < 0 or masks.max() > 2):
        raise ValueError(f"masks must hold 0 (background), 1 (object) or 2 (border); got values "
                         f"from {masks.min()} to {masks.max()}.")
    labels = (masks == 1).astype(np.int32)
    weights = np.where(masks == 2, float(border_weight), 1.0).astype(np.float32)
    return labels, weights


def median_frequency_weights(labels, num_classes: int) -> np.ndarray:
    """SegNet's class weights, "median frequency balancing" (Eigen and Fergus, 2015).

    ``alpha_c = median(f) / f_c``, where ``f_c`` is the frequency of class ``c`` over the pixels
    of the images that contain it (the SegNet paper's definition): rare classes get weights above
    1, the dominant background far below 1. A class that never occurs gets weight 0.

    Args:
        labels: int (N, H, W) class maps of the training set.
        num_classes: number of classes.

    Returns:
        float32 (num_classes,) weights; use ``weights[labels]`` as the per-pixel sample weight.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W) class maps, got shape {labels.shape}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got values from "
                         f"{labels.min()} to {labels.max()}.")
    counts = np.stack([np.bincount(m.ravel(), minlength=num_classes) for m in labels])
    pixels_of_images_with = ((counts > 0) * counts.sum(1, keepdims=True)).sum(0)
    present = pixels_of_images_with > 0
    frequency = np.zeros(num_classes)
    frequency[present] = counts.sum(0)[present] / pixels_of_images_with[present]
    weights = np.zeros(num_classes, np.float32)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights
