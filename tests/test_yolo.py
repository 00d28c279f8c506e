"""YOLO v1 (notebook 06): targets, the loss term by term against hand-computed numbers,
NaN-free square roots, decoding + NMS, augmentation and the builder."""

import numpy as np
import pytest
import tensorflow as tf

from bestiary_keras import batching
from bestiary_keras.detection import yolo, yolo_data

# ----------------------------------------------------------------------------- the hand example
# A 2 x 2 grid (S = 2), B = 2 boxes per cell, C = 2 classes, one object.
# Coordinates in image fractions: cell (row 0, col 1) covers x in [0.5, 1], y in [0, 0.5].
#
# Ground truth: centre (0.75, 0.25), w = h = 0.25, class 1
#   -> cell (row 0, col 1), offsets x = (0.75 * 2) - 1 = 0.5, y = 0.25 * 2 - 0 = 0.5
#   -> xyxy [0.625, 0.125, 0.875, 0.375], area 0.0625.
#
# Predictions in that cell (x, y, w, h, confidence):
#   box 1: (0.4, 0.5, 0.16, 0.16, 0.8): centre ((1 + 0.4) / 2, (0 + 0.5) / 2) = (0.7, 0.25)
#          xyxy [0.62, 0.17, 0.78, 0.33], area 0.0256
#          intersection with the truth: x [0.625, 0.78] = 0.155, y [0.17, 0.33] = 0.16
#          -> 0.155 * 0.16 = 0.0248; union 0.0625 + 0.0256 - 0.0248 = 0.0633
#          -> IoU_1 = 0.0248 / 0.0633 = 0.391785...
#   box 2: (0.5, 0.5, 0.04, 0.04, 0.3): centre (0.75, 0.25), inside the truth
#          -> IoU_2 = 0.04^2 / 0.0625 = 0.0256
#   class probabilities of the cell: (0.3, 0.7)
#   => box 1 has the higher IoU: it is the responsible predictor (1_ij^obj), box 2 is not.
# Other cells (class probabilities are not used there), confidences of box 1 / box 2:
#   (row 0, col 0): 0.2 / 0.1,  (row 1, col 0): 0.0 / 0.0,  (row 1, col 1): 0.4 / 0.0
#
# The terms (lambda_coord = 5, lambda_noobj = 0.5):
#   xy    = 5 * [(0.4 - 0.5)^2 + (0.5 - 0.5)^2]                        = 5 * 0.01 = 0.05
#   wh    = 5 * [(sqrt(0.16) - sqrt(0.25))^2 + (sqrt(0.16) - sqrt(0.25))^2]
#         = 5 * [(0.4 - 0.5)^2 * 2]                                    = 5 * 0.02 = 0.1
#   obj   = (0.8 - IoU_1)^2 = (0.8 - 0.391785)^2 = 0.408215^2          = 0.166639...
#   noobj = 0.5 * [0.3^2 (box 2 of the object's cell) + 0.2^2 + 0.1^2 + 0^2 + 0^2 + 0.4^2 + 0^2]
#         = 0.5 * (0.09 + 0.04 + 0.01 + 0.16)                          = 0.15
#   class = (0.3 - 0)^2 + (0.7 - 1)^2                                  = 0.18
#   total = 0.05 + 0.1 + 0.166639 + 0.15 + 0.18                        = 0.646639
IOU_1 = 0.0248 / 0.0633
HAND = {"xy": 0.05, "wh": 0.1, "obj": (0.8 - IOU_1) ** 2, "noobj": 0.15, "class": 0.18}
HAND["total"] = sum(HAND.values())


def hand_example():
    y_true = np.zeros((1, 2, 2, 5 + 2), np.float32)
    y_true[0, 0, 1] = [1, 0.5, 0.5, 0.25, 0.25, 0, 1]
    y_pred = np.zeros((1, 2, 2, 5 * 2 + 2), np.float32)
    y_pred[..., :10] = [0.5, 0.5, 0.5, 0.5, 0.0] * 2
    y_pred[..., 10:] = 0.5
    y_pred[0, 0, 1] = [0.4, 0.5, 0.16, 0.16, 0.8, 0.5, 0.5, 0.04, 0.04, 0.3, 0.3, 0.7]
    y_pred[0, 0, 0, [4, 9]] = [0.2, 0.1]
    y_pred[0, 1, 1, [4, 9]] = [0.4, 0.0]
    return y_true, y_pred


