"""RoIAlign (He, Gkioxari, Dollár, Girshick, "Mask R-CNN", ICCV 2017, Sec. 3): notebook 11.

RoI max pooling (``roi_pooling.RoIMaxPooling``) rounds twice: the RoI's borders to feature cells,
then its bins to cells. Each rounding shifts the pooled grid by up to one feature cell, which
is harmless for a class score and ruinous for a pixel-accurate mask. RoIAlign rounds nothing:

- the RoI ``[x0, x1) x [y0, y1)`` in pixels becomes continuous feature coordinates
  ``x * s - 0.5`` (``s`` = 1 / stride; the ``-0.5`` because feature cell ``i`` has its centre
  at ``i + 0.5`` in those units: Detectron2's ``aligned=True``; the original Caffe2 layer and
  most public Keras/TF ports leave it out and are off by half a cell);
- it is split into ``P x P`` equal bins, and each bin is sampled at ``sampling_ratio^2``
  regularly spaced points (``(i + 0.5) / sampling_ratio`` of the bin along each axis);
- each point is read by **bilinear interpolation** of the four nearest cells, and the points
  of a bin are averaged.

Bilinear sampling and the bin average are both linear and separable in y and x, so the whole
layer is two matrix products per RoI: ``A_y (P x H) @ F (H x W x C) @ A_x^T (W x P)``, where row
``p`` of ``A_y`` holds the interpolation weights of bin ``p``'s sample rows averaged
(``interpolation_weights``). That is exact, has no loop, and the gradient reaches the features
through the same weights. Out-of-map points follow Detectron2: a point more than one cell
outside the map reads 0, one within one cell reads the border cell.

``roi_align_reference`` is a slow loop written from the paper's description (and Detectron2's
``ROIAlign_cpu``), used to test the layer.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras.detection.roi_pooling import check_roi_pooling

__all__ = ["interpolation_weights", "sample_coordinates", "RoIAlign", "roi_align_reference"]


def sample_coordinates(start, end, bins: int, sampling_ratio: int, xp=ops):
    """Continuous feature coordinates of the sampling points of ``bins`` bins along one axis.

    Args:
        start, end: ``(...)`` the RoI's first and last coordinate in feature units (already
            scaled and shifted).
        bins: number of bins ``P``; sampling_ratio: points per bin ``S``.
        xp: ``keras.ops`` (tensors) or ``numpy``.

    Returns:
        ``(..., P * S)``: point ``k`` of bin ``p`` at ``start + (p + (k + 0.5) / S) * size / P``.
    """
    steps = (np.arange(bins * sampling_ratio, dtype=np.float32) + 0.5) / sampling_ratio
    steps = steps if xp is np else ops.convert_to_tensor(steps)
    size = (end - start)[..., None]
    return start[..., None] + steps * size / bins


def interpolation_weights(coordinates, size: int, bins: int, xp=ops):
    """Bilinear weights of sample points, averaged per bin: the ``A`` of the module docstring.

    Args:
        coordinates: ``(..., P * S)`` continuous coordinates (cell ``i`` centred at ``i``).
        size: number of cells of the map along this axis.
        bins: ``P`` (the points are grouped in ``P`` consecutive runs of ``S``).
        xp: ``keras.ops`` or ``numpy``.

    Returns:
        ``(..., P, size)``: row ``p`` is the mean over bin ``p``'s points of each point's two
        linear-interpolation weights (zero for a point more than one cell outside the map).
    """
    c = coordinates
    inside = xp.logical_and(c >= -1.0, c <= float(size))
    c = xp.clip(c, 0.0, float(size - 1))
    low = xp.floor(c)
    frac = c - low
    high = xp.minimum(low + 1.0, float(size - 1))
    cells = np.arange(size, dtype=np.float32)
    cells = cells if xp is np else ops.convert_to_tensor(cells)
    def hot(index):  # (..., n, size) one-hot of a cell index
        return xp.where(index[..., None] == cells, 1.0, 0.0)

    weights = hot(low) * (1.0 - frac)[..., None] + hot(high) * frac[..., None]
    weights = xp.where(inside[..., None], weights, 0.0)
    shape = tuple(weights.shape[:-2]) if xp is np else ops.shape(weights)[:-2]
    per_bin = coordinates.shape[-1] // bins
    grouped = xp.reshape(weights, (*shape, bins, per_bin, size))
    return xp.mean(grouped, axis=-2)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class RoIAlign(layers.Layer):
    """RoIAlign: every RoI becomes a ``P x P`` map, with no quantisation anywhere.

    Args:
        pool_size: ``P`` (an int) or ``(P_h, P_w)``; 7 for the box head, 14 for the mask head
            in the paper.
        spatial_scale: feature cells per input pixel (1 / stride).
        sampling_ratio: sampling points per bin along each axis (2 in the paper, so 4 per bin);
            must be >= 1 (Detectron2's adaptive 0 is not offered: it makes the cost depend on
            the RoI size).
        aligned: True (default) shifts by half a cell so that sampling points sit where they
            should; False reproduces the original, misaligned layer (and, like it, stretches
            RoIs narrower than one cell to one cell), kept for comparison.

    Call arguments:
        features: ``(B, H, W, C)``; rois: ``(B, R, 4)`` xyxy in input pixels (exclusive end,
        the ``make_scenes`` convention).

    Returns:
        ``(B, R, P_h, P_w, C)``.
    """

    def __init__(self, pool_size=7, spatial_scale=1.0 / 8.0, sampling_ratio=2, aligned=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.spatial_scale = check_roi_pooling(pool_size, spatial_scale)
        if int(sampling_ratio) != sampling_ratio or sampling_ratio < 1:
            raise ValueError(
                f"sampling_ratio must be an int >= 1 (points per bin and axis; the paper uses "
                f"2), got {sampling_ratio!r}."
            )
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def _weights(self, start, end, bins, size):
        offset = 0.5 if self.aligned else 0.0
        start = start * self.spatial_scale - offset
        end = end * self.spatial_scale - offset
        if not self.aligned:  # the legacy layer stretches tiny RoIs to one cell
            end = ops.maximum(end, start + 1.0)
        coords = sample_coordinates(start, end, bins, self.sampling_ratio)
        return interpolation_weights(coords, size, bins)

    def call(self, features, rois):
        features = ops.convert_to_tensor(features)
        # the sampling geometry in float32, also when the features are float16 (mixed policy)
        rois = ops.cast(ops.convert_to_tensor(rois), "float32")
        height, width = features.shape[1], features.shape[2]
        ph, pw = self.pool_size
        a_y = self._weights(rois[..., 1], rois[..., 3], ph, height)  # (B, R, PH, H)
        a_x = self._weights(rois[..., 0], rois[..., 2], pw, width)  # (B, R, PW, W)
        rows = ops.einsum("brph,bhwc->brpwc", ops.cast(a_y, features.dtype), features)
        return ops.einsum("brqw,brpwc->brpqc", ops.cast(a_x, features.dtype), rows)

    def compute_output_shape(self, features_shape, rois_shape):
        return (features_shape[0], rois_shape[1], *self.pool_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, spatial_scale=self.spatial_scale,
                      sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        return config


def _bilinear(features, y, x):
    """One bilinear read of an ``(H, W, C)`` map, Detectron2's border rule (a loop helper)."""
    height, width = features.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(features.shape[-1], np.float64)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(math.floor(y)), int(math.floor(x))
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    return ((1 - ly) * (1 - lx) * features[y_low, x_low] + (1 - ly) * lx * features[y_low, x_high]
            + ly * (1 - lx) * features[y_high, x_low] + ly * lx * features[y_high, x_high])


