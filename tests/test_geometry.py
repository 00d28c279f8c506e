"""Box geometry: hand-computed IoUs, conversions, clipping, empty and degenerate boxes."""

import numpy as np
import pytest

from bestiary_keras import geometry

A = [0.0, 0.0, 2.0, 2.0]          # area 4
B = [1.0, 1.0, 3.0, 3.0]          # area 4, overlap with A: 1x1 -> IoU 1/7
C = [10.0, 10.0, 12.0, 14.0]      # disjoint from A and B, area 8
POINT = [1.0, 1.0, 1.0, 1.0]      # zero area, inside A
LINE = [0.0, 1.0, 2.0, 1.0]       # zero height


def test_box_area_hand_cases():
    np.testing.assert_allclose(geometry.box_area([A, C, POINT, LINE]), [4, 8, 0, 0])
    # An inverted box counts as empty, never negative.
    assert geometry.box_area([3.0, 3.0, 1.0, 1.0]) == 0


def test_pairwise_iou_hand_cases():
    iou = geometry.pairwise_iou([A, B], [A, B, C])
    expected = [[1.0, 1 / 7, 0.0], [1 / 7, 1.0, 0.0]]
    np.testing.assert_allclose(iou, expected, rtol=1e-6)
    assert iou.dtype == np.float32


def test_pairwise_iou_contained_box():
    # A 1x1 box inside a 2x2 box: IoU = 1 / 4.
    np.testing.assert_allclose(geometry.pairwise_iou([A], [[0.5, 0.5, 1.5, 1.5]]), [[0.25]])


def test_pairwise_iou_empty_inputs():
    assert geometry.pairwise_iou(np.zeros((0, 4)), [A, B]).shape == (0, 2)
    assert geometry.pairwise_iou([A], np.zeros((0, 4))).shape == (1, 0)
    assert geometry.pairwise_iou(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 0)


def test_zero_area_boxes_give_zero_not_nan():
    iou = geometry.pairwise_iou([POINT, LINE, [0, 0, 0, 0]], [POINT, A, [0, 0, 0, 0]])
    assert np.all(np.isfinite(iou))
    np.testing.assert_array_equal(iou, np.zeros((3, 3)))


def test_elementwise_iou_matches_diagonal_and_broadcasts():
    boxes1 = np.array([A, B, C, POINT])
    boxes2 = np.array([B, B, A, POINT])
    np.testing.assert_allclose(geometry.elementwise_iou(boxes1, boxes2), [1 / 7, 1, 0, 0],
                               rtol=1e-6)
    # (2, 3, 4) against one box (4,): broadcasting over leading axes.
    grid = np.array([[A, B, C], [C, B, A]])
    np.testing.assert_allclose(geometry.elementwise_iou(grid, A),
                               [[1, 1 / 7, 0], [0, 1 / 7, 1]], rtol=1e-6)
    assert geometry.elementwise_iou(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0,)


def test_conversions_hand_case_and_round_trip():
    np.testing.assert_allclose(geometry.xyxy_to_cxcywh([C]), [[11, 12, 2, 4]])
    np.testing.assert_allclose(geometry.cxcywh_to_xyxy([[11, 12, 2, 4]]), [C])
    boxes = np.random.default_rng(0).uniform(0, 50, size=(5, 3, 4)).astype(np.float32)
    boxes[..., 2:] += boxes[..., :2]
    np.testing.assert_allclose(geometry.cxcywh_to_xyxy(geometry.xyxy_to_cxcywh(boxes)), boxes,
                               atol=1e-5)
    assert geometry.xyxy_to_cxcywh(np.zeros((0, 4))).shape == (0, 4)


def test_clip_boxes():
    clipped = geometry.clip_boxes([[-5, 2, 8, 20], [12, 12, 15, 15]], 10)
    np.testing.assert_allclose(clipped, [[0, 2, 8, 10], [10, 10, 10, 10]])
    assert geometry.box_area(clipped)[1] == 0  # outside -> degenerate
    # (height, width): x is clipped to the width, y to the height
    np.testing.assert_allclose(geometry.clip_boxes([[-5, -3, 80, 80]], (40, 64)),
                               [[0, 0, 64, 40]])
    with pytest.raises(ValueError, match="image_size"):
        geometry.clip_boxes([A], (-1, 10))
    with pytest.raises(ValueError, match="image_size"):
        geometry.clip_boxes([A], (1, 2, 3))