def test_loss_terms_match_the_hand_computed_example():
    y_true, y_pred = hand_example()
    terms = yolo.yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=2, num_classes=2)
    for name, expected in HAND.items():
        np.testing.assert_allclose(np.asarray(terms[name]), [expected], rtol=1e-5, err_msg=name)
    assert HAND["total"] == pytest.approx(0.646639, abs=1e-6)


def test_responsible_predictor_is_the_one_with_the_highest_iou():
    y_true, y_pred = hand_example()
    # swap the two boxes of the object's cell: now the second predictor is responsible, and the
    # same numbers come out (the loss does not care which slot holds the better box)
    cell = y_pred[0, 0, 1].copy()
    y_pred[0, 0, 1, 0:5], y_pred[0, 0, 1, 5:10] = cell[5:10], cell[0:5]
    terms = yolo.yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=2, num_classes=2)
    for name, expected in HAND.items():
        np.testing.assert_allclose(np.asarray(terms[name]), [expected], rtol=1e-5, err_msg=name)


def test_lambdas_scale_their_terms_only():
    y_true, y_pred = hand_example()
    terms = yolo.yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=2, num_classes=2,
                                    lambda_coord=1.0, lambda_noobj=1.0)
    np.testing.assert_allclose(terms["xy"], [0.01], rtol=1e-5)
    np.testing.assert_allclose(terms["wh"], [0.02], rtol=1e-5)
    np.testing.assert_allclose(terms["noobj"], [0.30], rtol=1e-5)
    np.testing.assert_allclose(terms["class"], [0.18], rtol=1e-5)


def test_keras_loss_averages_images_and_an_empty_image_has_only_noobj():
    y_true, y_pred = hand_example()
    empty_true = np.zeros_like(y_true)
    y_true2 = np.concatenate([y_true, empty_true])
    y_pred2 = np.concatenate([y_pred, y_pred])
    per_image = np.asarray(yolo.yolo_v1_loss(y_true2, y_pred2, boxes_per_cell=2, num_classes=2))
    # no object: every predictor is 1_ij^noobj: 0.5 * (0.8^2 + 0.3^2 + 0.2^2 + 0.1^2 + 0.4^2)
    #   = 0.5 * 0.94 = 0.47
    np.testing.assert_allclose(per_image, [HAND["total"], 0.47], rtol=1e-5)
    loss = yolo.YoloV1Loss(boxes_per_cell=2, num_classes=2)
    np.testing.assert_allclose(float(loss(y_true2, y_pred2)), per_image.mean(), rtol=1e-5)
    assert yolo.YoloV1Loss.from_config(loss.get_config()).lambda_noobj == 0.5


