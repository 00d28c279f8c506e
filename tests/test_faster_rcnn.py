"""Faster R-CNN pieces: the RPN loss by hand, anchor targets, proposals in degenerate cases, and
a training step on a batch with an image without objects."""

import math

import keras
import numpy as np
import pytest

from bestiary_keras.detection import boxes as B
from bestiary_keras.detection import faster_rcnn as R


def test_rpn_loss_by_hand():
    # anchors: 0 positive (logit 0), 1 negative (logit 0), 2 not sampled, 3 negative with
    # p = sigmoid(log 3) = 0.75. L_cls: (log 2 + log 2 + -log 0.25) / N_cls with N_cls = 3.
    # Box term: only anchor 0; t - t* = (2, 0, 0, 0.5) -> smooth L1 1.5 + 0.125 = 1.625,
    # times lambda / N_reg = 10 / 2.
    labels = np.array([[1, 0, -1, 0]])
    logits = np.array([[0.0, 0.0, 7.0, math.log(3.0)]], np.float32)
    targets = np.zeros((1, 4, 4), np.float32)
    deltas = np.zeros((1, 4, 4), np.float32)
    deltas[0, 0] = [2.0, 0.0, 0.0, 0.5]
    deltas[0, 1:] = 30.0  # not positive: no box loss
    loss, cls_term, reg_term = R.rpn_loss(labels, logits, targets, deltas, num_reg=2,
                                          lambda_=10.0, return_terms=True)
    expected_cls = (2 * math.log(2.0) + math.log(4.0)) / 3
    assert float(cls_term) == pytest.approx(expected_cls, rel=1e-5)
    assert float(reg_term) == pytest.approx(1.625 / 2, rel=1e-5)
    assert float(loss) == pytest.approx(expected_cls + 10 * 1.625 / 2, rel=1e-5)
    # N_cls given explicitly (the paper's 256)
    fixed = R.rpn_loss(labels, logits, targets, deltas, num_reg=2, lambda_=0.0, num_cls=256)
    assert float(fixed) == pytest.approx(expected_cls * 3 / 256, rel=1e-5)
    # huge logits stay finite
    assert np.isfinite(float(R.rpn_loss(labels, logits * 1e4, targets, deltas, num_reg=2)))
    with pytest.raises(ValueError, match="num_reg"):
        R.rpn_loss(labels, logits, targets, deltas, num_reg=0)


def test_rpn_targets_sample_and_encode():
    anchors = B.generate_anchors(4, 8, (8, 16), (1.0,))
    gt = np.array([[[4, 4, 20, 20], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    gt_labels = np.array([[0, -1], [-1, -1]], np.int32)  # image 1 has no objects
    labels, targets = (np.asarray(t) for t in R.rpn_targets(anchors, gt, gt_labels, 16, 0.5,
                                                             seed=0))
    assert labels.shape == (2, len(anchors)) and np.all(np.isfinite(targets))
    assert (labels[0] == 1).sum() >= 1 and (labels[0] >= 0).sum() == 16
    assert np.all(labels[1] <= 0) and (labels[1] == 0).sum() == 16
    # the anchor equal to the object (16 px, centred on cell (1, 1)) has target 0
    exact = np.flatnonzero(np.all(anchors == [4, 4, 20, 20], axis=1))[0]
    assert labels[0, exact] == 1
    np.testing.assert_allclose(targets[0, exact], 0.0, atol=1e-6)
    np.testing.assert_array_equal(targets[labels != 1], 0.0)


def test_propose_keeps_valid_boxes_and_handles_none():
    anchors = B.generate_anchors(2, 8, (8,), (1.0,))  # 4 anchors tiling a 16x16 image
    logits = np.array([[3.0, 2.0, 1.0, 0.0]], np.float32)
    deltas = np.zeros((1, 4, 4), np.float32)
    proposals, scores, valid = (np.asarray(t) for t in R.propose(anchors, logits, deltas, 16,
                                                                 pre_nms=4, post_nms=6))
    assert valid[0].sum() == 4 and not valid[0, 4:].any()  # padded to post_nms
    np.testing.assert_allclose(proposals[0, 0], anchors[0])
    assert np.all(np.diff(scores[0, :4]) < 0)
    np.testing.assert_array_equal(proposals[0, 4:], 0.0)
    # every box squeezed to nothing: no proposals, no crash, no NaN
    deltas[:] = -1e3
    proposals, scores, valid = (np.asarray(t) for t in R.propose(anchors, logits, deltas, 16,
                                                                 post_nms=3))
    assert not valid.any() and np.all(np.isfinite(proposals))


def test_faster_rcnn_step_and_detect_without_objects():
    model = R.faster_rcnn((32, 32, 3), 3, widths=(4, 4, 4, 8), anchor_scales=(8, 16), rpn_width=8,
                          pool_size=2, fc_units=(8,), rois_per_image=4, post_nms_train=8,
                          post_nms_test=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # no tracing: fast
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    boxes = np.zeros((2, 2, 4), np.float32)
    boxes[0, 0] = [4, 4, 20, 20]
    labels = np.array([[1, -1], [-1, -1]], np.int32)
    logs = model.train_on_batch({"images": images, "boxes": boxes, "labels": labels},
                                return_dict=True)
    assert set(logs) >= {"loss", "rpn_cls", "rpn_reg", "l_cls", "l_loc"}
    assert all(np.isfinite(v) for v in logs.values())
    dets = model.detect(images)
    assert len(dets) == 2 and all(np.all(np.isfinite(d[0])) for d in dets)
    props = model.proposals(images)
    assert len(props) == 2 and props[0][0].shape[1] == 4
