"""R-CNN pieces: selective search, warping, region labels, the SVM/regressor stage, and
detection with no proposals."""

import numpy as np
import pytest

from bestiary_keras.detection import proposals as P
from bestiary_keras.detection import rcnn as R


def _image():
    image = np.full((64, 64, 3), 40, np.uint8)
    image[10:30, 12:40] = (220, 30, 30)  # a red rectangle on grey
    image[40:60, 44:60] = (30, 30, 220)
    return image


def test_selective_search_finds_the_objects():
    boxes = P.selective_search(_image())
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(np.unique(boxes, axis=0)) == len(boxes)  # duplicates removed
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 64)
    assert np.all(boxes[:, 2:] - boxes[:, :2] >= 4)
    for target in ([12, 10, 40, 30], [44, 40, 60, 60]):
        assert np.any(np.all(np.abs(boxes - target) <= 1, axis=1)), target
    with pytest.raises(ValueError, match="mode"):
        P.selective_search(_image(), mode="slow")
    with pytest.raises(ValueError, match="uint8"):
        P.selective_search(_image().astype(np.float32))


def test_selective_search_order_depends_on_the_image_alone():
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[::8, ::8])  # 64x64, about a hundred regions
    first = P.selective_search(photo)
    P.selective_search(_image())  # OpenCV's rand() moves on between images
    P.selective_search(photo, seed=None)
    again = P.selective_search(photo)
    assert len(first) > 50 and np.array_equal(first, again)
    # another seed ranks the same set of boxes differently
    other = P.selective_search(photo, seed=7)
    assert np.array_equal(np.unique(other, axis=0), np.unique(first, axis=0))
    assert not np.array_equal(other, first)


def test_scene_proposals_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BESTIARY_CACHE", str(tmp_path))

    class Scenes:
        images = np.stack([_image(), np.full((64, 64, 3), 90, np.uint8)])  # one flat image

    first, seconds = P.scene_proposals(Scenes, verbose=False)
    assert len(first) == 2 and seconds > 0
    again, seconds = P.scene_proposals(Scenes, verbose=False)
    assert seconds == 0.0 and all(np.array_equal(a, b) for a, b in zip(first, again))


def test_warp_regions_samples_the_box():
    image = np.zeros((1, 64, 64, 3), np.float32)
    image[0, :, :, 0] = np.arange(64)[None, :]  # red = column index
    # a 16-pixel box warped to 16 pixels without context: the same columns
    out = R.warp_regions(image, np.array([[8, 0, 24, 16]]), np.array([0]), size=16, context=0)
    np.testing.assert_allclose(out[0, 0, :, 0], np.arange(8, 24), atol=1e-4)
    # with 2 pixels of context out of 16, the box fills the middle 12 pixels
    out = R.warp_regions(image, np.array([[8, 0, 20, 12]]), np.array([0]), size=16, context=2)
    np.testing.assert_allclose(out[0, 8, 2:14, 0], np.arange(8, 20), atol=1e-4)
    np.testing.assert_allclose(out[0, 0, :, 0], 127.5)  # above the image: mean grey
    assert R.warp_regions(image, np.zeros((0, 4)), np.zeros(0), size=8).shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match="context"):
        R.warp_regions(image, np.array([[0, 0, 4, 4]]), np.array([0]), size=8, context=4)