def test_safe_sqrt_is_exact_above_eps_and_finite_at_zero():
    x = tf.constant([0.0, 1e-9, 1e-6, 0.04, 0.25, -0.1])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = yolo.safe_sqrt(x)
    grad = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(y.numpy()[3:5], [0.2, 0.5], rtol=1e-6)
    assert y.numpy()[0] == 0.0 and y.numpy()[5] == 0.0
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad[3:5], [1 / (2 * 0.2), 1 / (2 * 0.5)], rtol=1e-5)
    # the slide's term with a plain sqrt: an infinite gradient at w = 0 (times a sigmoid's
    # derivative that underflowed to 0, or in Adam's moments, it becomes NaN)
    with tf.GradientTape() as tape:
        tape.watch(x)
        plain = tf.reduce_sum(tf.square(tf.sqrt(tf.maximum(x, 0.0)) - 0.5))
    assert np.isinf(tape.gradient(plain, x).numpy()[0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        safe = tf.reduce_sum(tf.square(yolo.safe_sqrt(x) - 0.5))
    assert np.all(np.isfinite(tape.gradient(safe, x).numpy()))


def test_loss_and_gradients_are_finite_for_zero_width_and_height():
    y_true, y_pred = hand_example()
    y_true[0, 1, 1] = [1, 0.5, 0.5, 0.0, 0.0, 1, 0]  # a degenerate ground-truth box too
    y_pred[..., [2, 3, 7, 8]] = 0.0  # every predicted w = h = 0 (IoU 0 everywhere)
    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(yolo.yolo_v1_loss(y_true, pred, boxes_per_cell=2, num_classes=2))
    grad = tape.gradient(loss, pred).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    # the true box has w = h = 0.25: the responsible predictor (the first, all IoUs being 0)
    # is pulled to grow, i.e. its w gradient is negative
    assert grad[0, 0, 1, 2] < 0 and grad[0, 0, 1, 3] < 0


def test_loss_rejects_mismatched_channels():
    y_true, y_pred = hand_example()
    with pytest.raises(ValueError, match="5B \\+ C"):
        yolo.yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=3, num_classes=2)


# ----------------------------------------------------------------------------- targets
def test_encode_targets_by_hand():
    # 64 x 64 image, S = 8 (cells of 8 pixels). Box [12, 20, 28, 36]: centre (20, 28)
    # -> column 20 // 8 = 2, x = 20 / 8 - 2 = 0.5; row 28 // 8 = 3, y = 0.5; w = h = 16 / 64
    boxes = np.array([[[12, 20, 28, 36], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[2, -1]])
    targets = yolo_data.encode_yolo_v1_targets(boxes, labels, 64, 8, 3)
    assert targets.shape == (1, 8, 8, 8)
    np.testing.assert_allclose(targets[0, 3, 2], [1, 0.5, 0.5, 0.25, 0.25, 0, 0, 1])
    assert targets[..., 0].sum() == 1  # padding is skipped


def test_one_object_per_cell_the_largest_wins():
    # two centres in cell (row 3, col 2): the larger box is kept, the other one is dropped
    boxes = np.array([[[18, 26, 22, 30], [8, 16, 32, 40]]], np.float32)
    labels = np.array([[0, 1]])
    targets = yolo_data.encode_yolo_v1_targets(boxes, labels, 64, 8, 2)
    np.testing.assert_allclose(targets[0, 3, 2], [1, 0.5, 0.5, 0.375, 0.375, 0, 1])
    assert targets[..., 0].sum() == 1
    assert yolo_data.count_dropped_objects(boxes, labels, 64, 8) == 1


def test_encode_rejects_a_class_beyond_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        yolo_data.encode_yolo_v1_targets(np.array([[[0, 0, 8, 8]]], np.float32), np.array([[3]]),
                                    64, 8, 3)


# ----------------------------------------------------------------------------- decoding
def test_decode_and_detections_recover_a_perfect_prediction():
    boxes = np.array([[[12, 20, 28, 36], [40, 8, 60, 20]]], np.float32)
    labels = np.array([[2, 0]])
    targets = yolo_data.encode_yolo_v1_targets(boxes, labels, 64, 8, 3)
    pred = np.zeros((1, 8, 8, 5 * 2 + 3), np.float32)
    pred[..., 0:4] = targets[..., 1:5]
    pred[..., 4] = targets[..., 0]  # confidence 1 where an object is, 0 elsewhere
    pred[..., 10:] = np.where(targets[..., :1] > 0, targets[..., 5:], 1.0 / 3)
    out_boxes, conf, probs = yolo.decode_yolo_v1(pred, 64, boxes_per_cell=2, num_classes=3)
    assert out_boxes.shape == (1, 128, 4) and conf.shape == (1, 128) and probs.shape == (1, 128, 3)
    (det_boxes, scores, classes), = yolo.yolo_v1_detections(pred, 64, boxes_per_cell=2,
                                                            num_classes=3)
    order = np.argsort(classes)
    np.testing.assert_allclose(det_boxes[order], boxes[0][[1, 0]], atol=1e-4)
    np.testing.assert_allclose(scores, [1.0, 1.0])
    np.testing.assert_array_equal(classes[order], [0, 2])
    cls_map = yolo.class_probability_map(pred, boxes_per_cell=2, num_classes=3)
    assert cls_map.shape == (1, 8, 8) and cls_map[0, 3, 2] == 2


def test_nms_removes_a_duplicate_and_nothing_left_gives_empty_arrays():
    boxes = np.array([[10, 10, 30, 30], [11, 10, 31, 30], [40, 40, 60, 60]], np.float32)
    scores = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]], np.float32)
    kept_boxes, kept_scores, kept_classes = yolo.detections_from_scores(boxes, scores)
    np.testing.assert_allclose(kept_scores, [0.9, 0.7])
    np.testing.assert_array_equal(kept_classes, [0, 1])
    empty = yolo.detections_from_scores(boxes, np.zeros_like(scores))
    assert [a.shape for a in empty] == [(0, 4), (0,), (0,)]


