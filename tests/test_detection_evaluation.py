"""bestiary_keras.detection.evaluation: hand cases and agreement with pycocotools."""

import numpy as np
import pytest

from bestiary_keras.detection import evaluation as E

A = [0, 0, 10, 10]
B_ = [20, 20, 30, 30]
NO_DETECTIONS = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))


def test_perfect_detections_give_one():
    gts = [(np.array([A, B_]), np.array([0, 1])), (np.array([B_]), np.array([1]))]
    dets = [(np.array([A, B_]), np.array([0.9, 0.8]), np.array([0, 1])),
            (np.array([B_]), np.array([0.7]), np.array([1]))]
    m, per_class = E.voc_average_precision(dets, gts)
    assert m == 1.0 and np.all(per_class == 1.0)
    assert E.coco_average_precision(dets, gts) == pytest.approx((1.0, 1.0))


def test_duplicate_detection_is_a_false_positive():
    gts = [(np.array([A, B_]), np.array([0, 0]))]
    dets = [(np.array([A, [0, 0, 10, 9], B_]), np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]))]
    scores, is_tp, count = E.match_detections(dets, gts, 0)
    np.testing.assert_array_equal(is_tp, [True, False, True])
    assert count == 2
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    m, _ = E.voc_average_precision(dets, gts)
    assert m == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_wrong_class_and_poor_overlap_are_false_positives():
    gts = [(np.array([A]), np.array([0]))]
    dets = [(np.array([A, [0, 0, 10, 4]]), np.array([0.9, 0.8]), np.array([1, 0]))]
    m, per_class = E.voc_average_precision(dets, gts, num_classes=2)
    assert m == 0.0 and per_class[0] == 0.0 and np.isnan(per_class[1])


def test_images_without_objects():
    # a confident detection on an empty image ranks first: precision 0 then 1/2 -> AP 0.5
    gts = [(np.array([A]), np.array([0])), (np.zeros((0, 4)), np.zeros(0, int))]
    dets = [(np.array([A]), np.array([0.9]), np.array([0])),
            (np.array([B_]), np.array([0.95]), np.array([0]))]
    assert E.voc_average_precision(dets, gts)[0] == pytest.approx(0.5)
    # an empty image with no detections changes nothing
    assert E.voc_average_precision([dets[0], NO_DETECTIONS], gts)[0] == 1.0
    # padding rows (class -1, zero box) of the scene generator are ignored
    padded = [(np.array([A, [0, 0, 0, 0]]), np.array([0, -1])), gts[1]]
    assert E.voc_average_precision([dets[0], NO_DETECTIONS], padded)[0] == 1.0
    # no objects anywhere: 0, not NaN, no crash
    m, per_class = E.voc_average_precision(dets, [gts[1], gts[1]], num_classes=3)
    assert m == 0.0 and np.all(np.isnan(per_class))
    assert E.coco_average_precision(dets, [gts[1], gts[1]]) == (0.0, 0.0)


def test_no_detections_at_all_gives_zero():
    gts = [(np.array([A]), np.array([0])), (np.array([B_]), np.array([2]))]
    m, per_class = E.voc_average_precision([NO_DETECTIONS] * 2, gts, num_classes=3)
    assert m == 0.0 and per_class[0] == 0.0 and np.isnan(per_class[1])
    assert E.coco_average_precision([NO_DETECTIONS] * 2, gts) == (0.0, 0.0)
    assert E.voc_average_precision([], [])[0] == 0.0


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError, match="one entry per image"):
        E.voc_average_precision([NO_DETECTIONS], [])
    with pytest.raises(ValueError, match="same length"):
        E.voc_average_precision([(np.zeros((2, 4)), np.zeros(1), np.zeros(2))],
                                [(np.zeros((0, 4)), np.zeros(0))])


def _random_problem(seed, num_images=60, num_classes=3):
    """Jittered true boxes (some misclassified or badly placed) plus random false positives."""
    rng = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 5))
        xy = rng.uniform(0, 48, (g, 2))
        wh = rng.uniform(6, 16, (g, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        classes = rng.integers(0, num_classes, g)
        gts.append((boxes, classes))
        keep = rng.random(g) < 0.85  # some objects are missed
        det = boxes[keep] + rng.normal(0, 1.5, (int(keep.sum()), 4))
        det_classes = np.where(rng.random(len(det)) < 0.9, classes[keep],
                               rng.integers(0, num_classes, len(det)))
        f = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 48, (f, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(6, 16, (f, 2))], 1)
        all_boxes = np.concatenate([det, false]).reshape(-1, 4)
        scores = np.concatenate([rng.uniform(0.3, 1.0, len(det)), rng.uniform(0, 0.8, f)])
        dets.append((all_boxes, scores, np.concatenate([det_classes, rng.integers(0, 3, f)])))
    return dets, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_ap_agrees_with_pycocotools_ap50(seed):
    """Same detections, two implementations: VOC all-point AP vs COCO's AP50.

    They differ by construction only in COCO's 101-point interpolation (and COCO's matching of
    a detection to the best still-unmatched object): tolerance 0.01 (seen: < 0.002).
    """
    dets, gts = _random_problem(seed)
    voc, _ = E.voc_average_precision(dets, gts, num_classes=3)
    ap, ap50 = E.coco_average_precision(dets, gts, num_classes=3)
    assert 0.3 < voc < 0.95  # a non-trivial case
    assert abs(voc - ap50) < 0.01, (voc, ap50)
    assert ap < ap50


def test_proposal_recall():
    gts = [np.array([A, B_, [0, 0, 0, 0]]), np.zeros((0, 4))]
    proposals = [np.array([[0, 0, 10, 9], [50, 50, 60, 60], [20, 20, 30, 31]]), np.zeros((0, 4))]
    assert E.proposal_recall(proposals, gts) == 1.0
    assert E.proposal_recall(proposals, gts, top_k=2) == 0.5
    assert E.proposal_recall([np.zeros((0, 4))] * 2, gts) == 0.0
    assert E.proposal_recall([np.zeros((0, 4))], [np.zeros((0, 4))]) == 0.0


def test_pad_detections():
    dets = [(np.array([A, B_]), np.array([0.9, 0.2]), np.array([1, 0])), NO_DETECTIONS]
    boxes, labels, scores = E.pad_detections(dets, min_score=0.5)
    assert boxes.shape == (2, 1, 4)
    np.testing.assert_array_equal(labels, [[1], [-1]])
    np.testing.assert_allclose(scores, [[0.9], [0.0]])
