"""Mask R-CNN: mask targets, the mask loss by hand, paste-back, mask AP, bad input, training."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bestiary_keras import geometry  # noqa: E402
from bestiary_keras.datasets import tfds_instances  # noqa: E402
from bestiary_keras.datasets.scenes import make_scenes  # noqa: E402
from bestiary_keras.detection import mask_evaluation as me  # noqa: E402
from bestiary_keras.detection import mask_rcnn as mr  # noqa: E402
from bestiary_keras.detection.roi_align import RoIAlign  # noqa: E402
from bestiary_keras.training import StepHistory  # noqa: E402


def square_mask(size=16, box=(4, 4, 12, 12)):
    mask = np.zeros((size, size), bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


# ----------------------------------------------------------------------------- targets
def test_mask_targets_crop_the_instance_to_the_roi():
    masks = np.zeros((1, 2, 16, 16), np.float32)
    masks[0, 0] = square_mask()
    masks[0, 1, :, :8] = 1.0  # left half of the image
    rois = np.array([[[4, 4, 12, 12], [4, 4, 20, 12], [0, 0, 16, 16]]], np.float32)
    matched = np.array([[0, 0, 1]], np.int32)
    y = np.asarray(mr.mask_targets(masks, rois, matched, 4))
    assert y.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(y[0, 0], 1.0)  # the RoI is the object's box
    np.testing.assert_array_equal(y[0, 1], [[1, 1, 0, 0]] * 4)  # twice as wide: left half
    np.testing.assert_array_equal(y[0, 2], [[1, 1, 0, 0]] * 4)  # the other object's mask


def test_mask_targets_of_a_shifted_roi_follow_the_pixels():
    masks = np.zeros((1, 1, 16, 16), np.float32)
    masks[0, 0] = square_mask()
    # RoI 2 px to the right of the object: its right quarter is outside the mask
    y = np.asarray(mr.mask_targets(masks, np.array([[[6, 4, 14, 12]]], np.float32),
                                   np.zeros((1, 1), np.int32), 8))[0, 0]
    np.testing.assert_array_equal(y, [[1, 1, 1, 1, 1, 1, 0, 0]] * 8)


# ----------------------------------------------------------------------------- loss
def test_mask_loss_by_hand():
    # two RoIs, K = 2 classes, m = 2: RoI 0 is class 1 (u = 2), RoI 1 background (u = 0)
    logits = np.zeros((1, 2, 2, 2, 2), np.float32)
    logits[0, 0, :, :, 1] = [[np.log(3.0), 0.0], [0.0, 0.0]]  # s^u: sigma = 0.75 at (0, 0)
    logits[0, 0, :, :, 0] = 50.0  # the other class's mask is ignored
    logits[0, 1] = -50.0  # background RoIs get no mask loss
    targets = np.array([[[[1, 0], [0, 0]], [[1, 1], [1, 1]]]], np.float32)
    loss = float(mr.mask_loss(np.array([[2, 0]]), targets, logits))
    # pixels: -log 0.75, then three times -log 0.5; mean over 4 pixels, one foreground RoI
    np.testing.assert_allclose(loss, (np.log(4 / 3) + 3 * np.log(2)) / 4, rtol=1e-5)
    # the coupled variant: a soft-max over background + 2 classes, all logits 0 -> log 3
    flat = np.zeros((1, 2, 2, 2, 3), np.float32)
    np.testing.assert_allclose(float(mr.mask_loss(np.array([[2, -1]]), targets, flat,
                                                  softmax=True)), np.log(3.0), rtol=1e-5)


def test_mask_loss_is_zero_without_foreground_and_its_gradient_finite():
    import tensorflow as tf

    logits = tf.Variable(np.random.default_rng(0).normal(size=(2, 3, 4, 4, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = mr.mask_loss(np.array([[0, -1, 0], [-1, -1, 0]]), np.ones((2, 3, 4, 4)), logits)
    grad = tape.gradient(loss, logits)
    assert float(loss) == 0.0
    assert np.isfinite(grad.numpy()).all()


# ----------------------------------------------------------------------------- bad input
def test_bad_instances_name_both_shapes():
    boxes, labels = np.zeros((2, 3, 4)), np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"\(2, 2, 8, 8\).*\(2, 3, 4\)"):
        mr.check_instances(boxes, labels, np.zeros((2, 2, 8, 8)), 3)  # one mask short
    with pytest.raises(ValueError, match=r"\(2, 3, 8\).*\(2, 3, 4\)"):
        mr.check_instances(boxes, labels, np.zeros((2, 3, 8)), 3)  # no (H, W)
    with pytest.raises(ValueError, match=r"\(2, 3\) hold \[3\].*\(2, 3, 4\)"):
        mr.check_instances(boxes, np.full((2, 3), 3), np.zeros((2, 3, 8, 8)), 3)
    mr.check_instances(boxes, np.full((2, 3), -1), np.zeros((2, 3, 8, 8)), 3)  # padding is fine
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(2, 4\)"):
        me.paste_masks(np.zeros((3, 8, 8)), np.zeros((2, 4)), 16)
    with pytest.raises(ValueError, match="mask_pool"):
        mr.mask_rcnn((64, 64, 3), 3, mask_pool="mean")
    with pytest.raises(ValueError, match="strides"):
        mr.mask_rcnn((64, 64, 3), 3, mask_stride=2 ** 5)


# ----------------------------------------------------------------------------- paste, AP
def test_paste_masks_put_the_mask_in_its_box():
    full = me.paste_masks(np.ones((1, 14, 14)), [[3, 5, 11, 9]], 16)[0]
    np.testing.assert_array_equal(full, square_mask(16, (3, 5, 11, 9)))
    np.testing.assert_array_equal(me.box_filled_masks([[3, 5, 11, 9]], 16)[0], full)
    left = np.zeros((1, 4, 4)); left[0, :, :2] = 1.0
    np.testing.assert_array_equal(me.paste_masks(left, [[0, 0, 8, 8]], 16)[0],
                                  square_mask(16, (0, 0, 4, 8)))
    assert me.paste_masks(np.zeros((0, 14, 14)), np.zeros((0, 4)), (16, 20)).shape == (0, 16, 20)


def test_targets_pasted_back_recover_the_instance():
    scenes = make_scenes(4, 64, min_objects=2, max_objects=3, max_overlap=0.25, seed=3,
                         cache=False)
    for masks, boxes, labels in zip(scenes.masks, scenes.boxes, scenes.labels):
        keep = labels >= 0
        y = np.asarray(mr.mask_targets(masks[None, keep], boxes[None, keep],
                                       np.arange(keep.sum())[None], 28))[0]
        pasted = me.paste_masks(y, boxes[keep], 64)
        inter = (pasted & masks[keep]).sum((1, 2))
        union = (pasted | masks[keep]).sum((1, 2))
        assert (inter / union > 0.85).all()


def test_mask_average_precision():
    circle = np.hypot(*np.mgrid[-8:8, -8:8] + 0.5) < 8
    gt_mask = np.zeros((1, 32, 32), bool); gt_mask[0, 8:24, 8:24] = circle
    gts = [(gt_mask, np.array([0])), (np.zeros((0, 32, 32), bool), np.zeros(0, int))]
    perfect = [(gt_mask, [0.9], [0]), (np.zeros((0, 32, 32), bool), [], [])]
    np.testing.assert_allclose(me.coco_mask_average_precision(perfect, gts, 2), 1.0)
    filled = [(me.box_filled_masks([[8, 8, 24, 24]], 32), [0.9], [0])] + perfect[1:]
    ap, ap50 = me.coco_mask_average_precision(filled, gts, 2)
    assert ap50 > 0.999 and ap < 0.8  # circle / square = 0.785: only IoU thresholds <= 0.75
    wrong_class = [(gt_mask, [0.9], [1])] + perfect[1:]
    assert me.coco_mask_average_precision(wrong_class, gts, 2) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one entry per image"):
        me.coco_mask_average_precision(perfect[:1], gts)


def test_best_mask_ious():
    a, b = square_mask(16, (0, 0, 8, 8)), square_mask(16, (4, 0, 12, 8))
    np.testing.assert_allclose(me.best_mask_ious(np.stack([b]), np.stack([a, b])), [1 / 3, 1.0])
    assert me.best_mask_ious(np.zeros((0, 16, 16), bool), np.stack([a])).tolist() == [0.0]
    assert me.best_mask_ious(np.stack([a]), np.zeros((0, 16, 16), bool)).shape == (0,)


# ----------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def scenes():
    return make_scenes(6, 64, classes=("circle", "square", "triangle"), min_objects=1,
                       max_objects=3, max_overlap=0.25, seed=5, cache=False)


def small_model(**kwargs):
    return mr.mask_rcnn((64, 64, 3), 3, widths=(8, 8, 16, 16), pool_size=2, fc_units=(16,), rpn_width=16,
                        mask_width=8, mask_convs=1, seed=0, **kwargs)


def test_batches_flip_images_masks_and_boxes_together(scenes):
    batches = mr.MaskBatches(scenes, batch_size=6, steps=3, seed=1)
    for step in range(3):
        (batch,) = batches[step]
        assert set(batch) == {"images", "boxes", "labels", "masks"}
        for masks, boxes, labels in zip(batch["masks"], batch["boxes"], batch["labels"]):
            for mask, box in zip(masks[labels >= 0], boxes[labels >= 0]):
                ys, xs = np.nonzero(mask)
                np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1,
                                                    ys.max() + 1])
    with pytest.raises(ValueError, match="masks of shape"):
        bad = scenes.__class__(**{**scenes.__dict__, "masks": scenes.masks[:, :2]})
        mr.MaskBatches(bad, batch_size=2, steps=1)
    with pytest.raises(ValueError, match="outside the 3 classes"):
        bad = scenes.__class__(**{**scenes.__dict__, "labels": scenes.labels * 2})
        mr.MaskBatches(bad, batch_size=2, steps=1)


def test_total_loss_is_the_sum_and_finite_on_empty_images(scenes):
    model = small_model()
    (batch,) = mr.MaskBatches(scenes, batch_size=4, steps=1, seed=0, flip=False)[0]
    loss, terms = model.compute_losses(batch, training=False)
    assert len(terms) == 5 and all(np.isfinite(float(t)) for t in terms)
    np.testing.assert_allclose(float(loss), float(sum(terms)), rtol=1e-5)  # lambdas are 1
    assert float(terms[-1]) > 0.1  # an untrained head: BCE near log 2
    empty = {"images": batch["images"], "boxes": np.zeros_like(batch["boxes"]),
             "labels": np.full_like(batch["labels"], -1), "masks": np.zeros_like(batch["masks"])}
    loss, terms = model.compute_losses(empty, training=False)
    assert float(terms[-1]) == 0.0 and np.isfinite(float(loss))


def test_training_lowers_the_mask_loss_and_segment_gives_masks(scenes):
    keras.utils.set_random_seed(0)
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    steps = StepHistory(per_batch=True)
    model.fit(mr.MaskBatches(scenes, batch_size=6, steps=40, seed=0), epochs=1, verbose=0,
              callbacks=[steps])
    mask_losses = np.asarray(steps.history["l_mask"])
    assert len(mask_losses) == 40 and np.isfinite(mask_losses).all()
    assert mask_losses[-10:].mean() < 0.8 * mask_losses[:5].mean()
    out = model.segment(np.concatenate([scenes.images, np.zeros((1, 64, 64, 3), np.uint8)]))
    assert len(out) == 7
    for boxes, scores, classes, probs in out:
        assert probs.shape == (len(boxes), 14, 14) and np.isfinite(probs).all()
        assert ((probs >= 0) & (probs <= 1)).all()


def test_softmax_and_max_pool_variants_build_and_run(scenes):
    (batch,) = mr.MaskBatches(scenes, batch_size=2, steps=1, seed=0)[0]
    for kwargs in (dict(softmax=True), dict(mask_pool="max", mask_stride=8)):
        model = small_model(**kwargs)
        _, terms = model.compute_losses(batch, training=False)
        assert np.isfinite(float(terms[-1]))
    assert isinstance(small_model().mask_pool, RoIAlign)
    assert small_model(softmax=True).mask_net.output.shape[-1] == 4  # background + 3


def test_ablation_head_learns_on_frozen_features(scenes):
    keras.utils.set_random_seed(0)
    # informative frozen "features": the semantic map, one-hot, averaged over 4 x 4 pixels
    onehot = np.eye(4, dtype=np.float32)[scenes.semantic]
    fine = onehot.reshape(len(onehot), 16, 4, 16, 4, 4).mean((2, 4))
    image, obj, rois, labels = me.jittered_rois(scenes.boxes, scenes.labels, copies=3, seed=0)
    assert len(rois) == 3 * (scenes.labels >= 0).sum()
    ious = [np.diag(geometry.pairwise_iou(rois[i:i + 1], scenes.boxes[image[i], obj[i]][None]))
            for i in range(len(rois))]
    assert min(float(v[0]) for v in ious) >= 0.6
    head = mr.mask_head((7, 7, 4), 3, width=16, convs=1)
    pool = RoIAlign(7, 0.25)
    losses = me.train_mask_head(fine, scenes.masks, rois, image, obj, labels, pool, head,
                                steps=80, batch_size=16, learning_rate=3e-3)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    dets = [(b[lab >= 0], np.ones((lab >= 0).sum()), lab[lab >= 0])
            for b, lab in zip(scenes.boxes, scenes.labels)]
    probs = me.head_mask_probs(fine, dets, pool, head)
    assert [len(p) for p in probs] == [len(d[0]) for d in dets]
    assert probs[0].shape[1:] == (14, 14)


# ----------------------------------------------------------------------------- LVIS (TFDS)
def hand_made_lvis(self, split, decoders=None, read_config=None, **kwargs):
    """Two LVIS examples with known instance masks (replaces TFDS's _as_dataset)."""
    import tensorflow as tf

    del self, split, decoders, read_config, kwargs
    names = tfds_instances.lvis_class_names()
    left = np.zeros((40, 80, 1), np.uint8); left[10:30, 0:20] = 255
    right = np.zeros((40, 80, 1), np.uint8); right[0:40, 40:80] = 255
    tiny = np.zeros((40, 80, 1), np.uint8); tiny[0, 0] = 255
    examples = [
        (np.stack([left, right, tiny]), [names.index("person"), names.index("banana"),
                                         names.index("person")]),
        (np.zeros((0, 40, 80, 1), np.uint8), []),  # no objects
    ]

    def generate():
        for masks, labels in examples:
            yield {"image": np.full((40, 80, 3), 100, np.uint8),
                   "objects": {"segmentation": masks, "label": np.array(labels, np.int64)}}

    signature = {"image": tf.TensorSpec((None, None, 3), tf.uint8),
                 "objects": {"segmentation": tf.TensorSpec((None, None, None, 1), tf.uint8),
                             "label": tf.TensorSpec((None,), tf.int64)}}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_lvis_instances_on_hand_made_examples(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=hand_made_lvis):
        scenes = tfds_instances.load_lvis_instances("validation", 32, data_dir=tmp_path,
                                                    max_objects=3)
        assert scenes.images.shape == (2, 32, 32, 3) and scenes.masks.shape == (2, 3, 32, 32)
        names = tfds_instances.lvis_class_names()
        # stretched 80 x 40 -> 32 x 32; the largest object first, the 1-pixel one dropped
        np.testing.assert_array_equal(scenes.labels, [[names.index("banana"),
                                                       names.index("person"), -1], [-1] * 3])
        np.testing.assert_array_equal(scenes.boxes[0, :2], [[16, 0, 32, 32], [0, 8, 8, 24]])
        assert scenes.masks[0, 1].sum() == 8 * 16 and not scenes.masks[1].any()
        mr.check_instances(scenes.boxes, scenes.labels, scenes.masks, len(names))
        # a class subset relabels 0.. and drops the rest
        person = tfds_instances.load_lvis_instances("validation", 32, data_dir=tmp_path,
                                                    classes=("person",), max_objects=2)
        np.testing.assert_array_equal(person.labels, [[0, -1], [-1, -1]])
        assert person.class_names == ("person",) and person.semantic[0, 16, 4] == 1
    with pytest.raises(ValueError, match="not LVIS class names"):
        tfds_instances.load_lvis_instances("validation", 32, classes=("circle",))


def more_masks_than_labels(self, split, decoders=None, read_config=None, **kwargs):
    """One LVIS example with three masks but two labels (replaces TFDS's _as_dataset)."""
    import tensorflow as tf

    del self, split, decoders, read_config, kwargs
    names = tfds_instances.lvis_class_names()
    masks = np.zeros((3, 40, 80, 1), np.uint8)
    masks[0, 10:30, 0:20] = 255  # person: 20 x 20 pixels, 8 x 16 after resizing to 32 x 32
    masks[1, 0:40, 40:80] = 255  # banana: the right half
    masks[2] = 255  # the whole image, with no label: dropped
    example = {"image": np.full((40, 80, 3), 100, np.uint8),
               "objects": {"segmentation": masks,
                           "label": np.array([names.index("person"), names.index("banana")])}}
    signature = {"image": tf.TensorSpec((None, None, 3), tf.uint8),
                 "objects": {"segmentation": tf.TensorSpec((None, None, None, 1), tf.uint8),
                             "label": tf.TensorSpec((None,), tf.int64)}}
    return tf.data.Dataset.from_generator(lambda: iter([example]), output_signature=signature)


def test_lvis_needs_prepared_data_and_pairs_masks_with_labels_in_order(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DatasetNotAvailableError, match="tfds build lvis"):
        tfds_instances.load_lvis_instances("validation", 32, data_dir=tmp_path)
    with pytest.raises(ValueError, match="min_pixels must be >= 1"):
        tfds_instances.load_lvis_instances("validation", 32, data_dir=tmp_path, min_pixels=0)
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                as_dataset_fn=more_masks_than_labels):
        scenes = tfds_instances.load_lvis_instances("validation", 32, data_dir=tmp_path,
                                                    max_objects=3)
    names = tfds_instances.lvis_class_names()
    np.testing.assert_array_equal(scenes.labels, [[names.index("banana"), names.index("person"),
                                                   -1]])
    np.testing.assert_array_equal(scenes.boxes[0, :2], [[16, 0, 32, 32], [0, 8, 8, 24]])
    assert scenes.masks[0, 1].sum() == 8 * 16 and not scenes.masks[0, 2].any()
    # TFDS's random mock data draws every sequence length on its own (here 1 label and
    # several masks, or the other way round): masks and labels are paired in order up to the
    # shorter one, and every kept object has a mask and a box of positive area
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        scenes = tfds_instances.load_lvis_instances("validation", 24, data_dir=tmp_path,
                                                    max_objects=5)
    assert scenes.images.shape == (3, 24, 24, 3) and scenes.masks.shape == (3, 5, 24, 24)
    mr.check_instances(scenes.boxes, scenes.labels, scenes.masks, 1203)
    kept = scenes.labels >= 0
    assert kept.any() and (scenes.masks[kept].sum(axis=(1, 2)) >= 4).all()
    widths = scenes.boxes[..., 2:] - scenes.boxes[..., :2]
    assert (widths[kept] > 0).all() and not scenes.masks[~kept].any()
