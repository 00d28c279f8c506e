"""Fast R-CNN pieces: RoI max pooling against a slow reference, the multi-task loss by hand,
in-graph RoI labelling / sampling, post-processing, and a training step on degenerate data."""

import math

import keras
import numpy as np
import pytest

from bestiary_keras.detection import fast_rcnn as F
from bestiary_keras.detection import roi_pooling as P


# ----------------------------------------------------------------------------- RoI pooling
def test_roi_pool_hand_cases():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)  # row-major 0..15
    pool = P.RoIMaxPooling(2, spatial_scale=1.0)
    # the whole map in 2x2 bins: the max of each quadrant
    out = np.asarray(pool(x, np.array([[[0, 0, 4, 4]]], np.float32)))
    np.testing.assert_array_equal(out[0, 0, ..., 0], [[5, 7], [13, 15]])
    # one cell (row 1, column 2 = value 6) pooled into 2x2: every bin repeats it
    out = np.asarray(pool(x, np.array([[[2, 1, 3, 2]]], np.float32)))
    np.testing.assert_array_equal(out[0, 0, ..., 0], [[6, 6], [6, 6]])
    # a 3-wide RoI in 2 bins: bins cover cells {0, 1} and {1, 2} (they share the middle cell)
    out = np.asarray(pool(x, np.array([[[0, 0, 3, 1]]], np.float32)))
    np.testing.assert_array_equal(out[0, 0, ..., 0], [[1, 2], [1, 2]])
    # stride 2 (spatial_scale 0.5): pixels [0, 8) are cells [0, 4)
    out = np.asarray(P.RoIMaxPooling(1, 0.5)(x, np.array([[[0, 0, 8, 8]]], np.float32)))
    assert out[0, 0, 0, 0, 0] == 15
    # an RoI outside the map gives zeros (no -inf, no NaN)
    out = np.asarray(pool(x, np.array([[[10, 10, 20, 20]]], np.float32)))
    np.testing.assert_array_equal(out, 0)


def test_roi_pool_takes_a_true_max_not_a_resize():
    x = np.zeros((1, 6, 6, 1), np.float32)
    x[0, 1, 1, 0] = 9.0  # a single spike inside the first bin of a 6x6 RoI in 2x2 bins
    out = np.asarray(P.RoIMaxPooling(2, 1.0)(x, np.array([[[0, 0, 6, 6]]], np.float32)))
    np.testing.assert_array_equal(out[0, 0, ..., 0], [[9, 0], [0, 0]])


@pytest.mark.parametrize("pool_size,scale", [(7, 1 / 8), (3, 1 / 4), (2, 1.0)])
def test_roi_pool_matches_the_slow_reference(pool_size, scale):
    rng = np.random.default_rng(pool_size)
    features = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)  # non-square map
    xy = rng.uniform(-8, 40, (2, 25, 2))
    wh = rng.uniform(0, 30, (2, 25, 2))
    rois = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    rois[0, 0] = 0.0  # a zero-size padding RoI
    out = np.asarray(P.RoIMaxPooling(pool_size, scale)(features, rois))
    assert out.shape == (2, 25, pool_size, pool_size, 3)
    for b in range(2):
        ref = P.roi_max_pool_reference(features[b], rois[b], pool_size, scale)
        np.testing.assert_array_equal(out[b], ref)


def test_roi_pool_gradient_goes_to_the_argmax():
    import tensorflow as tf

    x = tf.Variable(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
    with tf.GradientTape() as tape:
        out = P.RoIMaxPooling(2, 1.0)(x, tf.constant([[[0, 0, 4, 4]]], tf.float32))
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, x).numpy()[0, ..., 0]
    expected = np.zeros((4, 4))
    expected[[1, 1, 3, 3], [1, 3, 1, 3]] = 1  # cells 5, 7, 13, 15
    np.testing.assert_array_equal(grad, expected)


def test_roi_pool_config_and_errors():
    layer = P.RoIMaxPooling((3, 4), 0.25, name="roi")
    clone = P.RoIMaxPooling.from_config(layer.get_config())
    assert clone.pool_size == (3, 4) and clone.spatial_scale == 0.25 and clone.name == "roi"
    out = clone(np.zeros((1, 4, 4, 2), np.float32), np.array([[[0, 0, 16, 16]]], np.float32))
    assert tuple(out.shape) == (1, 1, 3, 4, 2)
    with pytest.raises(ValueError, match="spatial_scale"):
        P.RoIMaxPooling(7, 0)
    with pytest.raises(ValueError, match="pool_size"):
        P.RoIMaxPooling(0)


