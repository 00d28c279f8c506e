"""The library calls that replaced hand-written NumPy in metric_learning (issue 19) give the
values of the code they replaced. Each ``_old_*`` function is that code, kept here as the
reference (it is nowhere in the package)."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, maximum_filter

from bestiary_keras.metric_learning import evaluation, lift_pipeline


def _old_roc_curve(distances, labels):
    distances = np.asarray(distances, np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(distances, kind="stable")
    d, y = distances[order], labels[order]
    last_of_tie = np.r_[np.diff(d) > 0, True]
    tp = np.cumsum(y)[last_of_tie]
    fp = np.cumsum(~y)[last_of_tie]
    return (np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()],
            np.r_[-np.inf, d[last_of_tie]])


def _old_nearest_neighbors(queries, gallery):
    g2 = (gallery ** 2).sum(1)
    return np.argmin(g2[None, :] - 2 * queries @ gallery.T, axis=1)


def _old_project_points(points, h):
    p = np.c_[points, np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:3]


def _old_match_descriptors(a, b, mutual):
    d = np.sqrt(np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * a @ b.T, 0))
    j = d.argmin(1)
    i = np.arange(len(a))
    if mutual:
        keep = d.argmin(0)[j] == i
        i, j = i[keep], j[keep]
    return i, j, d[i, j]


def _old_peaks(s, max_points, border, nms_size):
    peaks = s == maximum_filter(s, size=nms_size)
    peaks[:border] = peaks[-border:] = False
    peaks[:, :border] = peaks[:, -border:] = False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-s[ys, xs], kind="stable")[:max_points]
    return np.stack([xs[order], ys[order]], -1).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_functions_equal_the_hand_written_roc_with_ties(seed):
    rng = np.random.default_rng(seed)
    distances = np.round(rng.random(300), 2)  # many ties
    labels = (rng.random(300) < 0.4).astype(int)
    fpr, tpr, thresholds = evaluation.roc_curve(labels, distances)
    old_fpr, old_tpr, old_thresholds = _old_roc_curve(distances, labels)
    np.testing.assert_array_equal(fpr, old_fpr)
    np.testing.assert_array_equal(tpr, old_tpr)
    np.testing.assert_array_equal(thresholds, old_thresholds)  # distances, -inf first
    old_auc = np.sum(np.diff(old_fpr) * (old_tpr[1:] + old_tpr[:-1]) / 2)
    assert evaluation.roc_auc(labels, distances) == pytest.approx(old_auc, abs=1e-14)


def test_roc_auc_reads_distances_not_scores():
    # matching pairs closer than every non-matching one: AUC 1, not 0
    assert evaluation.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.9, 1.0]) == 1.0
    assert evaluation.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.9, 1.0]) == 0.0


def test_nearest_neighbors_equal_the_numpy_search():
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(2500, 16)), rng.normal(size=(300, 16))
    np.testing.assert_array_equal(evaluation.nearest_neighbors(queries, gallery),
                                  _old_nearest_neighbors(queries, gallery))
    assert evaluation.nearest_neighbors(np.zeros((0, 16)), gallery).shape == (0,)


def test_project_points_equals_the_homogeneous_product():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 256, (100, 2))
    h = np.eye(3) + rng.normal(0, 0.01, (3, 3))
    h[2, :2] *= 0.01
    np.testing.assert_allclose(evaluation.project_points(points, h),
                               _old_project_points(points, h), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="3x3"):
        evaluation.project_points(points, np.eye(2))


@pytest.mark.parametrize("mutual", [True, False])
def test_match_descriptors_gives_the_same_pairs_in_the_same_order(mutual):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(120, 32)), rng.normal(size=(90, 32))
    i, j, distance = evaluation.match_descriptors(a, b, mutual=mutual)
    old_i, old_j, old_distance = _old_match_descriptors(a, b, mutual)
    np.testing.assert_array_equal(i, old_i)
    np.testing.assert_array_equal(j, old_j)
    np.testing.assert_allclose(distance, old_distance, rtol=0, atol=1e-12)
    empty = evaluation.match_descriptors(np.zeros((0, 32)), b)
    assert all(len(x) == 0 for x in empty)


class _ScoreMap:
    """Stands in for DET: returns a fixed score map whatever the image."""

    def __init__(self, scores):
        self.scores = scores

    def __call__(self, images, training=False):
        return self.scores[None]


@pytest.mark.parametrize("max_points", [50, 300, 5000])
def test_detect_learned_picks_the_peaks_of_the_maximum_filter(max_points):
    rng = np.random.default_rng(0)
    scores = gaussian_filter(rng.normal(size=(128, 160)), 1.5).astype(np.float32)
    points = lift_pipeline.detect_learned(_ScoreMap(scores), np.zeros((128, 160)), max_points)
    np.testing.assert_array_equal(points, _old_peaks(scores, max_points, 16, 5))
    with pytest.raises(ValueError, match="nms_size"):
        lift_pipeline.detect_learned(_ScoreMap(scores), np.zeros((128, 160)), nms_size=4)
