"""Evaluation of descriptors and feature points (notebooks 15 to 17), in NumPy.

Pairs (notebook 15):
- ``roc_curve``: false and true positive rates of "distance below a threshold" for all
  thresholds; ``fpr_at_recall`` the false positive rate at 95% recall (FPR95), the number the
  patch-descriptor papers (Brown et al., Simo-Serra et al.) report; ``roc_auc``.
- ``best_threshold``: the distance threshold with the best verification accuracy (chosen on
  one set, then applied to another); ``verification_accuracy``.

Retrieval (notebooks 15 and 16):
- ``nearest_neighbors``: index of each query's nearest gallery descriptor
  (``sklearn.metrics.pairwise_distances_argmin``); ``nearest_neighbor_accuracy``.

Feature points on image pairs with a known homography (notebook 17):
- ``project_points`` (``skimage.transform.ProjectiveTransform``); ``repeatability``: the fraction of points whose projection has a
  detection in the other image within ``pixel_threshold`` (over points visible in both);
  ``match_descriptors`` (mutual nearest neighbours, ``skimage.feature.match_descriptors``);
  ``matching_score``: correct matches over
  the detected points; ``matches_average_precision``: the area under the precision-recall
  curve of the matches ranked by descriptor distance.

The pair metrics take ``(labels, distances)``, Keras' and scikit-learn's ``(y_true, y_pred)``
order; the prediction is a *distance* (smaller = more alike), not a score. The ROC functions wrap
scikit-learn's, which rank scores (higher = more likely a match): they pass the negated
distances, so that the rule stays "match when the distance is at most t" and the thresholds
returned are distances.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "best_threshold", "correct_matches", "fpr_at_recall", "match_descriptors",
    "matches_average_precision", "matching_score", "nearest_neighbor_accuracy",
    "nearest_neighbors", "project_points", "repeatability", "roc_auc", "roc_curve",
    "verification_accuracy",
]


def _pairs(distances, labels):
    distances = np.asarray(distances, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if distances.shape != labels.shape:
        raise ValueError(f"distances and labels must have the same length, got "
                         f"{distances.shape[0]} and {labels.shape[0]}.")
    if labels.all() or not labels.any():
        raise ValueError("labels need both matching (1) and non-matching (0) pairs.")
    return distances, labels


def roc_curve(labels, distances):
    """ROC of the rule "match when the distance is at most t", over all thresholds t.

    ``sklearn.metrics.roc_curve`` on the negated distances (a smaller distance is a more
    confident match), every threshold kept.

    Args:
        labels: 1 for matching pairs, 0 for non-matching ones, shape ``(N,)`` (``y_true``).
        distances: descriptor distance of each pair, shape ``(N,)`` (``y_pred``: a distance,
            smaller = more alike, not a score).

    Returns:
        ``(fpr, tpr, thresholds)``, each of shape ``(K,)``, starting at ``(0, 0, -inf)`` and
        ending at ``(1, 1, max distance)``; ties are kept together.
    """
    from sklearn import metrics

    distances, labels = _pairs(distances, labels)
    fpr, tpr, scores = metrics.roc_curve(labels, -distances, drop_intermediate=False)
    return fpr, tpr, -scores


def fpr_at_recall(labels, distances, recall: float = 0.95) -> float:
    """The false positive rate at the smallest threshold that reaches ``recall`` (FPR95).

    Lower is better; 0 means every non-matching pair is farther than 95% of the matching ones.
    """
    if not 0 < recall <= 1:
        raise ValueError(f"recall must be in (0, 1], got {recall}.")
    fpr, tpr, _ = roc_curve(labels, distances)
    return float(fpr[np.argmax(tpr >= recall - 1e-12)])


def roc_auc(labels, distances) -> float:
    """Area under the ROC curve (1 = every matching pair closer than every non-matching one);
    ``sklearn.metrics.roc_auc_score`` on the negated distances."""
    from sklearn import metrics

    distances, labels = _pairs(distances, labels)
    return float(metrics.roc_auc_score(labels, -distances))


def verification_accuracy(labels, distances, threshold: float) -> float:
    """Fraction of pairs classified right by "same when the distance is at most threshold"."""
    distances, labels = _pairs(distances, labels)
    return float(np.mean((distances <= threshold) == labels))


def best_threshold(labels, distances) -> tuple[float, float]:
    """The threshold with the best verification accuracy on these pairs.

    Returns:
        ``(threshold, accuracy)``; the threshold sits halfway between two observed distances.
    """
    distances, labels = _pairs(distances, labels)
    fpr, tpr, thresholds = roc_curve(labels, distances)
    positives = labels.mean()
    accuracy = positives * tpr + (1 - positives) * (1 - fpr)
    k = int(np.argmax(accuracy))
    d = np.sort(np.unique(distances))
    if k == 0:
        threshold = d[0] - 1e-6
    else:
        above = d[d > thresholds[k]]
        threshold = thresholds[k] if above.size == 0 else (thresholds[k] + above[0]) / 2
    return float(threshold), float(accuracy[k])


def nearest_neighbors(queries, gallery) -> np.ndarray:
    """Index of each query's nearest gallery row (Euclidean distance).

    ``sklearn.metrics.pairwise_distances_argmin`` (chunked, so memory stays small).

    Args:
        queries: ``(Q, D)``; gallery: ``(G, D)`` with ``G >= 1``.

    Returns:
        int array ``(Q,)``.
    """
    from sklearn.metrics import pairwise_distances_argmin

    queries = np.asarray(queries, np.float64)
    gallery = np.asarray(gallery, np.float64)
    if gallery.ndim != 2 or len(gallery) == 0:
        raise ValueError(f"gallery must be a non-empty (G, D) array, got shape {gallery.shape}.")
    if queries.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries must be (Q, {gallery.shape[1]}), got shape {queries.shape}.")
    if len(queries) == 0:
        return np.zeros(0, np.int64)
    return pairwise_distances_argmin(queries, gallery).astype(np.int64)


def nearest_neighbor_accuracy(queries, query_labels, gallery, gallery_labels) -> float:
    """Fraction of queries whose nearest gallery descriptor has the query's label."""
    index = nearest_neighbors(queries, gallery)
    return float(np.mean(np.asarray(gallery_labels)[index] == np.asarray(query_labels)))