# ----------------------------------------------------------------------------- loss
def test_smooth_l1_by_hand():
    np.testing.assert_allclose(np.asarray(F.smooth_l1(np.array([-2.0, -0.5, 0.0, 0.5, 3.0]))),
                               [1.5, 0.125, 0.0, 0.125, 2.5])


def test_fast_rcnn_loss_by_hand():
    # RoI 0: background (u = 0), uniform scores -> -log(1/3); its wild box output is ignored.
    # RoI 1: class u = 2 (object class 1), p_2 = 2 / (1 + 1 + 2) = 0.5 -> -log 0.5;
    #        t^2 - v = (0.5, -2, 0, 0) -> smooth L1 = 0.125 + 1.5 = 1.625.
    # RoI 2: not sampled (u = -1): in neither term nor in the average.
    class_ids = np.array([0, 2, -1])
    logits = np.array([[0, 0, 0], [0, 0, math.log(2)], [9, -9, 0]], np.float32)
    deltas = np.zeros((3, 2, 4), np.float32)
    deltas[0] = 100.0
    deltas[1, 1] = [0.5, -2.0, 0.0, 0.0]  # row u - 1 = 1 is t^u
    deltas[1, 0] = 50.0  # another class's offsets: ignored
    targets = np.zeros((3, 4), np.float32)
    targets[0] = np.nan  # a background target is never read
    loss, l_cls, l_loc = F.fast_rcnn_loss(class_ids, logits, targets, deltas, 1.0,
                                          return_terms=True)
    assert float(l_cls) == pytest.approx((math.log(3) + math.log(2)) / 2, rel=1e-5)
    assert float(l_loc) == pytest.approx(1.625 / 2, rel=1e-5)
    assert float(loss) == pytest.approx(float(l_cls) + 1.625 / 2, rel=1e-5)
    loss10 = F.fast_rcnn_loss(class_ids, logits, targets, deltas, 10.0)
    assert float(loss10) == pytest.approx(float(l_cls) + 10 * 1.625 / 2, rel=1e-5)
    # nothing sampled: zero, not NaN
    assert float(F.fast_rcnn_loss(np.array([-1]), logits[:1], targets[:1], deltas[:1])) == 0.0


# ----------------------------------------------------------------------------- in-graph targets
def test_sample_rois_without_objects_or_proposals_has_no_nan():
    proposals = np.zeros((2, 6, 4), np.float32)
    proposal_valid = np.zeros((2, 6), bool)
    proposal_valid[0, :3] = True
    proposals[0, :3] = [[0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40]]
    gt = np.zeros((2, 2, 4), np.float32)
    gt[0, 0] = [0, 0, 10, 10]
    labels = np.array([[2, -1], [-1, -1]], np.int32)  # image 1: no objects, no proposals
    rois, class_ids, targets = F.sample_rois(proposals, proposal_valid, gt, labels, 4, 0.25,
                                             seed=0)
    class_ids, targets = np.asarray(class_ids), np.asarray(targets)
    assert np.all(np.isfinite(targets))
    # image 0: candidates are 2 proposals with IoU >= 0.5 (1 and 81/119), the object itself
    # and 1 background proposal: 25% of 4 = 1 foreground, the 1 background, 2 ignored picks
    np.testing.assert_array_equal(np.sort(class_ids[0]), [-1, -1, 0, 3])
    assert np.all(class_ids[1] == -1)
    assert np.all(targets[class_ids < 1] == 0)


def test_postprocess_with_nothing_left():
    rois = np.zeros((1, 5, 4), np.float32)
    logits = np.zeros((1, 5, 3), np.float32)
    logits[..., 0] = 10.0  # everything is background
    boxes, scores, classes, count = F.postprocess(rois, logits, np.zeros((1, 5, 2, 4)), 64)
    assert int(count[0]) == 0 and np.all(np.isfinite(np.asarray(boxes)))
    assert F.detections_to_list(boxes, scores, classes, count)[0][0].shape == (0, 4)


def test_postprocess_decodes_per_class_and_suppresses():
    rois = np.array([[[10, 10, 30, 30], [11, 10, 31, 30]]], np.float32)
    logits = np.log(np.array([[[0.1, 0.8, 0.1], [0.1, 0.7, 0.2]]], np.float32))
    deltas = np.zeros((1, 2, 2, 4), np.float32)
    boxes, scores, classes, count = F.postprocess(rois, logits, deltas, 64, 0.15)
    # class 0: two overlapping boxes -> one survives (0.8); class 1: 0.2 from RoI 1
    assert int(count[0]) == 2
    np.testing.assert_allclose(np.asarray(scores)[0, :2], [0.8, 0.2], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(classes)[0, :2], [0, 1])
    np.testing.assert_allclose(np.asarray(boxes)[0, 0], [10, 10, 30, 30], atol=1e-4)