def test_window_encoding_hand_case_and_round_trip():
    window = [0, 0, 64, 64]
    # Centre (40, 24), size 16 x 8 in a 64 window centred at (32, 32).
    params = geometry.encode_window_boxes([[32, 20, 48, 28]], window)
    np.testing.assert_allclose(params, [[8 / 64, -8 / 64, 16 / 64, 8 / 64]])
    np.testing.assert_allclose(geometry.decode_window_boxes(params, window), [[32, 20, 48, 28]])
    # A shifted window: the same box relative to [32, 0, 96, 64] has dx = (40 - 64) / 64.
    shifted = geometry.encode_window_boxes([[32, 20, 48, 28]], [32, 0, 96, 64])
    np.testing.assert_allclose(shifted[0, 0], -24 / 64)
    # Negative predicted sizes decode to degenerate boxes, never inverted ones.
    decoded = geometry.decode_window_boxes([[0, 0, -0.5, 0.25]], window)
    np.testing.assert_allclose(decoded, [[32, 24, 32, 40]])
    with pytest.raises(ValueError, match="positive width"):
        geometry.encode_window_boxes([A], [0, 0, 0, 10])


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="last axis of size 4"):
        geometry.pairwise_iou(np.zeros((3, 5)), np.zeros((2, 4)))


def test_tensors_give_tensors_with_the_numpy_values():
    """One function per concept (``geometry.xp``): tensors in, tensors out, same numbers as the
    NumPy path. The values are those of the former ``ops_*`` twins, which these tests pinned."""
    import tensorflow as tf
    from keras import ops

    rng = np.random.default_rng(1)
    boxes1 = rng.uniform(0, 20, size=(6, 4)).astype(np.float32)
    boxes2 = rng.uniform(0, 20, size=(4, 4)).astype(np.float32)
    for b in (boxes1, boxes2):
        b[:, 2:] = b[:, :2] + rng.uniform(0, 10, size=(len(b), 2))
    boxes1[0] = POINT
    boxes2[0] = POINT
    t1, t2 = tf.constant(boxes1), tf.constant(boxes2)
    cases = [
        (geometry.pairwise_iou(t1, t2), geometry.pairwise_iou(boxes1, boxes2)),
        (geometry.elementwise_iou(t1[:4], t2), geometry.elementwise_iou(boxes1[:4], boxes2)),
        (geometry.xyxy_to_cxcywh(t1), geometry.xyxy_to_cxcywh(boxes1)),
        (geometry.cxcywh_to_xyxy(t1), geometry.cxcywh_to_xyxy(boxes1)),
        (geometry.clip_boxes(t1, (12, 10)), geometry.clip_boxes(boxes1, (12, 10))),
        (geometry.box_area(t1), geometry.box_area(boxes1)),
    ]
    for tensor, array in cases:
        assert tf.is_tensor(tensor) and isinstance(array, np.ndarray)
        np.testing.assert_array_equal(ops.convert_to_numpy(tensor), array)
    assert tuple(geometry.pairwise_iou(tf.zeros((0, 4)), t2).shape) == (0, 4)
    np.testing.assert_allclose(ops.convert_to_numpy(geometry.pairwise_iou(
        tf.constant([A, B]), tf.constant([A, B, C]))), [[1, 1 / 7, 0], [1 / 7, 1, 0]], rtol=1e-6)


def test_tensor_iou_has_finite_gradient_on_degenerate_boxes():
    import tensorflow as tf

    pred = tf.Variable([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    target = tf.constant([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(geometry.elementwise_iou(pred, target))
    grad = tape.gradient(loss, pred)
    assert np.all(np.isfinite(grad.numpy()))
    np.testing.assert_allclose(loss.numpy(), 1 / 7, rtol=1e-6)