def test_label_regions_by_hand():
    proposals = [np.array([[0, 0, 10, 10], [0, 0, 10, 16], [30, 30, 40, 40]], np.float32),
                 np.zeros((0, 4), np.float32)]
    gt_boxes = np.array([[[0, 0, 10, 12], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    gt_labels = np.array([[2, -1], [-1, -1]])
    index, boxes, labels, iou, matched = R.label_regions(proposals, gt_boxes, gt_labels)
    np.testing.assert_array_equal(index, [0, 0, 0, 0])  # 3 proposals + the object itself
    np.testing.assert_array_equal(labels, [3, 3, 0, 3])  # IoU 100/120, 120/160, 0, 1
    np.testing.assert_allclose(iou, [100 / 120, 120 / 160, 0, 1], rtol=1e-6)
    np.testing.assert_array_equal(matched[0], [0, 0, 10, 12])


def test_rcnn_svms_regressors_and_empty_detection():
    rng = np.random.default_rng(0)
    cnn = R.region_cnn((16, 16, 3), 2, widths=(4, 4, 8), convs_per_stage=1, fc_units=(8, 8))
    assert [o.shape[-1] for o in cnn.outputs] == [3, 8, 2 * 2 * 8]
    detector = R.RCNN(cnn, 2, size=16)
    # synthetic features: class k's positives sit at +3 on feature k
    labels = np.repeat([1, 2, 0], 40)
    fc7 = rng.normal(size=(120, 8)).astype(np.float32)
    fc7[labels == 1, 0] += 3
    fc7[labels == 2, 1] += 3
    max_iou = np.where(labels > 0, 1.0, 0.0)
    detector.fit_svms(fc7, labels, max_iou)
    boxes = np.tile([[10, 10, 20, 20]], (120, 1)).astype(np.float32)
    matched = boxes + [1, 1, 1, 1]
    detector.fit_regressors(rng.normal(size=(120, 32)), boxes, matched, labels, max_iou)
    scores, regressed = detector.score_regions(fc7, rng.normal(size=(120, 32)), boxes)
    assert scores.shape == (120, 2) and regressed.shape == (120, 2, 4)
    assert scores[labels == 1, 0].mean() > scores[labels == 2, 0].mean()
    # the fine-tuned soft-max instead of the SVMs: scipy's softmax, as the former hand code
    logits = rng.normal(0, 5, size=(120, 3)).astype(np.float32)
    soft, _ = detector.score_regions(fc7, None, boxes, logits, use_svm=False,
                                     use_regression=False)
    z = logits - logits.max(axis=1, keepdims=True)
    np.testing.assert_allclose(soft, (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))[:, 1:],
                               rtol=1e-6, atol=1e-7)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    dets = detector.detect(images, [np.zeros((0, 4)), np.zeros((0, 4))])  # no proposals
    assert len(dets) == 2 and all(len(d[0]) == 0 for d in dets)


def test_rcnn_svms_of_a_class_without_positives():
    rng = np.random.default_rng(0)
    cnn = R.region_cnn((16, 16, 3), 2, widths=(4, 4, 8), convs_per_stage=1, fc_units=(8, 8))
    detector = R.RCNN(cnn, 2, size=16)
    labels = np.repeat([1, 0], 40)  # class 1 (u = 2) has no region at all
    fc7 = rng.normal(size=(80, 8)).astype(np.float32)
    fc7[labels == 1, 0] += 3
    max_iou = np.where(labels > 0, 1.0, 0.0)
    with pytest.raises(ValueError, match="class 1 has no positive"):
        detector.fit_svms(fc7, labels, max_iou)
    detector.fit_svms(fc7, labels, max_iou, skip_missing=True)
    assert detector.svms[0] is not None and detector.svms[1] is None
    boxes = np.tile([[2, 2, 12, 12]], (80, 1)).astype(np.float32)
    scores, _ = detector.score_regions(fc7, None, boxes, use_regression=False)
    assert np.isfinite(scores[:, 0]).all() and np.isneginf(scores[:, 1]).all()
    assert scores[labels == 1, 0].mean() > scores[labels == 0, 0].mean()
    # detection never reports the class without an SVM
    image = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    outputs = (np.zeros((3, 3), np.float32), fc7[:3], np.zeros((3, 32), np.float32))
    dets = detector.detect(image, [boxes[:3]], outputs=outputs, score_threshold=-np.inf)
    assert len(dets[0][2]) == 1 and dets[0][2][0] == 0  # three identical boxes: one after NMS


def test_region_dataset_keeps_the_foreground_share():
    images = np.stack([_image(), _image()])
    boxes = np.array([[12, 10, 40, 30], [44, 40, 60, 60], [0, 0, 20, 20], [30, 0, 60, 20]],
                     np.float32)
    ds = R.region_dataset(images, np.array([0, 1, 0, 1]), boxes, np.array([1, 2, 0, 0]),
                          batch_size=8, foreground_per_batch=2, size=16, seed=0)
    regions, labels = next(iter(ds))
    assert regions.shape == (8, 16, 16, 3) and labels.shape == (8,)
    assert int((labels.numpy() > 0).sum()) == 2  # 2 foreground + 6 background per batch
    assert ds.options().autotune.enabled is False


def test_show_detections_draws_ground_truth_and_detections_with_a_legend():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bestiary_keras import figures
    from bestiary_keras.detection import plots

    images = np.zeros((2, 64, 64, 3), np.uint8)
    gt_boxes = np.array([[[4, 4, 20, 20], [0, 0, 0, 0]], [[30, 30, 50, 50], [8, 8, 16, 16]]], np.float32)
    gt_labels = np.array([[0, -1], [1, 2]])
    detections = [(np.array([[5, 5, 21, 21], [40, 40, 60, 60]], np.float32), np.array([1.3, 0.2]),
                   np.array([0, 1])), (np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, int))]
    fig = plots.show_detections(images, gt_boxes, gt_labels, detections, ["a", "b", "c"],
                                score_name="SVM margin")
    edges = [[p.get_edgecolor() for p in ax.patches] for ax in fig.axes[:2]]
    gt, pred = matplotlib.colors.to_rgba(figures.GT_COLOR), matplotlib.colors.to_rgba(figures.PRED_COLOR)
    assert edges[0].count(pred) == 1 and edges[0].count(gt) == 1  # the 0.2 margin is not drawn
    assert edges[1].count(pred) == 0 and edges[1].count(gt) == 2
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["ground truth", "detection: class and SVM margin (>= 0.5)"]
    with pytest.raises(ValueError, match="same length"):
        plots.show_detections(images, gt_boxes, gt_labels, detections[:1], ["a", "b", "c"])
    plt.close("all")


def test_region_cnn_bn_momentum_reaches_every_batch_norm():
    import keras

    def norms(model):  # the body is a nested backbone model: walk every layer
        return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, keras.layers.BatchNormalization)]

    def momenta(model):
        return {layer.momentum for layer in norms(model)}

    small = {"widths": (4, 4, 8), "convs_per_stage": 1, "fc_units": (8, 8)}
    default = R.region_cnn((16, 16, 3), 2, **small)
    fast = R.region_cnn((16, 16, 3), 2, bn_momentum=0.9, **small)
    assert momenta(default) == {0.99} and momenta(fast) == {0.9}
    # same weights; after one training-mode call the moving mean (from 0) is (1 - momentum) x the
    # batch mean: 0.9 moves it 10x as far as 0.99
    fast.set_weights(default.get_weights())
    x = np.full((4, 16, 16, 3), 0.5, np.float32)
    default(x, training=True), fast(x, training=True)
    moved = [float(np.abs(np.asarray(norms(m)[0].moving_mean)).max()) for m in (default, fast)]
    assert moved[0] > 0 and moved[1] == pytest.approx(10 * moved[0], rel=1e-3)