# --- feature points under a homography (notebook 17) ---------------------------------------

def project_points(points, homography) -> np.ndarray:
    """Applies a 3x3 homography to ``(N, 2)`` points given as ``(x, y)``
    (``skimage.transform.ProjectiveTransform``)."""
    from skimage.transform import ProjectiveTransform

    points = np.asarray(points, np.float64).reshape(-1, 2)
    h = np.asarray(homography, np.float64)
    if h.shape != (3, 3):
        raise ValueError(f"homography must be 3x3, got shape {h.shape}.")
    return ProjectiveTransform(matrix=h)(points)


def _inside(points, shape, border=0.0):
    h, w = shape[:2]
    return ((points[:, 0] >= border) & (points[:, 0] <= w - 1 - border)
            & (points[:, 1] >= border) & (points[:, 1] <= h - 1 - border))


def repeatability(points_1, points_2, homography, shape_1, shape_2,
                  pixel_threshold: float = 3.0) -> float:
    """Repeatability of detections (Mikolajczyk et al. style, by point distance).

    Points of image 1 that project inside image 2 (and points of image 2 whose back-projection
    falls inside image 1) are kept; a kept point repeats when the other image has a kept point
    within ``pixel_threshold`` pixels of its projection. Returns repeated / kept, averaged over
    both directions (0 when nothing is kept).
    """
    p1 = np.asarray(points_1, np.float64).reshape(-1, 2)
    p2 = np.asarray(points_2, np.float64).reshape(-1, 2)
    inv = np.linalg.inv(homography)
    p1 = p1[_inside(project_points(p1, homography), shape_2)]
    p2 = p2[_inside(project_points(p2, inv), shape_1)]
    if len(p1) == 0 or len(p2) == 0:
        return 0.0
    d = np.linalg.norm(project_points(p1, homography)[:, None] - p2[None], axis=-1)
    close = d <= pixel_threshold
    return float((close.any(1).sum() + close.any(0).sum()) / (len(p1) + len(p2)))


