"""The Convolutional Pose Machine: shapes, stages, loss weights, batches, save/load, learning."""

import numpy as np
import keras
import pytest

from bestiary_keras import training
from bestiary_keras.datasets.figures import make_figures
from bestiary_keras.pose import cpm, heatmaps
from bestiary_keras.pose.losses import MaskedL2


def test_builder_outputs_one_map_per_stage():
    model = cpm.cpm((64, 48, 3), 14, stages=3)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 16, 12, 14)] * 3
    names = [layer.name for layer in model.layers]
    assert "stage_1" in names and "stage_3" in names and "stage4_concat" not in names
    # stage t >= 2 sees the trunk's features and the previous stage's beliefs
    concat = model.get_layer("stage3_concat")
    assert concat.output.shape[-1] == 64 + 14  # features + beliefs
    one = cpm.cpm(stages=1, stage_filters=16)
    assert len(one.outputs) == 1


def test_refinement_stages_see_more_context():
    """Stage 1's receptive field is local; stage 2's covers the figure: a change in a far
    corner of the image moves stage 2's beliefs at the centre, not stage 1's."""
    model = cpm.cpm(stages=2)
    images = np.zeros((2, 64, 64, 3), np.float32)
    images[1, :8, :8] = 255.0
    b1, b2 = (np.asarray(o) for o in model(images))
    centre = (slice(None), 8, 8)
    assert np.allclose(b1[centre][0], b1[centre][1])
    assert not np.allclose(b2[centre][0], b2[centre][1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 4"):
        cpm.cpm((62, 64, 3))
    with pytest.raises(ValueError, match="stages"):
        cpm.cpm(stages=0)
    model = cpm.cpm(stages=2)
    with pytest.raises(ValueError, match="one weight per stage"):
        cpm.compile_cpm(model, stage_weights=(1.0,))


def test_batches_and_masked_targets():
    figures = make_figures(20, 64, seed=0, cache=False)
    keypoints = figures.keypoints[:, 0].copy()
    keypoints[3, 5] = 0  # an unlabelled joint: its channel is masked in image 3
    batches = cpm.CPMBatches(figures.images, keypoints, stages=3, sigma=3.0, batch_size=4,
                             steps=5, seed=1)
    assert len(batches) == 5
    x, y = batches[0]
    assert x.shape == (4, 64, 64, 3) and x.dtype == np.float32
    assert len(y) == 3 and y[0].shape == (4, 16, 16, 28)
    again = cpm.CPMBatches(figures.images, keypoints, stages=3, sigma=3.0, batch_size=4,
                           steps=5, seed=1)
    np.testing.assert_array_equal(again[0][0], x)
    packed = batches.targets(np.array([3]))
    assert packed[0, ..., 14 + 5].max() == 0 and packed[0, ..., 14 + 4].min() == 1
    # decoding the targets gives back the keypoints
    decoded = heatmaps.keypoints_from_maps(packed[..., :14], 64)
    labelled = keypoints[3, :, 2] > 0
    np.testing.assert_allclose(decoded[0, labelled, :2], keypoints[3, labelled, :2], atol=0.1)


def test_stage_weights_turn_off_intermediate_supervision():
    figures = make_figures(8, 64, seed=0, cache=False)
    batches = cpm.CPMBatches(figures.images, figures.keypoints[:, 0], stages=3, sigma=3.0,
                             batch_size=4, steps=1)
    x, y = batches[0]
    keras.utils.set_random_seed(0)
    every = cpm.compile_cpm(cpm.cpm(stages=3, stage_filters=16))
    logs = every.test_on_batch(x, y, return_dict=True)
    stage_losses = [logs[f"stage_{t}_loss"] for t in (1, 2, 3)]
    assert logs["loss"] == pytest.approx(sum(stage_losses), rel=1e-4)
    # each stage's loss is the masked L2 of its own output, averaged over the batch
    outputs = every.predict(x, verbose=0)
    expected = float(np.mean(np.sum((outputs[0] - y[0][..., :14]) ** 2, axis=(1, 2, 3))))
    assert stage_losses[0] == pytest.approx(expected, rel=1e-4)
    last_only = cpm.compile_cpm(cpm.cpm(stages=3, stage_filters=16), stage_weights=(0, 0, 1))
    logs = last_only.test_on_batch(x, y, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["stage_3_loss"], rel=1e-4)
    assert logs["stage_1_loss"] > 0  # still measured, not trained on


def test_save_and_load(tmp_path):
    model = training.build_optimizer(cpm.compile_cpm(cpm.cpm(stages=2, stage_filters=16)))
    images = make_figures(2, 64, seed=0, cache=False).images.astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for a, b in zip(model(images), loaded(images)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    assert isinstance(loaded.loss[0], MaskedL2)


def test_learns_on_a_tiny_set():
    """Overfitting 32 figures: the last stage's PCK@0.2 on them goes far above the untrained
    net's, and the loss falls."""
    keras.utils.set_random_seed(0)
    figures = make_figures(32, 64, seed=0, cache=False)
    keypoints = figures.keypoints[:, 0]
    model = cpm.compile_cpm(cpm.cpm(stages=2, stage_filters=32), learning_rate=2e-3)
    before = heatmaps.pck(keypoints, cpm.predict_keypoints(model, figures.images)[-1])
    batches = cpm.CPMBatches(figures.images, keypoints, stages=2, sigma=3.0, batch_size=8,
                             steps=40, seed=0)
    history = model.fit(batches, epochs=5, verbose=0)
    losses = history.history["loss"]  # seed 0: 45.9 -> 23.3 (epoch means)
    assert losses[-1] < 0.65 * losses[0]
    after = cpm.predict_keypoints(model, figures.images)
    assert len(after) == 2 and after[-1].shape == (32, 14, 3)
    assert heatmaps.pck(keypoints, after[-1]) > max(0.5, before + 0.3)  # seed 0: 0.01 -> 0.84


def test_compile_with_a_training_plan_trains_exactly_as_without():
    """``training=distributed.plan_for("ci")`` (the notebook's TRAINING on the CPU) gives the
    same weights, step for step, as the plain ``model.compile`` + ``model.fit``."""
    from bestiary_keras import distributed

    figures = make_figures(8, 64, seed=0, cache=False)

    def trained(plan):
        keras.utils.set_random_seed(0)
        batches = cpm.CPMBatches(figures.images, figures.keypoints[:, 0], stages=2, sigma=3.0,
                                 batch_size=4, steps=2, seed=0)
        if plan is None:
            model = cpm.compile_cpm(cpm.cpm(stages=2, stage_filters=8), steps=4)
            start = model.get_weights()
            model.fit(batches, epochs=2, verbose=0)
        else:
            with plan.scope():
                net = cpm.cpm(stages=2, stage_filters=8)
            model = cpm.compile_cpm(net, steps=4, training=plan)
            assert model is net and model.optimizer.built  # float32: no wrapper
            start = model.get_weights()
            plan.fit(model, batches, epochs=2, verbose=0)
        after = model.get_weights()
        assert any(not np.array_equal(w, v) for w, v in zip(after, start))  # it trained
        return after

    for a, b in zip(trained(None), trained(distributed.plan_for("ci")), strict=True):
        np.testing.assert_array_equal(a, b)
