"""Camera geometry for view synthesis: intrinsics, 6-DoF pose vectors, the inverse warp.

The differentiable inverse warp of Zhou et al. (2017), Eq. 2: for every pixel ``p_t`` of the
target view,

    p_s ~ K T_{t->s} D_t(p_t) K^{-1} p_t,

i.e. back-project with ``K^{-1}`` and the predicted depth, move with ``[R|t]``, project with
``K``; the source image is then sampled bilinearly at ``p_s`` (a gather-based sampler in
``keras.ops``). Pixels whose ``p_s`` falls outside the source image or behind its camera are
reported in a validity mask (never clipped silently), and nothing is NaN where the depth is 0.

Conventions: pixel ``(u, v)`` = (column, row) with centres at integers; camera frame x right,
y down, z forward; pose vectors ``[t_x, t_y, t_z, r_x, r_y, r_z]`` (translation, then an
axis-angle rotation) as in the paper's code; a 4x4 ``T_{s<-t}`` maps target-frame points into
the source frame.
"""

from __future__ import annotations

import numpy as np
from keras import ops

__all__ = [
    "bilinear_sample",
    "check_intrinsics",
    "check_snippet",
    "inverse_warp",
    "matrix_to_pose_vec",
    "pixel_grid",
    "pose_vec_to_matrix",
    "scale_intrinsics",
]


def check_intrinsics(intrinsics) -> np.ndarray:
    """Returns ``intrinsics`` as a float32 (3, 3) array, or raises a ``ValueError``.

    ``K`` must be 3x3, finite, with last row ``(0, 0, 1)`` and invertible (non-zero focal
    lengths).
    """
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"intrinsics must be a 3x3 matrix K, got shape {k.shape}; pass "
                         "[[fx, 0, cx], [0, fy, cy], [0, 0, 1]].")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"intrinsics must be finite, got {k.tolist()}.")
    if not np.allclose(k[2], [0, 0, 1]):
        raise ValueError(f"intrinsics' last row must be (0, 0, 1), got {k[2].tolist()}.")
    if abs(np.linalg.det(k)) < 1e-9:
        raise ValueError(f"intrinsics are not invertible (determinant {np.linalg.det(k):.3g}, "
                         f"fx={k[0, 0]}, fy={k[1, 1]}): the focal lengths must be non-zero.")
    return k.astype(np.float32)


def scale_intrinsics(intrinsics, factor: float) -> np.ndarray:
    """``K`` for an image resized by ``factor`` (e.g. 0.5 for each coarser scale).

    With pixel centres at integers, ``c' = (c + 0.5) * factor - 0.5``.
    """
    k = check_intrinsics(intrinsics).astype(np.float64)
    if not factor > 0:
        raise ValueError(f"factor must be > 0, got {factor!r}.")
    out = k.copy()
    out[0, 0], out[1, 1] = k[0, 0] * factor, k[1, 1] * factor
    out[0, 1] = k[0, 1] * factor
    out[0, 2], out[1, 2] = (k[0, 2] + 0.5) * factor - 0.5, (k[1, 2] + 0.5) * factor - 0.5
    return out.astype(np.float32)


def check_snippet(snippet, length: int = 3):
    """Checks a batch of snippets ``(B, length, H, W, C)``; returns it, or raises ``ValueError``."""
    shape = tuple(snippet.shape)
    if len(shape) != 5 or shape[1] != length:
        raise ValueError(f"snippets must have shape (batch, {length}, height, width, channels) "
                         f"with the target in the middle, got {shape}.")
    return snippet


