"""YOLOv2 (notebook 07): k-means priors, space-to-depth, targets, the loss against hand-computed
numbers, decoding and the builder at several input sizes."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from bestiary_keras import batching
from bestiary_keras.detection import ablation, backbones, priors, yolo_data, yolov2


# ----------------------------------------------------------------------------- k-means priors
def test_shape_iou_by_hand():
    # (4, 4) vs (2, 8), both centred: intersection 2 x 4 = 8, union 16 + 16 - 8 = 24
    np.testing.assert_allclose(priors.shape_iou([[4, 4]], [[2, 8], [4, 4]]), [[1 / 3, 1.0]],
                               rtol=1e-6)


def test_kmeans_finds_two_exact_clusters_and_one_cluster_is_the_mean():
    sizes = np.array([[4, 4]] * 10 + [[10, 20]] * 10, np.float32)
    anchors, mean_iou = priors.kmeans_anchors(sizes, 2, seed=0)
    np.testing.assert_allclose(anchors, [[4, 4], [10, 20]])
    assert mean_iou == pytest.approx(1.0)
    # k = 1: the centroid is the mean shape (7, 12);
    # IoU((4, 4), (7, 12)) = 16 / 84, IoU((10, 20), (7, 12)) = 84 / 200
    anchors, mean_iou = priors.kmeans_anchors(sizes, 1)
    np.testing.assert_allclose(anchors, [[7, 12]])
    assert mean_iou == pytest.approx((16 / 84 + 84 / 200) / 2, rel=1e-5)


def test_kmeans_mean_iou_grows_with_k_and_bad_k_is_refused():
    sizes = np.random.default_rng(0).uniform(8, 32, (300, 2))
    ious = [priors.kmeans_anchors(sizes, k, seed=0)[1] for k in (1, 3, 6)]
    assert ious[0] < ious[1] < ious[2]
    with pytest.raises(ValueError, match="k must be"):
        priors.kmeans_anchors(sizes, 0)


# ----------------------------------------------------------------------------- space to depth
def test_space_to_depth_matches_tensorflow_and_accepts_any_even_size():
    x = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype(np.float32)
    out = yolov2.SpaceToDepth(2)(x)
    np.testing.assert_allclose(out, tf.nn.space_to_depth(x, 2).numpy())
    # by hand: output channel (i * 2 + j) * C + c holds pixel (2y + i, 2x + j), channel c
    np.testing.assert_allclose(out[0, 1, 2, (1 * 2 + 0) * 3 + 2], x[0, 3, 4, 2])
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, yolov2.SpaceToDepth(2)(inputs))
    assert model.predict(np.zeros((1, 10, 14, 3)), verbose=0).shape == (1, 5, 7, 12)
    assert yolov2.SpaceToDepth.from_config(yolov2.SpaceToDepth(4).get_config()).block_size == 4


# ----------------------------------------------------------------------------- targets
def test_targets_go_to_the_centre_cell_and_the_best_anchor_shape():
    # box [12, 20, 28, 52]: 16 x 32, centre (20, 36) -> column 2, row 4 (stride 8);
    # shape IoU with (8, 8): 64 / 512 = 0.125, with (16, 32): 1 -> anchor 1
    boxes = np.array([[[12, 20, 28, 52], [0, 0, 0, 0]]], np.float32)
    labels = np.array([[1, -1]])
    targets = yolo_data.encode_yolo_v2_targets(boxes, labels, 64, [[8, 8], [16, 32]], 2)
    assert targets.shape == (1, 8, 8, 2, 7)
    np.testing.assert_allclose(targets[0, 4, 2, 1], [1, 12, 20, 28, 52, 0, 1])
    assert targets[..., 0].sum() == 1
    with pytest.raises(ValueError, match="multiple of the stride"):
        yolo_data.encode_yolo_v2_targets(boxes, labels, 60, [[8, 8]], 2)


# ----------------------------------------------------------------------------- the loss by hand
# One 8 x 8 image, stride 8: a single cell (S = 1), cell offset (0, 0). C = 2 classes.
# Anchors (8, 8) and (2, 2). Ground truth [0, 0, 8, 8] (centre (4, 4), 8 x 8), class 0: the
# best anchor shape is (8, 8) (IoU 1), anchor 0 is responsible.
#
# Anchor 0 predicts t = (0, ln 3, 0.1, 0, 0, [0, 0]) with direct location prediction:
#   centre ((0 + sigmoid(0)) * 8, (0 + sigmoid(ln 3)) * 8) = (0.5 * 8, 0.75 * 8) = (4, 6)
#   size (8 e^0.1, 8 e^0) = (8.841367, 8) -> box [-0.420684, 2, 8.420684, 10]
#   IoU with [0, 0, 8, 8]: intersection 8 x 6 = 48, union 64 + 70.730938 - 48 = 86.730938
#   -> IoU = 0.553436
#   xy:    (0.5 - 0.5)^2 + (0.75 - 0.5)^2                          = 0.0625
#   wh:    (0.1 - ln(8 / 8))^2 + (0 - ln(8 / 8))^2                  = 0.01
#   obj:   (sigmoid(0) - IoU)^2 = (0.5 - 0.553436)^2                = 0.0028554
#   class: -ln softmax([0, 0])[0] = ln 2                            = 0.693147
# Anchor 1 predicts t = (0, 0, 0, 0, ln 0.25, [0, 0]): box [3, 3, 5, 5], IoU with the truth
#   4 / 64 = 0.0625 < 0.6, so it is pushed towards "no object":
#   noobj: sigmoid(ln 0.25)^2 = 0.2^2                              = 0.04
IOU = 48 / (64 + 8 * math.exp(0.1) * 8 - 48)
HAND = {"xy": 0.0625, "wh": 0.01, "obj": (0.5 - IOU) ** 2, "noobj": 0.04, "class": math.log(2)}
ANCHORS = [[8, 8], [2, 2]]


def hand_example():
    y_true = np.zeros((1, 1, 1, 2, 7), np.float32)
    y_true[0, 0, 0, 0] = [1, 0, 0, 8, 8, 1, 0]
    y_pred = np.zeros((1, 1, 1, 2, 7), np.float32)
    y_pred[0, 0, 0, 0] = [0, math.log(3), 0.1, 0, 0, 0, 0]
    y_pred[0, 0, 0, 1] = [0, 0, 0, 0, math.log(0.25), 0, 0]
    return y_true, y_pred


def test_loss_terms_match_the_hand_computed_example():
    y_true, y_pred = hand_example()
    terms = yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, stride=8, location="direct",
                                      lambda_obj=1.0)
    assert IOU == pytest.approx(0.553436, abs=1e-6)
    for name, expected in HAND.items():
        np.testing.assert_allclose(np.asarray(terms[name]), [expected], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(terms["total"], [sum(HAND.values())], rtol=1e-5)
    # Darknet's weights (the default): the object term counts five times
    terms = yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, stride=8)
    np.testing.assert_allclose(terms["obj"], [5 * HAND["obj"]], rtol=1e-5)
    np.testing.assert_allclose(terms["noobj"], [HAND["noobj"]], rtol=1e-5)


def test_a_prediction_that_already_overlaps_an_object_is_ignored():
    y_true, y_pred = hand_example()
    # anchor 1 grows to 2 e^ln4 = 8 pixels: box [0, 0, 8, 8], IoU 1 > 0.6 -> no noobj penalty
    y_pred[0, 0, 0, 1, 2:4] = math.log(4)
    terms = yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, stride=8)
    np.testing.assert_allclose(terms["noobj"], [0.0])
    terms = yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, stride=8, ignore_iou=1.01)
    np.testing.assert_allclose(terms["noobj"], [0.04], rtol=1e-5)


def test_offset_location_uses_faster_rcnn_targets():
    y_true, y_pred = hand_example()
    # anchor 0 is centred on the cell (4, 4): target (x - x_a) / w_a = 0; prediction
    # t_x = 0.25, t_y = 0 -> xy = 0.25^2
    y_pred[0, 0, 0, 0, 0:2] = [0.25, 0.0]
    terms = yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, stride=8, location="offset")
    np.testing.assert_allclose(terms["xy"], [0.0625], rtol=1e-5)
    with pytest.raises(ValueError, match="location"):
        yolov2.yolo_v2_loss_terms(y_true, y_pred, ANCHORS, location="sideways")


def test_loss_is_finite_with_padding_and_wild_predictions():
    y_true, y_pred = hand_example()
    y_true = np.concatenate([y_true, np.zeros_like(y_true)])  # an image without objects
    y_pred = tf.Variable(np.concatenate([y_pred, np.full_like(y_pred, 80.0)]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(yolov2.yolo_v2_loss(y_true, y_pred, ANCHORS))
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(tape.gradient(loss, y_pred).numpy()))
    keras_loss = yolov2.YoloV2Loss(ANCHORS, location="offset")
    assert yolov2.YoloV2Loss.from_config(keras_loss.get_config()).location == "offset"


# ----------------------------------------------------------------------------- decoding
def test_decode_puts_zero_offsets_at_cell_centres_with_anchor_sizes():
    raw = np.zeros((1, 2, 2, 1, 6), np.float32)
    raw[0, 1, 0, 0, 4] = 5.0  # a confident box in cell (row 1, col 0)
    raw[0, 1, 0, 0, 5] = 3.0  # class 0
    boxes, objectness, probs = yolov2.decode_yolo_v2(raw, [[6, 4]], stride=8)
    np.testing.assert_allclose(boxes[0, 2], [1, 10, 7, 14])  # centre (4, 12), 6 x 4
    dets = yolov2.yolo_v2_detections(raw, [[6, 4]], stride=8, score_threshold=0.5)
    (det_boxes, scores, classes), = dets
    np.testing.assert_allclose(det_boxes, [[1, 10, 7, 14]])
    assert classes.tolist() == [0] and scores[0] > 0.9
    (scaled, _, _), = yolov2.yolo_v2_detections(raw, [[6, 4]], score_threshold=0.5, scale=0.5)
    np.testing.assert_allclose(scaled, [[0.5, 5, 3.5, 7]])


def test_decode_probabilities_match_the_former_hand_written_sigmoid_and_softmax():
    raw = np.random.default_rng(0).normal(0, 4, (2, 3, 3, 2, 8)).astype(np.float32)
    _, objectness, probs = yolov2.decode_yolo_v2(raw, [[6, 4], [10, 12]], stride=8)
    old_objectness = 1.0 / (1.0 + np.exp(-raw[..., 4].reshape(2, -1)))
    logits = raw[..., 5:].reshape(2, -1, 3)
    logits = logits - logits.max(axis=-1, keepdims=True)
    old_probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(objectness, old_objectness, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs, old_probs, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- builder
def test_builder_is_fully_convolutional_with_a_passthrough():
    model = yolov2.yolo_v2(num_classes=3, anchors=[[10, 10], [20, 20], [30, 30]], head_filters=8,
                           backbone=backbones.darknet_backbone((4, 4, 8, 8)))
    assert model.output_shape == (None, None, None, 3, 8)
    assert model.get_layer("passthrough_reorg").output.shape[-1] == 4 * 16
    for size in (48, 64, 80):
        assert model.predict(np.zeros((1, size, size, 3)), verbose=0).shape == (
            1, size // 8, size // 8, 3, 8)
    # the objectness bias is the prior's logit, log(0.05 / 0.95), for every anchor
    bias = model.get_layer("head_output").bias.numpy().reshape(3, 8)
    np.testing.assert_allclose(bias[:, 4], math.log(0.05 / 0.95), rtol=1e-6)
    assert np.all(bias[:, [0, 1, 2, 3, 5, 6, 7]] == 0)
    with pytest.raises(ValueError, match="passthrough"):
        yolov2.yolo_v2(num_classes=3, backbone="yolo", passthrough=True)


def test_multi_scale_training_runs_and_the_loss_stays_finite():
    anchors = np.array([[12, 12], [20, 20], [28, 28]], np.float32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (8, 64, 64, 3)).astype(np.uint8)
    boxes = np.tile(np.array([[[10, 10, 30, 30], [36, 30, 60, 50]]], np.float32), (8, 1, 1))
    labels = np.tile(np.array([[0, 1]]), (8, 1))
    batches = yolo_data.YoloBatches(
        images, boxes, labels,
        lambda b, lab, size: yolo_data.encode_yolo_v2_targets(b, lab, size, anchors, 2),
        batch_size=4, steps=6, sizes=(48, 64, 80), change_every=1, seed=0)
    model = yolov2.yolo_v2(num_classes=2, anchors=anchors, head_filters=8,
                           backbone=backbones.darknet_backbone((4, 4, 8, 8)))
    model.compile(keras.optimizers.Adam(1e-3), yolov2.YoloV2Loss(anchors))
    history = model.fit(batches.dataset(), steps_per_epoch=len(batches), epochs=1, shuffle=False,
                        verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert len({batches.size_at(step) for step in range(6)}) >= 2


def test_backbone_classifier_shares_the_backbone():
    backbone = backbones.darknet_backbone((4, 4, 8, 8))
    classifier = yolov2.backbone_classifier(backbone, 3)
    assert classifier.predict(np.zeros((2, 32, 32, 3)), verbose=0).shape == (2, 3)
    detector = yolov2.yolo_v2(num_classes=3, backbone=backbone, head_filters=8)
    shared = {id(w) for w in backbone.weights}
    assert shared <= {id(w) for w in classifier.weights}
    assert shared <= {id(w) for w in detector.weights}


# ----------------------------------------------------------------------------- the ablation
def test_ablation_rows_are_cumulative_and_end_with_the_whole_yolov2():
    rows = ablation.ablation_configs()
    assert [name for name, _ in rows][0] == "YOLO" and len(rows) == 10
    first, last = rows[0][1], rows[-1][1]
    assert first == ablation.ABLATION_BASE
    assert last == dict(batch_norm=True, hires_classifier=True, head="anchors", backbone="darknet",
                        priors="kmeans", location="direct", passthrough=True, multi_scale=True,
                        test_size=80)
    for (_, before), (_, after) in zip(rows, rows[1:]):
        assert sum(before[k] != after[k] for k in before) == 1  # one change per row


def test_object_crops_centre_each_object_with_context():
    images = np.zeros((1, 64, 64, 3), np.float32)
    images[0, 20:30, 10:20] = 255.0  # a 10 x 10 white square, box [10, 20, 20, 30]
    boxes = np.array([[[10, 20, 20, 30], [0, 0, 0, 0]]], np.float32)
    crops, labels = ablation.object_crops(images, boxes, np.array([[2, -1]]), 20, context=2.0)
    assert crops.shape == (1, 20, 20, 3) and labels.tolist() == [2]
    # a 20 x 20 window centred on the square: the square fills its middle half
    assert crops[0, 10, 10, 0] == 255.0 and crops[0, 1, 1, 0] == 0.0


def test_classifier_batches_take_the_shared_step_indices_and_flip_the_whole_batch():
    # image k has the value k + 10 * column + 100 * row in its first channel: flips show
    images = np.zeros((5, 4, 4, 3), np.float32)
    images[..., 0] = (np.arange(5)[:, None, None] + 10 * np.arange(4)[None, None, :]
                      + 100 * np.arange(4)[None, :, None])
    batches = ablation.ClassifierBatches(images, np.arange(5) % 3, batch_size=3, steps=4, seed=2)
    expected = batching.step_indices(5, 3, 4, seed=2)
    flipped = []
    for step in range(4):
        x, y = batches[step]
        np.testing.assert_array_equal(y, expected[step] % 3)
        np.testing.assert_array_equal(x[:, 0, 0, 0] % 10, expected[step])  # which images
        flipped.append(not np.array_equal(x, images[expected[step]]))
        rng = np.random.default_rng((2, step))  # the step's generator: flip, then transpose
        reference = images[expected[step]]
        reference = reference[:, :, ::-1] if rng.random() < 0.5 else reference
        reference = np.swapaxes(reference, 1, 2) if rng.random() < 0.5 else reference
        np.testing.assert_array_equal(x, reference)
        np.testing.assert_array_equal(batches[step][0], x)  # reproducible
    assert any(flipped)


def test_ablation_detectors_and_pretraining_run():
    anchors = np.array([[12, 12], [20, 20], [28, 28]], np.float32)
    rows = dict(ablation.ablation_configs())
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    backbone = ablation.new_backbone(rows["+ batch norm"])
    accuracy = ablation.pretrain_classifier(backbone, images, np.array([0, 1, 2, 0]), num_classes=3,
                                          steps=2, batch_size=4)
    assert 0.0 <= accuracy <= 1.0
    row = ablation.build_ablation_detector(
        rows["+ batch norm"], num_classes=3, hand_anchors=anchors, kmeans_anchors=anchors,
        backbone=backbone)
    assert isinstance(row, ablation.AblationDetector)
    dense, encode, detect = row.model, row.encode, row.detect
    assert dense.output_shape == (None, 8, 8, 13)
    boxes = np.array([[[10, 10, 30, 30]]], np.float32)
    assert encode(boxes, np.array([[1]]), 64).shape == (1, 8, 8, 8)
    (det_boxes, _, _), = detect(dense.predict(np.zeros((1, 64, 64, 3)), verbose=0))
    assert det_boxes.shape[1] == 4
    row = ablation.build_ablation_detector(
        rows["+ multi-scale"], num_classes=3, hand_anchors=anchors, kmeans_anchors=anchors)
    final, loss, encode = row.model, row.loss, row.encode
    assert final.output_shape == (None, None, None, 3, 8) and loss.location == "direct"
    assert encode(boxes, np.array([[1]]), 80).shape == (1, 10, 10, 3, 8)


def test_pretrain_classifier_through_the_ci_plan_trains_exactly_as_without_it():
    """training=plan_for("ci") (scope, plan.compile, train_on_batch) against training=None."""
    from bestiary_keras import distributed

    config = dict(ablation.ablation_configs())["+ batch norm"]
    images = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])

    def pretrain(training):
        keras.utils.set_random_seed(5)
        if training is None:
            backbone = ablation.new_backbone(config)
        else:
            with training.scope():
                backbone = ablation.new_backbone(config)
        accuracy = ablation.pretrain_classifier(backbone, images, labels, num_classes=3, steps=5,
                                                batch_size=4, seed=2, training=training)
        return accuracy, backbone.get_weights()

    plain_accuracy, plain = pretrain(None)
    planned_accuracy, planned = pretrain(distributed.plan_for("ci"))
    assert planned_accuracy == plain_accuracy
    for a, b in zip(plain, planned, strict=True):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- figures
def test_speed_accuracy_draws_one_labelled_point_per_detector_and_names_the_missing():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bestiary_keras.detection import yolo_plots

    ax = yolo_plots.speed_accuracy({"YOLO": (2.4, 0.6), "YOLOv2": (6.2, 0.92)},
                                   missing=["R-CNN"], title="t")
    points = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [tuple(p.get_xydata()[0]) for p in points] == [(2.4, 0.6), (6.2, 0.92)]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "YOLO: 2.4 ms, 0.60", "YOLOv2: 6.2 ms, 0.92"]
    assert any("not measured in this run: R-CNN" in t.get_text() for t in ax.texts)
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="points\\['bad'\\]"):
        yolo_plots.speed_accuracy({"bad": (0.0, 0.5)})
    with pytest.raises(ValueError, match="points is empty"):
        yolo_plots.speed_accuracy({})
    plt.close("all")


def test_kmeans_euclidean_baseline_groups_by_size_not_shape():
    # a small square, a small flat box and a large square: by (w, h) distance the two small boxes
    # are one cluster (squared distance 20 between them against 2,000 and more to the large one)
    sizes = np.array([[4, 4]] * 10 + [[8, 2]] * 10 + [[40, 40]] * 10, np.float32)
    anchors, _ = priors.kmeans_anchors(sizes, 2, seed=0, distance="euclidean")
    # the two small boxes share a centroid at their mean (6, 3); the large box keeps its own
    np.testing.assert_allclose(anchors, [[6, 3], [40, 40]])
    with pytest.raises(ValueError, match="distance"):
        priors.kmeans_anchors(sizes, 2, distance="manhattan")
