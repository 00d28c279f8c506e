"""YOLOv2's dimension priors (Sec. 2, "Dimension Clusters"): anchor shapes from the data.

``kmeans_anchors`` clusters the training boxes' widths and heights with the distance
``d(box, centroid) = 1 - IoU(box, centroid)`` (``shape_iou``: boxes aligned on a common
centre), so that large boxes do not dominate as with the Euclidean distance;
``anchors_from_scales`` gives Faster R-CNN's hand-picked shapes for comparison, and
``check_anchors`` refuses shapes a detector cannot use (notebook 07).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import geometry
from bestiary_keras.detection import boxes as box_ops

__all__ = ["check_anchors", "shape_iou", "kmeans_anchors", "anchors_from_scales"]


def _sizes(values, name):
    values = np.asarray(values, np.float32)
    if values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(f"{name} must be (n, 2) widths and heights, got shape {values.shape}.")
    return values


def check_anchors(anchors) -> np.ndarray:
    """``(A, 2)`` anchor widths and heights, refused unless all are finite and > 0."""
    anchors = _sizes(anchors, "anchors")
    if len(anchors) == 0:
        raise ValueError("anchors is empty: give at least one (width, height) in pixels, e.g. "
                         "anchors=((16, 16), (22, 22)) or kmeans_anchors(...)[0].")
    bad = ~np.isfinite(anchors).all(axis=1) | (anchors <= 0).any(axis=1)
    if bad.any():
        raise ValueError(
            f"anchors must be positive, finite widths and heights in pixels, got "
            f"{anchors[bad].tolist()} in anchors={anchors.tolist()}: a predicted size is "
            "anchor * exp(t) and the loss takes log(w / anchor), NaN for anchors <= 0. Use the "
            "absolute sizes, e.g. from kmeans_anchors or anchors_from_scales."
        )
    return anchors


def shape_iou(sizes, anchors) -> np.ndarray:
    """IoU of box shapes, boxes aligned on a common centre: ``(n, 2)``, ``(k, 2)`` -> ``(n, k)``.

    The paper's k-means distance ignores where a box is, only its width and height matter:
    both boxes are centred at the origin and ``geometry.pairwise_iou`` does the rest.
    """
    sizes = _sizes(sizes, "sizes")
    anchors = _sizes(anchors, "anchors")

    def centred(wh):
        return np.concatenate([-wh / 2.0, wh / 2.0], axis=1)

    return geometry.pairwise_iou(centred(sizes), centred(anchors))


def kmeans_anchors(sizes, k: int, *, iterations: int = 100, seed: int = 0,
                   distance: str = "iou"):
    """Dimension priors: k-means on box shapes with the distance ``1 - IoU`` (YOLOv2, Sec. 2).

    Euclidean k-means on ``(w, h)`` lets large boxes dominate the error; with ``1 - IoU`` the
    clusters are as good for small boxes as for large ones. Centroids start at ``k`` distinct
    random boxes; each iteration assigns every box to the centroid of highest IoU and moves
    each centroid to the mean shape of its boxes, until the assignment no longer changes.

    Args:
        sizes: ``(n, 2)`` widths and heights of the training boxes (pixels).
        k: number of clusters (anchors), ``1 <= k <= n``.
        iterations: at most this many assignment steps.
        seed: seed of the initial centroids.
        distance: ``"iou"`` (``1 - IoU``, the paper's) or ``"euclidean"`` (squared distance
            on ``(w, h)``: the paper's baseline, "standard k-means").

    Returns:
        ``(anchors, mean_iou)``: ``(k, 2)`` float32 anchor shapes sorted by area, and the mean
        over the boxes of their IoU with their closest anchor (the paper's "Avg IOU").
    """
    sizes = _sizes(sizes, "sizes")
    sizes = sizes[(sizes > 0).all(axis=1)]
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(sizes):
        raise ValueError(f"k must be an int between 1 and the number of boxes ({len(sizes)}), "
                         f"got {k!r}.")
    if distance not in ("iou", "euclidean"):
        raise ValueError(f"distance must be 'iou' or 'euclidean', got {distance!r}.")
    rng = np.random.default_rng(seed)
    unique = np.unique(sizes, axis=0)
    if len(unique) < k:
        raise ValueError(f"only {len(unique)} distinct box shapes for k={k} clusters: lower k.")
    centroids = unique[rng.choice(len(unique), k, replace=False)]
    assignment = None
    for _ in range(int(iterations)):
        if distance == "iou":
            new = np.argmax(shape_iou(sizes, centroids), axis=1)
        else:
            new = np.argmin(((sizes[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for j in range(k):
            members = sizes[assignment == j]
            if len(members):
                centroids[j] = members.mean(axis=0)
    centroids = centroids[np.argsort(centroids.prod(axis=1))]
    mean_iou = float(shape_iou(sizes, centroids).max(axis=1).mean())
    return centroids.astype(np.float32), mean_iou


def anchors_from_scales(scales, ratios) -> np.ndarray:
    """Hand-picked anchor shapes ``(A, 2)`` as in Faster R-CNN (``boxes.anchor_shapes``)."""
    return box_ops.anchor_shapes(scales, ratios)
