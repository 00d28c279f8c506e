"""OpenPose: the two-branch multi-stage model, its targets and masks, and the OKS AP metric."""

import keras
import numpy as np
import pytest

from bestiary_keras.datasets.figures import LIMBS, OKS_SIGMAS, make_figures
from bestiary_keras.pose import evaluation, openpose

SMALL = dict(stages=2, trunk_filters=(8, 8), filters=8, refine_dilations=(1, 2))


def test_outputs_per_stage_and_branch():
    model = openpose.openpose((64, 64, 3), 14, 13, **SMALL)
    assert sorted(model.output_names) == sorted(openpose.output_names(2))
    outputs = model(np.zeros((2, 64, 64, 3), np.float32))
    for t in (1, 2):
        assert tuple(outputs[f"stage{t}_maps"].shape) == (2, 16, 16, 14)
        assert tuple(outputs[f"stage{t}_pafs"].shape) == (2, 16, 16, 26)
    # stage 2 reads the features and both of stage 1's predictions (the paper's Fig. 3)
    concat = model.get_layer("stage2_input")
    assert concat.output.shape[-1] == 8 + 14 + 26


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_shape=(62, 64, 3)), "divisible by the trunk's stride 4"),
    (dict(input_shape=(64, 64)), "input_shape"),
    (dict(stages=0), "stages"),
    (dict(num_limbs=2.5), "num_limbs"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        openpose.openpose(**{**SMALL, **kwargs})


def test_save_and_load_give_the_same_outputs(tmp_path):
    model = openpose.compile_openpose(openpose.openpose(**SMALL))
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    before = model.predict(images, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    after = loaded.predict(images, verbose=0)
    for key in before:
        np.testing.assert_allclose(before[key], after[key], atol=1e-6)


def test_loss_masks_by_hand():
    # one image, two people; person 1 has its head (joint 0) outside the image
    keypoints = np.zeros((1, 3, 14, 3), np.float32)
    keypoints[0, :2, :, :2] = 10.0
    keypoints[0, :2, :, 2] = 2
    keypoints[0, 1, 0] = 0.0
    masks = np.zeros((1, 3, 8, 8), bool)
    masks[0, 0, :4, :4] = True   # person 0: top-left 4x4 pixels = cell (0, 0) at stride 4
    masks[0, 1, 4:, 4:] = True   # person 1: cell (1, 1)
    map_mask, paf_mask = openpose.loss_masks(keypoints, masks, LIMBS, map_size=2)
    assert map_mask.shape == (1, 2, 2, 14) and paf_mask.shape == (1, 2, 2, 26)
    expected = np.ones((2, 2, 14))
    expected[1, 1, 0] = 0  # the head channel on person 1's cell
    np.testing.assert_array_equal(map_mask[0], expected)
    expected = np.ones((2, 2, 26))
    expected[1, 1, 0:2] = 0  # limb 0 (head - neck), both components
    np.testing.assert_array_equal(paf_mask[0], expected)


def test_targets_are_packed_with_their_masks_and_masked_cells_cost_nothing():
    figures = make_figures(16, 64, people=(2, 4), seed=3, cache=False)
    maps_true, pafs_true = openpose.openpose_targets(
        figures.keypoints, figures.person_masks, LIMBS, image_size=64, map_size=16, sigma=3.0)
    assert maps_true.shape == (16, 16, 16, 28) and pafs_true.shape == (16, 16, 16, 52)
    assert set(np.unique(maps_true[..., 14:])) <= {0.0, 1.0}
    assert maps_true[..., 14:].min() == 0.0  # some people are cut by the border
    assert maps_true[..., :14].max() > 0.9 and np.abs(pafs_true[..., :26]).max() > 0.99
    keras.utils.set_random_seed(0)
    model = openpose.compile_openpose(openpose.openpose(**SMALL))
    batches = openpose.OpenPoseBatches(figures.images, maps_true, pafs_true, stages=2,
                                       batch_size=8, steps=2, seed=0)
    x, y = batches[0]
    assert x.shape == (8, 64, 64, 3) and sorted(y) == sorted(openpose.output_names(2))
    images = figures.images.astype(np.float32)
    _, targets = batches.make_batch(np.arange(16), None)
    clean = model.evaluate(images, targets, verbose=0, return_dict=True)
    # garbage under the mask (W = 0) changes nothing; garbage where W = 1 does
    noisy_maps, noisy_pafs = maps_true.copy(), pafs_true.copy()
    masked_maps = noisy_maps[..., 14:] == 0
    noisy_maps[..., :14][masked_maps] = 5.0
    noisy_pafs[..., :26][noisy_pafs[..., 26:] == 0] = 5.0
    noisy = {key: (noisy_pafs if key.endswith("pafs") else noisy_maps) for key in targets}
    masked = model.evaluate(images, noisy, verbose=0, return_dict=True)
    assert masked["loss"] == pytest.approx(clean["loss"], rel=1e-5)
    noisy_maps[..., :14][~masked_maps] += 0.1
    unmasked = model.evaluate(images, noisy, verbose=0, return_dict=True)
    assert unmasked["loss"] > clean["loss"] + 1.0
    # the total is the paper's sum over stages and branches
    parts = [clean[f"{key}_loss"] for key in openpose.output_names(2)]
    assert clean["loss"] == pytest.approx(sum(parts), rel=1e-4)
    model.fit(batches, epochs=1, verbose=0)  # one step each: the pipeline trains


def _truth():
    person = np.zeros((14, 3), np.float32)
    person[:, 0] = np.linspace(10, 30, 14)
    person[:, 1] = np.linspace(5, 45, 14)
    person[:, 2] = 2
    return person


def test_oks_by_hand():
    truth = _truth()
    assert evaluation.oks(truth, truth, 100.0, OKS_SIGMAS) == pytest.approx(1.0)
    shifted = truth.copy()
    shifted[:, 0] += 2.0  # d^2 = 4 everywhere: exp(-4 / (2 * 100 * (2 sigma)^2)) per joint
    expected = np.mean(np.exp(-4.0 / (2 * 100.0 * (2 * OKS_SIGMAS) ** 2)))
    assert evaluation.oks(shifted, truth, 100.0, OKS_SIGMAS) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="one sigma per joint"):
        evaluation.oks(truth[:13], truth, 100.0, OKS_SIGMAS)


def test_oks_average_precision_with_pycocotools():
    truth = _truth()
    ground_truths = [[{"keypoints": truth, "area": 200.0}], []]
    perfect = [[{"keypoints": truth.copy(), "score": 0.9}], []]
    ap, ap50 = evaluation.oks_average_precision(perfect, ground_truths, OKS_SIGMAS)
    assert ap == pytest.approx(1.0) and ap50 == pytest.approx(1.0)
    off = truth.copy()
    off[:, :2] += 1.5  # OKS 0.644 with area 200: a match at thresholds 0.5, 0.55, 0.6 only
    similarity = evaluation.oks(off, truth, 200.0, OKS_SIGMAS)
    assert 0.62 < similarity < 0.645
    ap, ap50 = evaluation.oks_average_precision([[{"keypoints": off, "score": 0.9}], []],
                                                ground_truths, OKS_SIGMAS)
    assert ap50 == pytest.approx(1.0) and ap == pytest.approx(0.3)
    # a false positive on the empty image, scored higher, halves the precision at recall 1
    fp = [[{"keypoints": truth.copy(), "score": 0.5}], [{"keypoints": truth.copy(), "score": 0.9}]]
    assert evaluation.oks_average_precision(fp, ground_truths, OKS_SIGMAS)[0] == pytest.approx(
        0.5, abs=0.01)
    assert evaluation.oks_average_precision([[], []], ground_truths, OKS_SIGMAS) == (0.0, 0.0)
    with pytest.raises(ValueError, match="one \\(possibly empty\\) list"):
        evaluation.oks_average_precision([[]], ground_truths, OKS_SIGMAS)
    with pytest.raises(ValueError, match="expected \\(14, 3\\)"):
        evaluation.oks_average_precision([[{"keypoints": truth[:12], "score": 1}], []],
                                         ground_truths, OKS_SIGMAS)


def test_mean_pose_baseline_and_true_people():
    figures = make_figures(8, 64, people=(2, 4), seed=4, cache=False)
    truth = evaluation.true_people(figures.keypoints, figures.num_people,
                                   figures.person_masks.sum((2, 3)))
    assert [len(t) for t in truth] == figures.num_people.tolist()
    baseline = evaluation.mean_pose_baseline(figures.keypoints, figures.boxes,
                                             figures.num_people, figures.boxes,
                                             figures.num_people)
    assert [len(b) for b in baseline] == figures.num_people.tolist()
    centre = figures.boxes[0, 0, :2] / 2 + figures.boxes[0, 0, 2:] / 2
    assert np.abs(baseline[0][0]["keypoints"][:, :2].mean(0) - centre).max() < 10
    ap, _ = evaluation.oks_average_precision(baseline, truth, OKS_SIGMAS)
    assert 0.0 <= ap < 0.5
    with pytest.raises(ValueError, match="train_boxes"):
        evaluation.mean_pose_baseline(figures.keypoints, figures.boxes[:, :1],
                                      figures.num_people, figures.boxes, figures.num_people)


def test_compile_with_a_training_plan_trains_exactly_as_without():
    """``training=distributed.plan_for("ci")`` gives the same weights as plain ``compile`` and
    ``fit``, also over two ``fit`` calls that continue each other (the notebook's split)."""
    from bestiary_keras import distributed

    figures = make_figures(8, 64, people=(2, 3), seed=3, cache=False)
    maps_true, pafs_true = openpose.openpose_targets(
        figures.keypoints, figures.person_masks, LIMBS, image_size=64, map_size=16, sigma=3.0)

    def trained(plan):
        keras.utils.set_random_seed(0)
        batches = openpose.OpenPoseBatches(figures.images, maps_true, pafs_true, stages=2,
                                           batch_size=4, steps=2, seed=0)
        if plan is None:
            model = openpose.compile_openpose(openpose.openpose(**SMALL), 3e-3, steps=4)
            start = model.get_weights()
            model.fit(batches, epochs=1, verbose=0)
            batches.epoch -= 1
            model.fit(batches, initial_epoch=1, epochs=2, verbose=0)
        else:
            with plan.scope():
                net = openpose.openpose(**SMALL)
            model = openpose.compile_openpose(net, 3e-3, steps=4, training=plan)
            assert model is net and model.optimizer.built  # float32: no wrapper
            start = model.get_weights()
            plan.fit(model, batches, epochs=1, verbose=0)
            batches.epoch -= 1
            plan.fit(model, batches, initial_epoch=1, epochs=2, verbose=0)
        after = model.get_weights()
        assert any(not np.array_equal(w, v) for w, v in zip(after, start))  # it trained
        return after

    for a, b in zip(trained(None), trained(distributed.plan_for("ci")), strict=True):
        np.testing.assert_array_equal(a, b)
