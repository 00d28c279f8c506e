"""RoI max pooling (Fast R-CNN, Sec. 2.1): notebook 04, and the box heads of 05 and 11.

Each region of interest is cut out of the shared feature map as a fixed ``H x W`` grid of bins,
each the max over the feature cells it covers, whatever the RoI's size. ``RoIMaxPooling`` is the
layer (vectorised, a true max over each bin); ``roi_max_pool_reference`` is a slow NumPy loop
used to test it; ``check_roi_pooling`` checks the arguments shared with ``roi_align.RoIAlign``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras import geometry

__all__ = [
    "roi_bins",
    "check_roi_pooling",
    "RoIMaxPooling",
    "roi_max_pool_reference",
]


def roi_bins(rois, spatial_scale: float, pool_size: int, feature_size: int):
    """Bin boundaries of RoI max pooling along one axis (NumPy or tensors).

    An RoI ``[a, b)`` in pixels covers feature cells ``start = floor(a * s)`` to
    ``end = max(ceil(b * s), start + 1)`` (exclusive). Its ``pool_size`` bins split that range
    into sub-windows of about equal size: bin ``k`` covers cells
    ``[start + floor(k * n / P), start + ceil((k + 1) * n / P))`` with ``n = end - start``,
    clipped to the map. Bins may overlap by one cell (when ``n`` is not a multiple of ``P``) and
    repeat cells (when ``n < P``), as in the original Caffe layer.

    Args:
        rois: ``(..., 2)`` start and end coordinates in pixels.
        spatial_scale: feature cells per pixel (1 / stride).
        pool_size: number of bins ``P``.
        feature_size: number of cells of the map along this axis.

    Returns:
        ``(low, high)``, each ``(..., P)``: the cell range ``[low, high)`` of every bin; an empty
        range (``low >= high``, an RoI outside the map) is an empty bin.
    """
    xp = geometry.xp(rois)
    start = xp.floor(rois[..., 0] * spatial_scale)
    end = xp.maximum(xp.ceil(rois[..., 1] * spatial_scale), start + 1.0)
    size = (end - start)[..., None]
    k = np.arange(pool_size, dtype=np.float32)
    k = k if xp is np else ops.convert_to_tensor(k)
    low = start[..., None] + xp.floor(k * size / pool_size)
    high = start[..., None] + xp.ceil((k + 1.0) * size / pool_size)
    low = xp.clip(low, 0.0, float(feature_size))
    high = xp.clip(high, 0.0, float(feature_size))
    return low, high


def check_roi_pooling(pool_size, spatial_scale) -> tuple[tuple[int, int], float]:
    """Validated RoI pooling settings (shared by ``RoIMaxPooling`` and ``RoIAlign``).

    Returns:
        ``((P_h, P_w), spatial_scale)``.
    """
    pool_size = (pool_size, pool_size) if isinstance(pool_size, int) else tuple(pool_size)
    if len(pool_size) != 2 or min(pool_size) < 1:
        raise ValueError(f"pool_size must be a positive int or a pair, got {pool_size!r}.")
    if spatial_scale <= 0:
        raise ValueError(
            f"spatial_scale must be positive (1 / the feature stride), got {spatial_scale!r}."
        )
    return tuple(int(p) for p in pool_size), float(spatial_scale)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class RoIMaxPooling(layers.Layer):
    """RoI max pooling (Fast R-CNN, Sec. 2.1): every RoI becomes a ``P x P`` map.

    The RoI, projected onto the feature map (``spatial_scale`` = 1 / stride), is divided into a
    ``P x P`` grid of sub-windows (``roi_bins``) and each channel is max-pooled within each
    sub-window independently. Bins that fall outside the map (an RoI outside the image) are 0.

    Vectorised as a range-maximum query with a *sparse table*: the layer first computes, for
    every cell and every power-of-two window ``2^a x 2^b`` (``a, b <= log2`` of the map size),
    the max of the window starting there (a few elementwise maxima of shifted maps). The max
    of any bin ``[y0, y1) x [x0, x1)`` is then the max of four such windows (``2^a <= y1 - y0 <
    2^(a+1)``) anchored at its corners, which overlap and cover it exactly: one gather for all
    RoIs, no loop, no per-RoI copy of the map. It is an exact max (not a resize), and the
    gradient reaches the arg-max of every bin, as in the paper's backward pass.

    Call arguments:
        features: ``(B, H, W, C)`` feature map.
        rois: ``(B, R, 4)`` xyxy RoIs in input-image pixels.

    Returns:
        ``(B, R, P, P, C)`` pooled features.
    """

    def __init__(self, pool_size=7, spatial_scale=1.0 / 8.0, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.spatial_scale = check_roi_pooling(pool_size, spatial_scale)

    @staticmethod
    def _sparse_table(features, axis, levels):
        """``[T_0, ..., T_L]`` with ``T_k[i] = max(x[i : i + 2^k])`` along ``axis``."""
        tables = [features]
        size = features.shape[axis]
        for k in range(1, levels):
            prev, shift = tables[-1], 2 ** (k - 1)
            rest = [slice(None)] * len(features.shape)
            head = list(rest)
            rest[axis], head[axis] = slice(shift, None), slice(size - shift, None)
            # windows that would run past the border are never queried: fill them with anything
            shifted = ops.concatenate([prev[tuple(rest)], prev[tuple(head)]], axis=axis)
            tables.append(ops.maximum(prev, shifted))
        return tables

    @staticmethod
    def _level(low, high):
        """``k`` with ``2^k <= high - low < 2^(k+1)`` (0 for empty bins)."""
        length = ops.maximum(high - low, 1.0)
        return ops.floor(ops.log(length) / math.log(2.0) + 1e-4)

    def call(self, features, rois):
        features = ops.convert_to_tensor(features)
        rois = ops.cast(ops.convert_to_tensor(rois), "float32")
        height, width, channels = features.shape[1], features.shape[2], features.shape[3]
        ph, pw = self.pool_size
        levels_y = int(math.floor(math.log2(height))) + 1
        levels_x = int(math.floor(math.log2(width))) + 1
        # sparse table of the map: (B, LY, LX, H, W, C)
        rows = self._sparse_table(features, 1, levels_y)
        table = [self._sparse_table(t, 2, levels_x) for t in rows]
        table = ops.stack([ops.stack(row, axis=1) for row in table], axis=1)
        batch = ops.shape(features)[0]
        per_image = levels_y * levels_x * height * width
        table = ops.reshape(table, (-1, channels))  # (B * LY * LX * H * W, C)

        y_low, y_high = roi_bins(ops.stack([rois[..., 1], rois[..., 3]], -1), self.spatial_scale,
                                 ph, height)  # (B, R, PH)
        x_low, x_high = roi_bins(ops.stack([rois[..., 0], rois[..., 2]], -1), self.spatial_scale,
                                 pw, width)  # (B, R, PW)
        ky, kx = self._level(y_low, y_high), self._level(x_low, x_high)
        y_starts = ops.stack([y_low, ops.maximum(y_high - 2.0 ** ky, 0.0)], -1)  # (B, R, PH, 2)
        x_starts = ops.stack([x_low, ops.maximum(x_high - 2.0 ** kx, 0.0)], -1)  # (B, R, PW, 2)
        y_starts = ops.minimum(y_starts, float(height - 1))
        x_starts = ops.minimum(x_starts, float(width - 1))
        # flat index of each corner window: (B, R, PH, PW, 2, 2)
        level = ky[:, :, :, None, None, None] * levels_x + kx[:, :, None, :, None, None]
        cell = (y_starts[:, :, :, None, :, None] * width + x_starts[:, :, None, :, None, :])
        index = level * (height * width) + cell
        offset = ops.cast(ops.arange(batch), "float32") * per_image
        index = ops.cast(index + offset[:, None, None, None, None, None], "int32")
        corners = ops.take(table, ops.reshape(index, (-1,)), axis=0)
        num_rois = ops.shape(rois)[1]
        corners = ops.reshape(corners, (batch, num_rois, ph, pw, 4, channels))
        pooled = ops.max(corners, axis=4)  # (B, R, PH, PW, C)
        non_empty = (y_high > y_low)[..., :, None] & (x_high > x_low)[..., None, :]
        return ops.where(non_empty[..., None], pooled, ops.zeros_like(pooled))

    def compute_output_shape(self, features_shape, rois_shape):
        return (features_shape[0], rois_shape[1], *self.pool_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, spatial_scale=self.spatial_scale)
        return config


def roi_max_pool_reference(features, rois, pool_size, spatial_scale):
    """Slow, loop-by-loop NumPy RoI max pooling, written from the paper's description.

    Args:
        features: ``(H, W, C)``; rois: ``(R, 4)`` xyxy pixels; pool_size: int ``P``.

    Returns:
        ``(R, P, P, C)``.
    """
    features = np.asarray(features, np.float32)
    height, width, channels = features.shape
    out = np.zeros((len(rois), pool_size, pool_size, channels), np.float32)
    for r, (x0, y0, x1, y1) in enumerate(np.asarray(rois, np.float64)):
        xs, ys = math.floor(x0 * spatial_scale), math.floor(y0 * spatial_scale)
        xe = max(math.ceil(x1 * spatial_scale), xs + 1)
        ye = max(math.ceil(y1 * spatial_scale), ys + 1)
        bw, bh = (xe - xs) / pool_size, (ye - ys) / pool_size
        for i in range(pool_size):
            for j in range(pool_size):
                r0 = min(max(ys + math.floor(i * bh), 0), height)
                r1 = min(max(ys + math.ceil((i + 1) * bh), 0), height)
                c0 = min(max(xs + math.floor(j * bw), 0), width)
                c1 = min(max(xs + math.ceil((j + 1) * bw), 0), width)
                if r1 > r0 and c1 > c0:
                    out[r, i, j] = features[r0:r1, c0:c1].max(axis=(0, 1))
    return out