def match_descriptors(desc_1, desc_2, *, mutual: bool = True):
    """Nearest-neighbour matches from image 1 to image 2 (Euclidean distance), in the order of
    ``desc_1``: ``skimage.feature.match_descriptors`` with ``cross_check=mutual``.

    Returns:
        ``(i, j, distance)``: indices into ``desc_1`` and ``desc_2`` and the descriptor distance
        of each match (mutual nearest neighbours only when ``mutual``).
    """
    from skimage.feature import match_descriptors as skimage_match

    a = np.asarray(desc_1, np.float64)
    b = np.asarray(desc_2, np.float64)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    matches = skimage_match(a, b, metric="euclidean", cross_check=mutual)
    i, j = matches[:, 0].astype(np.int64), matches[:, 1].astype(np.int64)
    return i, j, np.linalg.norm(a[i] - b[j], axis=1)


def correct_matches(points_1, points_2, i, j, homography, pixel_threshold: float = 5.0):
    """Whether each match ``(i, j)`` is right: ``H p1[i]`` within ``pixel_threshold`` of ``p2[j]``."""
    if len(i) == 0:
        return np.zeros(0, bool)
    proj = project_points(np.asarray(points_1)[i], homography)
    return np.linalg.norm(proj - np.asarray(points_2, np.float64)[j], axis=1) <= pixel_threshold


def matching_score(points_1, points_2, desc_1, desc_2, homography, shape_1, shape_2,
                   pixel_threshold: float = 5.0) -> float:
    """Correct mutual nearest-neighbour matches divided by the detected points (both images'
    points that are visible in the other image, averaged), as in the LIFT paper."""
    p1 = np.asarray(points_1, np.float64).reshape(-1, 2)
    p2 = np.asarray(points_2, np.float64).reshape(-1, 2)
    keep_1 = _inside(project_points(p1, homography), shape_2)
    keep_2 = _inside(project_points(p2, np.linalg.inv(homography)), shape_1)
    p1, p2 = p1[keep_1], p2[keep_2]
    d1, d2 = np.asarray(desc_1)[keep_1], np.asarray(desc_2)[keep_2]
    if len(p1) == 0 or len(p2) == 0:
        return 0.0
    i, j, _ = match_descriptors(d1, d2)
    correct = correct_matches(p1, p2, i, j, homography, pixel_threshold).sum()
    return float(correct / ((len(p1) + len(p2)) / 2))


def matches_average_precision(points_1, points_2, desc_1, desc_2, homography,
                              pixel_threshold: float = 5.0) -> float:
    """Average precision of nearest-neighbour matches ranked by descriptor distance.

    Every point of image 1 is matched to its nearest neighbour in image 2; a match is a true
    positive when it is geometrically right. Recall is relative to the points of image 1 that
    have a detection within ``pixel_threshold`` of their projection (those that *can* match).
    """
    p1 = np.asarray(points_1, np.float64).reshape(-1, 2)
    p2 = np.asarray(points_2, np.float64).reshape(-1, 2)
    if len(p1) == 0 or len(p2) == 0:
        return 0.0
    proj = project_points(p1, homography)
    matchable = (np.linalg.norm(proj[:, None] - p2[None], axis=-1) <= pixel_threshold).any(1)
    if not matchable.any():
        return 0.0
    i, j, dist = match_descriptors(desc_1, desc_2, mutual=False)
    correct = correct_matches(p1, p2, i, j, homography, pixel_threshold)
    order = np.argsort(dist, kind="stable")
    hits = correct[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / matchable.sum())
