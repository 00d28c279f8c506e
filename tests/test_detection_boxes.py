"""bestiary_keras.detection.boxes against hand-computed values and degenerate inputs."""

import math

import numpy as np
import pytest
import tensorflow as tf

from bestiary_keras import geometry
from bestiary_keras.detection import boxes as B


# ----------------------------------------------------------------------------- offsets
def test_encode_matches_the_slides_formula_by_hand():
    anchor = np.array([0, 0, 10, 10], np.float32)  # centre (5, 5), size 10 x 10
    gt = np.array([2, 4, 22, 14], np.float32)  # centre (12, 9), size 20 x 10
    t = B.encode_boxes(gt, anchor)
    np.testing.assert_allclose(t, [0.7, 0.4, math.log(2.0), 0.0], atol=1e-6)
    t = B.encode_boxes(gt, anchor, variances=(0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(t, [7.0, 4.0, math.log(2.0) / 0.2, 0.0], atol=1e-5)
    assert isinstance(t, np.ndarray) and t.dtype == np.float32


@pytest.mark.parametrize("variances", [None, (0.1, 0.1, 0.2, 0.2)])
def test_decode_inverts_encode_numpy_and_tensors(variances):
    rng = np.random.default_rng(0)
    anchors = np.concatenate([rng.uniform(0, 40, (50, 2)), rng.uniform(45, 90, (50, 2))], 1)
    gts = anchors + rng.normal(0, 3, anchors.shape)
    deltas = B.encode_boxes(gts, anchors, variances)
    np.testing.assert_allclose(B.decode_boxes(deltas, anchors, variances), gts, atol=1e-3)
    # the same functions on tensors give tensors and the same numbers
    deltas_t = B.encode_boxes(tf.constant(gts, tf.float32), tf.constant(anchors, tf.float32),
                              variances)
    assert tf.is_tensor(deltas_t)
    np.testing.assert_allclose(deltas_t.numpy(), deltas, atol=1e-5)
    back = B.decode_boxes(deltas_t, tf.constant(anchors, tf.float32), variances)
    np.testing.assert_allclose(np.asarray(back), gts, atol=1e-3)


def test_encode_broadcasts_gt_over_anchors():
    anchors = np.array([[0, 0, 10, 10], [10, 10, 30, 30]], np.float32)
    out = B.encode_boxes(np.array([[0, 0, 10, 10]], np.float32)[:, None], anchors[None])
    assert out.shape == (1, 2, 4)


def test_zero_size_and_wild_values_stay_finite():
    anchors = np.array([[0, 0, 8, 8], [0, 0, 0, 0]], np.float32)
    padding = np.zeros((2, 4), np.float32)  # zero-size padding boxes
    assert np.all(np.isfinite(B.encode_boxes(padding, anchors)))
    huge = np.array([[0, 0, 1e4, 1e4]] * 2, np.float32)
    assert np.all(np.isfinite(B.decode_boxes(huge, anchors)))
    # and in a gradient: no NaN through a zero-size target either
    pred = tf.Variable(tf.zeros((2, 4)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.abs(pred - B.encode_boxes(tf.constant(padding), anchors)))
    assert np.all(np.isfinite(tape.gradient(loss, pred).numpy()))


def test_bad_variances_raise():
    with pytest.raises(ValueError, match="variances"):
        B.encode_boxes(np.zeros((1, 4)), np.ones((1, 4)), variances=(0.1, 0.1, 0.2))


# ----------------------------------------------------------------------------- valid boxes
def test_valid_boxes_after_clipping():
    boxes = np.array([[-5, -3, 10, 80], [70, 10, 90, 20], [5, 5, 9, 9]], np.float32)
    out = geometry.clip_boxes(boxes, (40, 64))  # height 40, width 64
    np.testing.assert_array_equal(out, [[0, 0, 10, 40], [64, 10, 64, 20], [5, 5, 9, 9]])
    np.testing.assert_array_equal(B.valid_boxes(out), [True, False, True])
    np.testing.assert_array_equal(B.valid_boxes(out, min_size=4.0), [True, False, False])
    assert tf.is_tensor(B.valid_boxes(tf.constant(out)))


# ----------------------------------------------------------------------------- NMS
def _nms(boxes, scores, **kwargs):
    """One image, one class: the kept boxes' indices (matched back by coordinates)."""
    out, out_scores, classes, count = B.non_max_suppression(
        boxes[None], scores[None, :, None], **kwargs)
    kept = out[0, : count[0]]
    assert np.all(out[0, count[0]:] == 0) and np.all(classes[0] == 0)
    return [int(np.flatnonzero(np.all(boxes == k, axis=1) & (scores == s))[0])
            for k, s in zip(kept, out_scores[0, : count[0]])]


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]],
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
    # box 1 overlaps box 0 with IoU 90/110 = 0.82, box 3 is box 0 again
    assert _nms(boxes, scores, iou_threshold=0.5) == [0, 2]
    assert _nms(boxes, scores, iou_threshold=0.85) == [0, 1, 2]
    assert _nms(boxes, scores, iou_threshold=0.5, max_output=1) == [0]
    assert _nms(boxes, scores, iou_threshold=0.5, score_threshold=0.75) == [0]
    out = B.non_max_suppression(tf.constant(boxes)[None], tf.constant(scores)[None, :, None])
    assert all(tf.is_tensor(t) for t in out)


def test_nms_empty_and_degenerate_inputs():
    out, scores, classes, count = B.non_max_suppression(np.zeros((1, 0, 4)), np.zeros((1, 0, 1)),
                                                        max_output=5)
    assert out.shape == (1, 5, 4) and count.tolist() == [0] and count.dtype == np.int32
    # all below the score threshold: nothing survives, no crash
    assert B.non_max_suppression(np.ones((1, 3, 4)), np.zeros((1, 3, 1)),
                                 score_threshold=0.5)[3].tolist() == [0]
    # zero-area boxes do not suppress each other (IoU 0), in the per-class path and in the
    # single-class one (detectors drop them before NMS: valid_boxes)
    count = B.non_max_suppression(np.zeros((1, 2, 4)), np.array([[[0.9, 0.0], [0.8, 0.0]]]),
                                  score_threshold=0.5)[3]
    assert count.tolist() == [2]
    assert _nms(np.zeros((2, 4), np.float32), np.array([0.9, 0.8], np.float32)) == [0, 1]
    with pytest.raises(ValueError, match="scores"):
        B.non_max_suppression(np.zeros((3, 4)), np.zeros(3))


def test_nms_is_per_class_and_per_image():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11]], np.float32)
    scores = np.zeros((3, 2), np.float32)
    scores[[0, 1, 2], [0, 1, 0]] = [0.9, 0.8, 0.7]  # box 2 (class 0) overlaps box 0
    out, out_scores, classes, count = B.non_max_suppression(
        np.stack([boxes, boxes - 50]), np.stack([scores, scores]), iou_threshold=0.5,
        score_threshold=0.05)
    np.testing.assert_array_equal(count, [2, 2])
    np.testing.assert_array_equal(classes[:, :2], [[0, 1], [0, 1]])
    np.testing.assert_array_equal(out[0, :2], boxes[:2])
    np.testing.assert_array_equal(out[1, :2], boxes[:2] - 50)
    np.testing.assert_allclose(out_scores[:, :2], [[0.9, 0.8], [0.9, 0.8]])
    # one box per class (Fast R-CNN): the class-1 copy of box 0 is moved away
    per_class = np.repeat(boxes[:, None], 2, axis=1)
    per_class[0, 1] += 100
    scores[0, 1] = 0.85
    out, _, classes, count = B.non_max_suppression(per_class[None], scores[None],
                                                   iou_threshold=0.5, score_threshold=0.05)
    assert count[0] == 3
    np.testing.assert_array_equal(out[0, :3], [boxes[0], boxes[0] + 100, boxes[1]])