def roi_align_reference(features, rois, pool_size, spatial_scale, sampling_ratio=2,
                        aligned=True):
    """Slow NumPy RoIAlign, one bin and one sampling point at a time.

    Args:
        features: ``(H, W, C)``; rois: ``(R, 4)`` xyxy pixels; pool_size: int ``P``;
        spatial_scale, sampling_ratio, aligned: as in ``RoIAlign``.

    Returns:
        ``(R, P, P, C)`` float32.
    """
    features = np.asarray(features, np.float64)
    out = np.zeros((len(rois), pool_size, pool_size, features.shape[-1]), np.float64)
    offset = 0.5 if aligned else 0.0
    for r, (x0, y0, x1, y1) in enumerate(np.asarray(rois, np.float64)):
        xs, ys = x0 * spatial_scale - offset, y0 * spatial_scale - offset
        w, h = x1 * spatial_scale - offset - xs, y1 * spatial_scale - offset - ys
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        bin_w, bin_h = w / pool_size, h / pool_size
        n = sampling_ratio
        for i in range(pool_size):
            for j in range(pool_size):
                total = np.zeros(features.shape[-1], np.float64)
                for iy in range(n):
                    y = ys + i * bin_h + (iy + 0.5) * bin_h / n
                    for ix in range(n):
                        x = xs + j * bin_w + (ix + 0.5) * bin_w / n
                        total += _bilinear(features, y, x)
                out[r, i, j] = total / (n * n)
    return out.astype(np.float32)