def pose_vec_to_matrix(pose_vec):
    """``(..., 6)`` vectors ``[t, r]`` -> ``(..., 4, 4)`` matrices ``[[R, t], [0, 1]]``.

    ``R`` is Rodrigues' formula for the axis-angle ``r`` (angle = its norm):
    ``R = I + sin(a)/a [r]_x + (1 - cos(a))/a^2 [r]_x^2``, written so that ``r = 0`` gives
    ``I`` with finite gradients.
    """
    pose_vec = ops.convert_to_tensor(pose_vec, dtype="float32")
    if pose_vec.shape[-1] != 6:
        raise ValueError(f"pose vectors must end in 6 numbers [tx, ty, tz, rx, ry, rz], got "
                         f"shape {tuple(pose_vec.shape)}.")
    t, r = pose_vec[..., :3], pose_vec[..., 3:]
    angle2 = ops.sum(r * r, axis=-1, keepdims=True)[..., None]  # (..., 1, 1)
    angle = ops.sqrt(angle2 + 1e-12)
    small = angle2 < 1e-8
    a = ops.where(small, 1.0 - angle2 / 6.0, ops.sin(angle) / angle)
    b = ops.where(small, 0.5 - angle2 / 24.0, (1.0 - ops.cos(angle)) / (angle2 + 1e-12))
    zero = ops.zeros_like(r[..., 0])
    rx, ry, rz = r[..., 0], r[..., 1], r[..., 2]
    cross = ops.stack([ops.stack([zero, -rz, ry], -1), ops.stack([rz, zero, -rx], -1),
                       ops.stack([-ry, rx, zero], -1)], axis=-2)
    eye = ops.eye(3, dtype="float32")
    rotation = eye + a * cross + b * ops.matmul(cross, cross)
    top = ops.concatenate([rotation, t[..., :, None]], axis=-1)
    bottom = ops.zeros_like(top[..., :1, :]) + ops.convert_to_tensor([[0.0, 0.0, 0.0, 1.0]])
    return ops.concatenate([top, bottom], axis=-2)


def matrix_to_pose_vec(matrix) -> np.ndarray:
    """NumPy inverse of ``pose_vec_to_matrix``: ``(..., 4, 4)`` -> ``(..., 6)`` ``[t, r]``."""
    m = np.asarray(matrix, np.float64)
    rotation, t = m[..., :3, :3], m[..., :3, 3]
    cos = np.clip((np.trace(rotation, axis1=-2, axis2=-1) - 1) / 2, -1, 1)
    angle = np.arccos(cos)
    axis = np.stack([rotation[..., 2, 1] - rotation[..., 1, 2],
                     rotation[..., 0, 2] - rotation[..., 2, 0],
                     rotation[..., 1, 0] - rotation[..., 0, 1]], -1)
    scale = np.where(angle < 1e-6, 0.5, angle / (2 * np.sin(np.maximum(angle, 1e-6))))
    return np.concatenate([t, axis * scale[..., None]], -1).astype(np.float32)


