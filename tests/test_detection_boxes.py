"""bestiary_keras.detection.boxes against hand-computed values and degenerate inputs."""

import math

import numpy as np
import pytest
import tensorflow as tf

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


# ----------------------------------------------------------------------------- clipping
def test_clip_boxes_to_image_and_out_of_image_boxes():
    boxes = np.array([[-5, -3, 10, 80], [70, 10, 90, 20], [5, 5, 9, 9]], np.float32)
    out = B.clip_boxes(boxes, (40, 64))  # height 40, width 64
    np.testing.assert_array_equal(out, [[0, 0, 10, 40], [64, 10, 64, 20], [5, 5, 9, 9]])
    np.testing.assert_array_equal(B.valid_boxes(out), [True, False, True])
    t = B.clip_boxes(tf.constant(boxes), 64)
    assert tf.is_tensor(t)
    np.testing.assert_array_equal(t.numpy()[0], [0, 0, 10, 64])
    assert B.clip_boxes(np.zeros((0, 4)), 64).shape == (0, 4)
    with pytest.raises(ValueError, match="image_size"):
        B.clip_boxes(boxes, (1, 2, 3))


# ----------------------------------------------------------------------------- NMS
def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]],
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.1], np.float32)
    # box 1 overlaps box 0 with IoU 90/110 = 0.82, box 3 is box 0 again
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.5), [0, 2])
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.85), [0, 1, 2])
    np.testing.assert_array_equal(B.non_max_suppression(boxes, scores, 0.5, max_output=1), [0])
    np.testing.assert_array_equal(
        B.non_max_suppression(boxes, scores, 0.5, score_threshold=0.75), [0])
    keep = B.non_max_suppression(tf.constant(boxes), tf.constant(scores), 0.5)
    assert tf.is_tensor(keep)


def test_nms_empty_and_degenerate_inputs():
    keep = B.non_max_suppression(np.zeros((0, 4)), np.zeros(0))
    assert keep.shape == (0,) and keep.dtype == np.int32
    assert B.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)).shape == (0,)
    # all below the score threshold: nothing survives, no crash
    assert B.non_max_suppression(np.ones((3, 4)), np.zeros(3), score_threshold=0.5).size == 0
    # zero-area boxes do not suppress each other (IoU 0)
    np.testing.assert_array_equal(
        B.non_max_suppression(np.zeros((2, 4)), np.array([0.9, 0.8])), [0, 1])


def test_batched_nms_is_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 1, 0])
    np.testing.assert_array_equal(B.batched_nms(boxes, scores, classes, 0.5), [0, 1])
    np.testing.assert_array_equal(B.batched_nms(boxes - 50, scores, classes, 0.5), [0, 1])


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
    labels, matched = B.assign_anchors(anchors, gt, 0.7, 0.3)
    np.testing.assert_array_equal(labels, [1, -1, 0, 1])
    assert matched[0] == 0 and matched[1] == 0 and matched[3] == 2


def test_assign_anchors_without_objects_or_anchors():
    anchors = B.generate_anchors(2, 8, (8,), (1,))
    labels, matched = B.assign_anchors(anchors, np.zeros((0, 4)))
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(matched, -1)
    labels, matched = B.assign_anchors(anchors, np.zeros((3, 4)))  # only padding
    np.testing.assert_array_equal(labels, 0)
    labels, matched = B.assign_anchors(np.zeros((0, 4)), np.array([[0, 0, 5, 5]]))
    assert labels.shape == matched.shape == (0,)
    # an object no anchor touches stays unmatched rather than forcing an IoU-0 anchor
    labels, _ = B.assign_anchors(anchors, np.array([[100, 100, 110, 110]]))
    np.testing.assert_array_equal(labels, 0)
    with pytest.raises(ValueError, match="negative_iou"):
        B.assign_anchors(anchors, np.zeros((0, 4)), 0.3, 0.7)


def test_sample_balanced():
    labels = np.array([1] * 10 + [0] * 100 + [-1] * 5)
    out = B.sample_balanced(labels, 20, 0.5, np.random.default_rng(0))
    assert (out == 1).sum() == 10 and (out == 0).sum() == 10
    assert np.all(out[labels == -1] == -1)
    assert np.all(labels[out == 1] == 1) and np.all(labels[out == 0] == 0)
    few = np.array([1] * 3 + [0] * 100)
    out = B.sample_balanced(few, 20, 0.5, 0)
    assert (out == 1).sum() == 3 and (out == 0).sum() == 17  # padded with negatives
    np.testing.assert_array_equal(out, B.sample_balanced(few, 20, 0.5, 0))  # seeded
    assert np.all(B.sample_balanced(np.zeros(0, int), 8, 0.5, 0) == -1)
    with pytest.raises(ValueError, match="positive_fraction"):
        B.sample_balanced(labels, 8, 1.5)