def _reference_nms(boxes, scores, iou_threshold, max_output, score_threshold):
    """The code this entry point replaced: ``tf.image.non_max_suppression`` per image and per
    class (xyxy -> yxyx swapped by hand), merged by score."""
    found = []
    for k in range(scores.shape[-1]):
        b = boxes[:, k] if boxes.ndim == 3 else boxes
        keep = tf.image.non_max_suppression(b[:, [1, 0, 3, 2]], scores[:, k], max_output,
                                            iou_threshold, score_threshold).numpy()
        found += [(float(scores[i, k]), k, tuple(b[i])) for i in keep]
    return sorted(found, key=lambda f: -f[0])[:max_output]


@pytest.mark.parametrize("num_classes, per_class_boxes", [(1, False), (3, False), (3, True)])
def test_nms_matches_the_per_image_per_class_loops_it_replaced(num_classes, per_class_boxes):
    rng = np.random.default_rng(num_classes + per_class_boxes)
    shape = (4, 60, num_classes, 2) if per_class_boxes else (4, 60, 2)
    xy = rng.uniform(0, 50, shape).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(4, 20, shape).astype(np.float32)], -1)
    scores = rng.uniform(0, 1, (4, 60, num_classes)).astype(np.float32)
    scores[:, :5] = 0.5  # ties
    out, out_scores, classes, count = B.non_max_suppression(
        boxes, scores, iou_threshold=0.4, max_output=15, score_threshold=0.1)
    for i in range(4):
        ref = _reference_nms(boxes[i], scores[i], 0.4, 15, 0.1)
        got = [(float(s), int(c), tuple(b)) for b, s, c in
               zip(out[i, : count[i]], out_scores[i, : count[i]], classes[i, : count[i]])]
        assert sorted(got) == sorted(ref)
        assert [g[0] for g in got] == [r[0] for r in ref]  # best score first