# ----------------------------------------------------------------------------- the detector
def test_fast_rcnn_trains_one_step_on_degenerate_batches():
    model = F.fast_rcnn((32, 32, 3), 3, widths=(4, 4, 4, 8), pool_size=2, fc_units=(8,), rois_per_image=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # no tracing: fast
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    boxes = np.zeros((2, 2, 4), np.float32)
    boxes[0, 0] = [4, 4, 20, 20]
    labels = np.array([[1, -1], [-1, -1]], np.int32)  # image 1 has no objects
    proposals = np.zeros((2, 5, 4), np.float32)
    valid = np.zeros((2, 5), bool)  # image 1 has no proposals
    proposals[0, :2], valid[0, :2] = [[3, 3, 19, 21], [40, 40, 50, 50]], True  # one outside
    batch = {"images": images, "boxes": boxes, "labels": labels, "proposals": proposals,
             "proposal_valid": valid}
    logs = model.train_on_batch(batch, return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    dets = model.detect(images, proposals, valid)
    assert len(dets) == 2 and all(np.all(np.isfinite(d[0])) for d in dets)


# ----------------------------------------------------------------------------- data pipeline
def test_pad_and_flip_boxes():
    from bestiary_keras.detection import data

    from bestiary_keras import augment

    boxes, valid = data.pad_boxes([np.array([[1, 2, 5, 6]]), np.zeros((0, 4))], max_boxes=2)
    np.testing.assert_array_equal(valid, [[True, False], [False, False]])
    assert boxes.dtype == np.float32 and valid.dtype == bool
    flipped = augment.flip_boxes(boxes, 10.0, valid)
    np.testing.assert_array_equal(flipped[0], [[5, 2, 9, 6], [0, 0, 0, 0]])  # padding stays 0
    np.testing.assert_array_equal(augment.flip_boxes(flipped, 10.0, valid), boxes)
    # pad_boxes (keras.utils.pad_sequences) against the loop it replaced: truncation, default
    # size, no boxes at all
    rng = np.random.default_rng(0)
    lists = [rng.uniform(0, 60, (n, 4)).astype(np.float32) for n in (3, 0, 7, 1)]
    for max_boxes in (None, 1, 5, 9):
        size = max_boxes or 7
        old_boxes = np.zeros((4, size, 4), np.float32)
        old_valid = np.zeros((4, size), bool)
        for i, b in enumerate(lists):
            old_boxes[i, : len(b[:size])], old_valid[i, : len(b[:size])] = b[:size], True
        new_boxes, new_valid = data.pad_boxes(lists, max_boxes)
        np.testing.assert_array_equal(new_boxes, old_boxes)
        np.testing.assert_array_equal(new_valid, old_valid)
    assert data.pad_boxes([np.zeros((0, 4))])[0].shape == (1, 1, 4)


def test_detection_dataset_flips_images_boxes_and_proposals_together():
    from bestiary_keras.detection import data

    class Scenes:  # one image, white in its left quarter, one object there
        images = np.zeros((1, 8, 8, 3), np.uint8)
        boxes = np.array([[[0, 0, 2, 8], [0, 0, 0, 0]]], np.float32)
        labels = np.array([[1, -1]], np.int32)

        def __len__(self):
            return 1

    scenes = Scenes()
    scenes.images[0, :, :2] = 255
    props = data.pad_boxes([np.array([[0, 0, 2, 8]])], 3)
    ds = data.detection_dataset(scenes, 1, proposals=props, shuffle=True, repeat=True, seed=0)
    seen = set()
    for batch in ds.take(16):
        image = batch["images"].numpy()[0]
        left = image[:, :2].mean() > 128
        box = batch["boxes"].numpy()[0, 0]
        assert (box[0] == 0) == left  # the box follows the white stripe
        np.testing.assert_array_equal(batch["proposals"].numpy()[0, 0], box)
        np.testing.assert_array_equal(batch["boxes"].numpy()[0, 1], 0)  # padding untouched
        assert batch["images"].dtype == "float32" and batch["labels"].dtype == "int32"
        seen.add(bool(left))
    assert seen == {True, False}  # both orientations occur
    # no tf.data autotuner: it left fit idle for about 30 s after the last step in a kernel
    assert ds.options().autotune.enabled is False
