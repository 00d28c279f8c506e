"""Topology-aware segmentation scores: simple points and the warping error (notebook 08).

The ISBI 2012 EM segmentation challenge, where the U-Net won, ranked the entries by three
scores: the pixel error, the Rand error and the *warping error* (V. Jain, B. Bollmann,
M. Richardson, D. R. Berger, M. N. Helmstaedter, K. L. Briggman, W. Denk, J. B. Bowden,
J. M. Mendenhall, W. C. Abraham, K. M. Harris, N. Kasthuri, K. J. Hayworth, R. Schalek,
J. C. Tapia, J. W. Lichtman, H. S. Seung, "Boundary learning by optimization with
topological constraints", CVPR 2010). The slide quotes the U-Net's warping error, 0.000353,
against 0.000420 for the sliding-window network of Ciresan et al.

The warping error counts only the pixel errors that change the *topology* of the
segmentation (a split, a merge, a hole, an object added or lost). The true binary map ``T``
is *warped*: pixels are flipped one at a time, only *simple* pixels (whose flip changes no
connected component and no hole), towards the prediction ``P``; the warping error is the number
of pixels where the warped map still differs from ``P`` when no simple pixel can be flipped any
more, divided by the number of pixels:

    D(T || P) = min over warpings L of T of |L xor P| / |pixels|.

A boundary drawn one pixel off costs nothing; one missing pixel in a one-pixel gap between two
cells (a merge) costs that pixel. The Rand error and the variation of information
(``metrics.instance_scores``) count the same merges and splits by their *area* instead.

Digital topology needs a pair of connectivities, one for the objects and one for the
background: cells 4-connected and background 8-connected here (``foreground_connectivity=4``),
the convention of ``metrics.instances_from_foreground``, which labels the cells with
4-connectivity. A pixel ``x`` is simple (Bertrand 1994; Kong and Rosenfeld 1989) iff, in its
8 neighbours ``N*(x)``, the object pixels form exactly one object-connected component that
touches ``x`` and the background pixels exactly one background-connected component that
touches ``x``; this depends on the 8 neighbours only, so all 256 cases are tabulated once
(``simple_point_table``).

The minimum over warpings is found, as in Jain et al., by greedy descent: flip any simple pixel
where the warped map disagrees with the prediction, until none is left (a local minimum; the
pixels are visited in a fixed raster order of 9 interleaved sub-grids, and pixels of one
sub-grid are 3 apart, so flipping them together equals flipping them one after another).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

__all__ = ["is_simple", "pixel_error", "simple_point_table", "simple_points", "warp_to",
           "warping_error"]

# Neighbour offsets (dy, dx) in the order of the table's bits: bit k is neighbour k.
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])  # ndimage structures
_EIGHT = np.ones((3, 3), int)


def _check_connectivity(foreground_connectivity):
    if foreground_connectivity not in (4, 8):
        raise ValueError("foreground_connectivity must be 4 (objects 4-connected, background "
                         "8-connected, as metrics.instances_from_foreground labels cells) or 8, "
                         f"got {foreground_connectivity!r}.")


def _components_touching_center(mask, structure):
    """Components of ``mask`` (3x3, centre excluded) that contain a pixel adjacent to the centre
    under ``structure`` (all 8 neighbours for 8-adjacency, the 4 edge neighbours for 4)."""
    labels, count = ndimage.label(mask, structure=structure)
    touching = labels[structure.astype(bool) & (labels > 0)]
    return len(set(touching.tolist())), count


@functools.lru_cache(maxsize=2)
def simple_point_table(foreground_connectivity: int = 4) -> np.ndarray:
    """bool (256,): whether a pixel with the neighbour configuration ``k`` is simple.

    Bit ``i`` of ``k`` is set when neighbour ``i`` (``_OFFSETS``: row by row, the centre left
    out) belongs to the objects. The answer does not depend on the pixel's own value, so one
    table serves both for adding a pixel to an object and for removing it.
    """
    _check_connectivity(foreground_connectivity)
    object_structure = _FOUR if foreground_connectivity == 4 else _EIGHT
    background_structure = _EIGHT if foreground_connectivity == 4 else _FOUR
    table = np.zeros(256, bool)
    for config in range(256):
        patch = np.zeros((3, 3), bool)
        for bit, (dy, dx) in enumerate(_OFFSETS):
            patch[1 + dy, 1 + dx] = bool(config >> bit & 1)
        background = ~patch
        background[1, 1] = False  # the centre is left out of both
        objects_touching, _ = _components_touching_center(patch, object_structure)
        background_touching, _ = _components_touching_center(background, background_structure)
        table[config] = objects_touching == 1 and background_touching == 1
    return table


def _configurations(binary):
    """int (..., H, W): each pixel's neighbour configuration (outside the image: background)."""
    padded = np.pad(binary, [(0, 0)] * (binary.ndim - 2) + [(1, 1), (1, 1)])
    height, width = binary.shape[-2:]
    config = np.zeros(binary.shape, np.int32)
    for bit, (dy, dx) in enumerate(_OFFSETS):
        config |= padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width].astype(np.int32) << bit
    return config