# ----------------------------------------------------------------------------- anchors
def test_generate_anchors_positions_and_order():
    anchors = B.generate_anchors((2, 3), 8, scales=(8,), ratios=(1,))
    assert anchors.shape == (6, 4)
    np.testing.assert_array_equal(anchors[0], [0, 0, 8, 8])
    np.testing.assert_array_equal(anchors[1], [8, 0, 16, 8])  # next column
    np.testing.assert_array_equal(anchors[3], [0, 8, 8, 16])  # next row
    anchors = B.generate_anchors(4, 8, scales=(16, 32), ratios=(0.5, 1, 2))
    assert anchors.shape == (4 * 4 * 6, 4)
    w = anchors[:6, 2] - anchors[:6, 0]
    h = anchors[:6, 3] - anchors[:6, 1]
    np.testing.assert_allclose(w * h, [256] * 3 + [1024] * 3, rtol=1e-5)  # area = scale^2
    np.testing.assert_allclose(h / w, [0.5, 1, 2, 0.5, 1, 2], rtol=1e-5)  # ratio = h / w
    np.testing.assert_allclose((anchors[:6, :2] + anchors[:6, 2:]) / 2, 4.0)  # centre of cell
    with pytest.raises(ValueError, match="stride"):
        B.generate_anchors(4, 0, (16,), (1,))
    with pytest.raises(ValueError, match="ratios"):
        B.generate_anchors(4, 8, (16,), (0,))


def test_assign_anchors_by_hand():
    anchors = np.array([
        [0, 0, 10, 10],    # IoU 1 with object 0 -> positive
        [0, 0, 10, 20],    # IoU 0.5 -> neutral
        [20, 20, 30, 30],  # IoU 0 -> negative
        [45, 45, 55, 55],  # IoU 25/175 = 0.14 with object 2, but its best anchor -> positive
    ], np.float32)
    gt = np.array([[0, 0, 10, 10], [0, 0, 0, 0], [40, 40, 50, 50]], np.float32)  # row 1: padding
    labels, matched, max_iou = B.assign_anchors(anchors, gt, positive_iou=0.7, negative_iou=0.3)
    np.testing.assert_array_equal(labels, [1, -1, 0, 1])
    np.testing.assert_array_equal(matched, [0, 0, 0, 2])
    np.testing.assert_allclose(max_iou, [1, 0.5, 0, 25 / 175], rtol=1e-6)
    # batched with an explicit validity mask, tensors in and out
    labels, matched, _ = B.assign_anchors(tf.constant(anchors), tf.constant(gt[None]),
                                          tf.constant([[True, False, False]]),
                                          positive_iou=0.7, negative_iou=0.3)
    assert tf.is_tensor(labels)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 0]])
    # Fast R-CNN's RoI labelling: one threshold, no forced positives
    labels, _, _ = B.assign_anchors(anchors, gt, positive_iou=0.5, negative_iou=0.5,
                                    force_best=False)
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])