def pixel_grid(height: int, width: int) -> np.ndarray:
    """(H, W, 3) homogeneous pixel coordinates ``(u, v, 1)``."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32),
                       indexing="ij")
    return np.stack([u, v, np.ones_like(u)], axis=-1)


def bilinear_sample(image, x, y):
    """Samples ``image`` (B, H, W, C) at real pixel coordinates ``x``, ``y`` (B, H', W').

    Returns ``(values (B, H', W', C), inside (B, H', W', 1))``: ``inside`` is 1 where the
    point lies within the pixel centres ``[0, W-1] x [0, H-1]`` and 0 elsewhere; outside
    points return 0 (their neighbour indices are clamped only to keep the gather in range).
    Differentiable in ``image``, ``x`` and ``y`` (a gather of the 4 neighbours).
    """
    image = ops.convert_to_tensor(image, dtype="float32")
    batch, height, width, channels = (ops.shape(image)[0], image.shape[1], image.shape[2],
                                      image.shape[3])
    tol = 1e-3  # round-off of the projection must not drop the border pixels
    inside = ops.cast((x >= -tol) & (x <= width - 1 + tol) & (y >= -tol)
                      & (y <= height - 1 + tol), "float32")
    x = ops.clip(x, 0.0, width - 1.0)
    y = ops.clip(y, 0.0, height - 1.0)
    x0 = ops.clip(ops.floor(x), 0.0, max(width - 2, 0))
    y0 = ops.clip(ops.floor(y), 0.0, max(height - 2, 0))
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    x1, y1 = ops.minimum(x0 + 1, width - 1), ops.minimum(y0 + 1, height - 1)
    flat = ops.reshape(image, (-1, channels))
    base = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1, 1, 1))

    def gather(yy, xx):
        return ops.take(flat, base + yy * width + xx, axis=0)

    top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    values = top * (1 - wy) + bottom * wy
    inside = inside[..., None]
    return values * inside, inside


def inverse_warp(source, depth, pose, intrinsics, *, min_depth: float = 1e-3):
    """Synthesises the target view from ``source`` using the target's depth and the motion.

    Args:
        source: (B, H, W, C) source image.
        depth: (B, H, W, 1) or (B, H, W) depth of the **target** view.
        pose: (B, 4, 4) ``T_{s<-t}`` or (B, 6) pose vectors ``[t, r]`` (``pose_vec_to_matrix``).
        intrinsics: (3, 3) ``K`` for this image size (see ``scale_intrinsics``).
        min_depth: projected points closer than this to the source camera are invalid.

    Returns:
        ``(warped (B, H, W, C), valid (B, H, W, 1))``: ``valid`` is 1 where ``p_s`` lies in
        the source image and in front of its camera; ``warped`` is 0 elsewhere.
    """
    k = check_intrinsics(intrinsics)
    source = ops.convert_to_tensor(source, dtype="float32")
    if len(source.shape) != 4:
        raise ValueError(f"source must be (batch, height, width, channels), got "
                         f"{tuple(source.shape)}.")
    height, width = source.shape[1], source.shape[2]
    depth = ops.convert_to_tensor(depth, dtype="float32")
    if len(depth.shape) == 3:
        depth = depth[..., None]
    if len(depth.shape) != 4 or tuple(depth.shape[1:]) != (height, width, 1):
        raise ValueError(f"depth must be (batch, {height}, {width}, 1) like the source image, "
                         f"got {tuple(depth.shape)}; resize it or pick the matching scale.")
    pose = ops.convert_to_tensor(pose, dtype="float32")
    if tuple(pose.shape[-1:]) == (6,) and len(pose.shape) == 2:
        pose = pose_vec_to_matrix(pose)
    if len(pose.shape) != 3 or tuple(pose.shape[1:]) != (4, 4):
        raise ValueError(f"pose must be (batch, 4, 4) matrices or (batch, 6) vectors, got "
                         f"{tuple(pose.shape)}.")
    # back-project: X_t = D(p) K^-1 p
    rays = pixel_grid(height, width) @ np.linalg.inv(k.astype(np.float64)).T.astype(np.float32)
    points = ops.convert_to_tensor(rays)[None] * depth  # (B, H, W, 3)
    # move and project in one product: K [R | t]
    projection = ops.matmul(ops.convert_to_tensor(k)[None], pose[:, :3, :])  # (B, 3, 4)
    flat = ops.reshape(points, (-1, height * width, 3))
    projected = (ops.matmul(flat, ops.transpose(projection[:, :, :3], (0, 2, 1)))
                 + projection[:, None, :, 3])
    z = projected[..., 2]
    in_front = ops.cast(z > min_depth, "float32")
    z = ops.maximum(z, min_depth)  # no division by ~0 (the point is invalid anyway)
    x = ops.reshape(projected[..., 0] / z, (-1, height, width))
    y = ops.reshape(projected[..., 1] / z, (-1, height, width))
    warped, inside = bilinear_sample(source, x, y)
    valid = inside * ops.reshape(in_front, (-1, height, width, 1))
    return warped * valid, valid