def simple_points(binary, foreground_connectivity: int = 4) -> np.ndarray:
    """bool of ``binary``'s shape, (H, W) or (N, H, W): the pixels whose flip keeps the topology.

    The image's outside counts as background.
    """
    binary = np.asarray(binary).astype(bool)
    if binary.ndim not in (2, 3):
        raise ValueError(f"binary must be (H, W) or (N, H, W), got shape {binary.shape}.")
    return simple_point_table(foreground_connectivity)[_configurations(binary)]


def is_simple(binary, y: int, x: int, foreground_connectivity: int = 4) -> bool:
    """Whether pixel ``(y, x)`` of a 2-D binary map is simple (see ``simple_points``)."""
    return bool(simple_points(binary, foreground_connectivity)[y, x])


def warp_to(y_true, y_pred, foreground_connectivity: int = 4, max_rounds: int = 10_000):
    """Warps the true binary map(s) towards the prediction(s) by flips of simple pixels only.

    Args:
        y_true: bool (H, W) or (N, H, W), the true objects (cells) as True.
        y_pred: bool of the same shape, the predicted objects.
        foreground_connectivity: 4 (objects 4-connected, background 8) or 8.
        max_rounds: a guard; each round visits all pixels once.

    Returns:
        bool array: the warped map ``L``, topologically equivalent to ``y_true`` and at a local
        minimum of its disagreement with ``y_pred`` (no simple pixel of ``L`` disagrees).
    """
    warped = np.asarray(y_true).astype(bool).copy()
    y_pred = np.asarray(y_pred).astype(bool)
    if warped.shape != y_pred.shape:
        raise ValueError(f"y_true {warped.shape} and y_pred {y_pred.shape} differ in shape.")
    if warped.ndim not in (2, 3):
        raise ValueError(f"y_true must be (H, W) or (N, H, W), got shape {warped.shape}.")
    table = simple_point_table(foreground_connectivity)
    height, width = warped.shape[-2:]
    rows, cols = np.meshgrid(np.arange(height) % 3, np.arange(width) % 3, indexing="ij")
    subgrids = [(rows == i) & (cols == j) for i in range(3) for j in range(3)]
    for _ in range(max_rounds):
        flipped = False
        for subgrid in subgrids:
            flip = (warped != y_pred) & subgrid & table[_configurations(warped)]
            if flip.any():
                warped ^= flip
                flipped = True
        if not flipped:
            return warped
    raise RuntimeError(f"warp_to did not settle in {max_rounds} rounds.")


def warping_error(y_true, y_pred, foreground_connectivity: int = 4) -> float:
    """Jain et al.'s warping error: the share of pixels where the best topology-preserving
    warping of ``y_true`` still disagrees with ``y_pred`` (0 = no topological error).

    Args:
        y_true, y_pred: bool (H, W) or (N, H, W) binary maps, objects True (for the U-Net:
            cells, with the one-pixel borders between touching cells as background).
        foreground_connectivity: 4 (default, objects 4-connected) or 8.

    Returns:
        The number of topology-changing pixel errors divided by the number of pixels, over all
        images together (as the challenge's per-pixel numbers).
    """
    warped = warp_to(y_true, y_pred, foreground_connectivity)
    return float(np.mean(warped != np.asarray(y_pred).astype(bool)))


def pixel_error(y_true, y_pred) -> float:
    """The challenge's pixel error: the share of pixels where the binary maps differ."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape.")
    return float(np.mean(y_true != y_pred))