def test_assign_anchors_without_objects_or_anchors():
    """"Unmatched" has one meaning: ``matched == -1`` when an image has no object."""
    anchors = B.generate_anchors(2, 8, (8,), (1,))
    labels, matched, max_iou = B.assign_anchors(anchors, np.zeros((0, 4)))
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(matched, -1)
    np.testing.assert_array_equal(max_iou, 0)
    labels, matched, _ = B.assign_anchors(anchors, np.zeros((3, 4)))  # only padding
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(matched, -1)
    gt = np.zeros((2, 2, 4), np.float32)
    gt[0, 1] = [0, 0, 8, 8]
    labels, matched, _ = B.assign_anchors(anchors, gt, np.array([[False, True], [False, False]]))
    np.testing.assert_array_equal(matched, [[1, 1, 1, 1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(labels, [[1, 0, 0, 0], [0, 0, 0, 0]])
    labels, matched, _ = B.assign_anchors(np.zeros((0, 4)), np.array([[0, 0, 5, 5]]))
    assert labels.shape == matched.shape == (0,)
    # an object no anchor touches stays unmatched rather than forcing an IoU-0 anchor
    labels, _, _ = B.assign_anchors(anchors, np.array([[100, 100, 110, 110]]))
    np.testing.assert_array_equal(labels, 0)
    with pytest.raises(ValueError, match="negative_iou"):
        B.assign_anchors(anchors, np.zeros((0, 4)), positive_iou=0.3, negative_iou=0.7)


def test_sample_balanced_balances_and_pads():
    labels = np.array([[1] * 10 + [0] * 100 + [-1] * 10, [1] * 3 + [0] * 117, [-1] * 120])
    idx, sampled = (np.asarray(t) for t in B.sample_balanced(labels, 20, 0.5, seed=0))
    assert idx.shape == sampled.shape == (3, 20)
    assert (sampled[0] == 1).sum() == 10 and (sampled[0] == 0).sum() == 10
    assert (sampled[1] == 1).sum() == 3 and (sampled[1] == 0).sum() == 17  # padded with negatives
    assert np.all(sampled[2] == -1)  # nothing to sample: every pick ignored
    for b in range(2):
        assert len(set(idx[b])) == 20
        np.testing.assert_array_equal(labels[b][idx[b]], sampled[b])
    again = np.asarray(B.sample_balanced(labels, 20, 0.5, seed=0)[0])
    np.testing.assert_array_equal(again, idx)  # seeded
    with pytest.raises(ValueError, match="positive_fraction"):
        B.sample_balanced(labels, 8, 1.5)


def _reference_assign(anchors, gt_boxes, positive_iou, negative_iou):
    """The NumPy ``assign_anchors`` this package had before the in-graph one became the only
    one (one image; zero-area rows are padding; ``matched`` -1 without objects)."""
    n = len(anchors)
    labels, matched = np.zeros(n, np.int32), np.full(n, -1, np.int32)
    valid = np.flatnonzero(geometry.box_area(gt_boxes) > 0)
    if n == 0 or valid.size == 0:
        return labels, matched
    iou = geometry.pairwise_iou(anchors, gt_boxes[valid])
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(n), best]
    matched[:] = valid[best]
    labels[:] = -1
    labels[best_iou < negative_iou] = 0
    labels[best_iou >= positive_iou] = 1
    per_gt_best = iou.max(axis=0)
    forced_anchor, forced_gt = np.nonzero((iou == per_gt_best[None]) & (per_gt_best[None] > 0))
    labels[forced_anchor] = 1
    matched[forced_anchor] = valid[forced_gt]
    return labels, matched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_anchors_matches_the_former_numpy_version(seed):
    rng = np.random.default_rng(seed)
    anchors = B.generate_anchors(6, 8, (10, 20), (0.5, 1, 2))
    gt = np.zeros((2, 4, 4), np.float32)
    labels = -np.ones((2, 4), np.int32)
    for b, n in enumerate([3, 0]):
        xy = rng.uniform(0, 30, (n, 2))
        gt[b, :n] = np.concatenate([xy, xy + rng.uniform(8, 18, (n, 2))], -1)
        labels[b, :n] = rng.integers(0, 3, n)
    got, matched, _ = B.assign_anchors(tf.constant(anchors), tf.constant(gt),
                                       tf.constant(labels >= 0), positive_iou=0.7,
                                       negative_iou=0.3)
    for b in range(2):
        ref, ref_matched = _reference_assign(anchors, gt[b], 0.7, 0.3)
        np.testing.assert_array_equal(got.numpy()[b], ref)
        np.testing.assert_array_equal(matched.numpy()[b][ref == 1], ref_matched[ref == 1])
        if b == 1:  # no object: -1 in both ("unmatched" has one meaning)
            np.testing.assert_array_equal(matched.numpy()[b], ref_matched)