# ----------------------------------------------------------------------------- data
def test_batches_change_size_every_n_batches_and_encode_at_that_size():
    images = np.zeros((5, 64, 64, 3), np.uint8)
    boxes = np.tile(np.array([[[8, 8, 24, 24]]], np.float32), (5, 1, 1))
    labels = np.zeros((5, 1), np.int32)
    batches = yolo_data.YoloBatches(
        images, boxes, labels,
        lambda b, lab, size: yolo_data.encode_yolo_v1_targets(b, lab, size, size // 8, 1),
        batch_size=2, steps=6, sizes=(48, 64, 80), change_every=4, seed=3)
    sizes = []
    for step in range(12):  # two epochs
        x, y = batches.batch_at_step(step)
        assert x.shape == (2, x.shape[1], x.shape[1], 3) and x.dtype == np.float32
        assert y.shape == (2, x.shape[1] // 8, x.shape[1] // 8, 6)
        assert y[..., 0].sum() == 2  # one object per image survives every flip and resize
        sizes.append(x.shape[1])
    assert all(len(set(sizes[k:k + 4])) == 1 for k in range(0, 12, 4))
    assert set(sizes) <= {48, 64, 80} and len(set(sizes)) >= 2
    assert sizes == [batches.size_at(step) for step in range(12)]
    # the same batches (two epochs of 6 steps), streamed with free spatial dimensions
    streamed = [x.shape[1] for x, _ in batches.dataset(2)]
    assert streamed == sizes
    # a fixed prefetch buffer: tf.data's autotuner doubled the step time here (see batching.fixed_tf_data_options)
    assert batches.dataset().options().autotune.enabled is False
    x0, _ = batches[0]
    np.testing.assert_array_equal(x0, batches[0][0])  # deterministic


def test_batch_of_a_step_is_reproducible_and_takes_the_shared_step_indices():
    # scene k is filled with the value k, so a batch's pixels name its scenes
    images = np.broadcast_to(np.arange(7, dtype=np.uint8)[:, None, None, None],
                             (7, 16, 16, 3)).copy()
    boxes = np.tile(np.array([[[2, 2, 8, 8]]], np.float32), (7, 1, 1))
    labels = np.zeros((7, 1), np.int32)

    def encode(b, lab, size):
        return yolo_data.encode_yolo_v1_targets(b, lab, size, size // 8, 1)

    expected = batching.step_indices(7, 3, 8, seed=5)  # 3 * 8 = 24 positions: passes 0..3
    plain = yolo_data.YoloBatches(images, boxes, labels, encode, batch_size=3, steps=4,
                                  augment=False, seed=5)
    augmented = yolo_data.YoloBatches(images, boxes, labels, encode, batch_size=3, steps=4,
                                      sizes=(16, 24), change_every=2, seed=5)
    for step in range(8):  # two epochs
        x, _ = plain.batch_at_step(step)
        np.testing.assert_array_equal(x[:, 0, 0, 0], expected[step])
        x, y = augmented.batch_at_step(step)
        again, y_again = augmented.batch_at_step(step)
        np.testing.assert_array_equal(x, again)
        np.testing.assert_array_equal(y, y_again)
        # a flip moves pixels, never scenes: each image is still one scene's constant value
        np.testing.assert_array_equal(x[:, 5, 5, 0], expected[step])
    # batch index i of epoch e is global step e * steps + i (Keras calls on_epoch_end)
    plain.on_epoch_end()
    np.testing.assert_array_equal(plain[1][0][:, 0, 0, 0], expected[5])
    np.testing.assert_array_equal(plain.indices(1), expected[5])



def test_batches_mirror_photographs_left_right_only():
    # one 16x16 scene with one box [2, 3, 6, 9]: its left-right mirror is [16 - 6, 3, 16 - 2, 9]
    # = [10, 3, 14, 9]; the other symmetries of the square move it off those two
    images = np.zeros((1, 16, 16, 3), np.uint8)
    images[0, 3:9, 2:6] = 255
    boxes = np.array([[[2, 3, 6, 9]]], np.float32)
    labels = np.zeros((1, 1), np.int32)
    kwargs = {"batch_size": 1, "steps": 40, "seed": 0}
    seen = {}
    for mode in ("horizontal", True):
        batches = yolo_data.YoloBatches(images, boxes, labels, lambda b, lab, size: b,
                                        augment=mode, **kwargs)
        seen[mode] = {tuple(batches.batch_at_step(step)[1][0, 0]) for step in range(40)}
        for step in range(40):  # the pixels move with the box
            x, b = batches.batch_at_step(step)
            x0, y0, x1, y1 = b[0, 0].astype(int)
            assert x[0, y0:y1, x0:x1, 0].min() == 255 and x[0, ..., 0].sum() == 255 * 24
    assert seen["horizontal"] == {(2, 3, 6, 9), (10, 3, 14, 9)}
    square = {(2, 3, 6, 9), (10, 3, 14, 9), (2, 7, 6, 13), (10, 7, 14, 13),  # flips
              (3, 2, 9, 6), (7, 2, 13, 6), (3, 10, 9, 14), (7, 10, 13, 14)}  # transposed
    assert seen[True] <= square and len(seen[True]) > 4  # augment=True: all eight symmetries
    with pytest.raises(ValueError, match="augment"):
        yolo_data.YoloBatches(images, boxes, labels, lambda b, lab, size: b, augment="vertical",
                              **kwargs)


# ----------------------------------------------------------------------------- model
def test_builder_shapes_parameters_and_output_ranges():
    model = yolo.yolo_v1((64, 64, 3), 3, grid_size=8, boxes_per_cell=2,
                         widths=(8, 8, 8, 8), reduce_channels=4, hidden_units=16)
    assert model.output_shape == (None, 8, 8, 13)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)), verbose=0)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out[..., 10:].sum(-1), 1.0, rtol=1e-5)
    # 4 convs 3x3 of 8 filters (3->8, then 8->8 x 3) + 1x1 reduce 8->4 + dense 256->16 + 16->832
    expected = (27 * 8 + 8) + 3 * (72 * 8 + 8) + (8 * 4 + 4) + (256 * 16 + 16) + (16 * 832 + 832)
    assert model.count_params() == expected
    assert all(layer.name for layer in model.layers)


