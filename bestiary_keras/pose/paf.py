"""Part affinity fields (OpenPose): the targets, one 2-D vector field per limb.

Cao, Simon, Wei, Sheikh, *Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields*,
CVPR 2017, Sec. 3.3. For limb ``c`` of person ``k`` going from joint ``x_j1`` to joint ``x_j2``
(both labelled), every map pixel ``p`` on the limb holds the limb's unit direction::

    L*_{c,k}(p) = v = (x_j2 - x_j1) / ||x_j2 - x_j1||   if p is on limb c of person k, else 0,

where "on the limb" means ``0 <= v . (p - x_j1) <= l_{c,k}`` (along the segment) and
``|v_perp . (p - x_j1)| <= sigma_l`` (within the limb width). Where limbs of several people
overlap the target is their average, normalised by the count of non-zero vectors::

    L*_c(p) = (1 / n_c(p)) sum_k L*_{c,k}(p).

Channel ``2 c`` holds the x component and ``2 c + 1`` the y component of limb ``c``.

Coordinates follow ``datasets.figures`` and ``heatmaps.confidence_maps``: keypoints are
continuous image coordinates ``(x, y)`` in ``[0, W] x [0, H]`` (pixel ``c`` covers
``[c, c + 1)``); a map of ``map_size`` cells covers the image with stride
``s = image_size / map_size`` and cell ``m`` is centred at image coordinate ``(m + 0.5) s``.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.datasets.figures import check_keypoints

__all__ = [
    "check_limbs",
    "part_affinity_fields",
    "to_image_coordinates",
    "to_map_coordinates",
]


def to_map_coordinates(xy, image_size: int, map_size: int) -> np.ndarray:
    """Image coordinates -> map cell coordinates (cell ``m`` centred at ``m``)."""
    stride = float(image_size) / float(map_size)
    return np.asarray(xy, np.float32) / stride - 0.5


def to_image_coordinates(xy, image_size: int, map_size: int) -> np.ndarray:
    """Map cell coordinates -> image coordinates (the inverse of ``to_map_coordinates``)."""
    stride = float(image_size) / float(map_size)
    return (np.asarray(xy, np.float32) + 0.5) * stride


def check_limbs(limbs, num_joints: int) -> np.ndarray:
    """``limbs`` as an int array ``(L, 2)`` of (parent, child) joints, or a ``ValueError``."""
    array = np.asarray(limbs)
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise ValueError(
            f"limbs must be a non-empty list of (parent, child) joint pairs, got shape "
            f"{array.shape}: pass e.g. figures.LIMBS."
        )
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= num_joints:
        bad = int(array.max()) if array.max() >= num_joints else int(array.min())
        raise ValueError(
            f"limbs refer to joint {bad} but the skeleton has {num_joints} joints "
            f"(0 .. {num_joints - 1}): the limbs and the keypoints (or maps) must come from the "
            "same skeleton."
        )
    return array


def _batch_pafs(keypoints, limbs, image_size, map_size, limb_width):
    """PAFs of a batch: keypoints (N, P, J, 3) -> (N, map_size, map_size, 2 L)."""
    grid = np.arange(map_size, dtype=np.float32)
    n = len(keypoints)
    out = np.zeros((n, map_size, map_size, 2 * len(limbs)), np.float32)
    xy = to_map_coordinates(keypoints[..., :2], image_size, map_size)  # (N, P, J, 2)
    labelled = keypoints[..., 2] > 0
    for c, (a, b) in enumerate(limbs):
        start, delta = xy[:, :, a], xy[:, :, b] - xy[:, :, a]           # (N, P, 2)
        length = np.hypot(delta[..., 0], delta[..., 1])                  # (N, P)
        # an unlabelled end or a zero-length limb: no target for this limb of this person
        exists = labelled[:, :, a] & labelled[:, :, b] & (length > 1e-6)
        v = delta / np.maximum(length, 1e-6)[..., None]
        dx = grid[None, None, None, :] - start[..., 0, None, None]       # (N, P, 1, w)
        dy = grid[None, None, :, None] - start[..., 1, None, None]       # (N, P, h, 1)
        vx, vy = v[..., 0, None, None], v[..., 1, None, None]
        along = dx * vx + dy * vy                                        # (N, P, h, w)
        across = np.abs(dy * vx - dx * vy)
        on = ((along >= 0) & (along <= length[..., None, None]) & (across <= limb_width)
              & exists[..., None, None]).astype(np.float32)
        count = on.sum(1)                                                # (N, h, w)
        total_x = np.einsum("nphw,np->nhw", on, v[..., 0])
        total_y = np.einsum("nphw,np->nhw", on, v[..., 1])
        safe = np.maximum(count, 1.0)
        out[..., 2 * c] = total_x / safe
        out[..., 2 * c + 1] = total_y / safe
    return out


def part_affinity_fields(keypoints, limbs, image_size: int, map_size: int,
                         limb_width: float = 1.0) -> np.ndarray:
    """Part affinity field targets (the paper's Eq. 8-9), averaged where people overlap.

    Args:
        keypoints: ``(P, J, 3)`` for one image or ``(N, P, J, 3)``: ``(x, y, v)`` in image
            pixels; ``v = 0`` is unlabelled (padding people are all zeros). A limb gets a target
            only where both its joints are labelled (``v > 0``; occluded joints, ``v = 1``,
            count: the limb is still there).
        limbs: ``(L, 2)`` (parent, child) joint indices.
        image_size: image side in pixels.
        map_size: side of the output maps (``image_size / stride``).
        limb_width: ``sigma_l``, the half-width of a limb, in map pixels.

    Returns:
        float32 ``(map_size, map_size, 2 L)`` (or with a leading ``N``): channels ``2 c`` and
        ``2 c + 1`` are the x and y components of limb ``c``.
    """
    if int(image_size) < 1 or int(map_size) < 1 or map_size > image_size:
        raise ValueError(
            f"need 1 <= map_size <= image_size, got map_size={map_size!r}, "
            f"image_size={image_size!r}."
        )
    if not limb_width > 0:
        raise ValueError(f"limb_width must be > 0 map pixels, got {limb_width!r}.")
    array = check_keypoints(keypoints, int(image_size), num_joints=None)
    if array.ndim not in (3, 4):
        raise ValueError(f"keypoints must be (P, J, 3) or (N, P, J, 3), got {array.shape}.")
    limbs = check_limbs(limbs, array.shape[-2])
    fields = _batch_pafs(array if array.ndim == 4 else array[None], limbs, int(image_size),
                         int(map_size), float(limb_width))
    return fields if array.ndim == 4 else fields[0]
