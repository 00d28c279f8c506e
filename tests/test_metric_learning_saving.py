"""Every metric-learning model with a custom layer survives ``model.save`` and
``keras.models.load_model`` with identical outputs (and its compiled loss with it)."""

import keras
import numpy as np
import pytest

from bestiary_keras.metric_learning import lift, losses, siamese, triplet


def _reloaded(model, tmp_path):
    model.save(tmp_path / "m.keras")
    return keras.models.load_model(tmp_path / "m.keras")


def _assert_same_outputs(model, loaded, inputs):
    for a, b in zip(keras.tree.flatten(model.predict(inputs, verbose=0)),
                    keras.tree.flatten(loaded.predict(inputs, verbose=0))):
        np.testing.assert_array_equal(a, b)


def test_siamese_networks_with_l2_pooling_and_pair_distance(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    digits = siamese.siamese_network(siamese.digit_branch((8, 8, 1), 2, filters=(4, 4),
                                                          hidden_units=8))
    digits.compile(optimizer="adam", loss=losses.ContrastiveLoss(margin=1.5))
    x = [rng.random((3, 8, 8, 1), dtype=np.float32) for _ in range(2)]
    loaded = _reloaded(digits, tmp_path)
    _assert_same_outputs(digits, loaded, x)
    assert loaded.loss.margin == 1.5
    assert any(isinstance(layer, siamese.PairDistance) for layer in loaded.layers)

    pairs = siamese.descriptor_pair_network(siamese.patch_descriptor((16, 16, 1), 8,
                                                                     filters=(4, 4)))
    pairs.compile(optimizer="adam", loss=losses.HardestNegativeContrastiveLoss(margin=2.0))
    x = [rng.random((3, 16, 16, 1), dtype=np.float32) for _ in range(2)]
    loaded = _reloaded(pairs, tmp_path)
    _assert_same_outputs(pairs, loaded, x)
    pool = loaded.get_layer("desc").get_layer("l2pool1")
    assert isinstance(pool, siamese.L2Pooling2D) and pool.pool_size == 2


def test_triplet_network_and_its_loss(tmp_path):
    keras.utils.set_random_seed(0)
    model = triplet.triplet_network(triplet.wohlhart_lepetit_net((32, 32, 1), 3))
    model.compile(optimizer="adam", loss=triplet.TripletPoseLoss(0.02))
    x = [np.random.default_rng(k).random((2, 32, 32, 1), dtype=np.float32) for k in range(4)]
    loaded = _reloaded(model, tmp_path)
    _assert_same_outputs(model, loaded, x)
    assert loaded.loss.get_config()["margin"] == pytest.approx(0.02)


@pytest.mark.parametrize("stage", ["desc", "ori", "det"])
def test_lift_stages_with_crop_and_rotate_soft_argmax_and_packing(tmp_path, stage):
    keras.utils.set_random_seed(0)
    det, ori = lift.detector_net(), lift.orientation_net((32, 32, 1))
    desc = siamese.patch_descriptor((32, 32, 1), 8, filters=(4, 8))
    rng = np.random.default_rng(0)
    patches = [rng.random((2, 64, 64, 1), dtype=np.float32) for _ in range(4)]
    if stage == "desc":
        model, x = lift.desc_stage(desc), patches[:3] + [np.float32([0.3, -1.0])]
        terms = ("pair", "negative")
    elif stage == "ori":
        model, x, terms = lift.ori_stage(ori, desc), patches[:2], ("pair",)
    else:
        model, x, terms = lift.det_stage(det, ori, desc), patches, ("pair", "class")
    model.compile(optimizer="adam", loss=lift.LiftCost(8, terms=terms, margin=2.0))
    loaded = _reloaded(model, tmp_path)
    _assert_same_outputs(model, loaded, x)
    assert loaded.loss.get_config()["terms"] == list(terms)