def test_builder_rejects_an_input_shape_the_poolings_cannot_reach():
    with pytest.raises(ValueError, match=r"input_shape=\(60, 60, 3\).*use input_shape "
                                         r"\(32, 32, 3\) or \(64, 64, 3\)"):
        yolo.yolo_v1((60, 60, 3), grid_size=8)
    with pytest.raises(ValueError, match=r"input_shape must be \(size, size, 3\) with size an "
                                         r"int >= grid_size=8.*got size 4"):
        yolo.yolo_v1((4, 4, 3), grid_size=8)


def test_confidence_prior_sets_the_initial_confidences():
    model = yolo.yolo_v1((64, 64, 3), 3, grid_size=8, boxes_per_cell=2,
                         widths=(8, 8, 8, 8), reduce_channels=4, hidden_units=16,
                         confidence_prior=0.05)
    bias = model.get_layer("head_output").bias.numpy().reshape(8, 8, 13)
    np.testing.assert_allclose(bias[..., [4, 9]], np.log(0.05 / 0.95), rtol=1e-6)
    assert np.all(bias[..., [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12]] == 0)


def test_yolo_v1_trains_on_streamed_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 64, 64, 3)).astype(np.uint8)
    boxes = np.tile(np.array([[[10, 10, 30, 30]]], np.float32), (8, 1, 1))
    labels = np.zeros((8, 1), np.int32)
    batches = yolo_data.YoloBatches(images, boxes, labels,
                               lambda b, lab, size: yolo_data.encode_yolo_v1_targets(b, lab, size, 8, 3),
                               batch_size=4, steps=3)
    model = yolo.yolo_v1((64, 64, 3), 3, grid_size=8, boxes_per_cell=2,
                         widths=(4, 4, 4, 4), reduce_channels=4, hidden_units=8)
    model.compile(optimizer="adam", loss=yolo.YoloV1Loss(2, 3))
    history = model.fit(batches.dataset(), steps_per_epoch=3, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
