"""The disparity and pose/explainability networks and the view-synthesis trainer."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

from bestiary_keras.datasets import video
from bestiary_keras.depth import networks


def test_disp_net_scales_and_depth_range():
    model = networks.disp_net((32, 48, 3), filters=(4, 8, 8, 8), min_depth=0.5, max_depth=40)
    outputs = model(np.random.default_rng(0).random((2, 32, 48, 3)).astype("float32"))
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 48, 1), (2, 16, 24, 1), (2, 8, 12, 1),
                                                 (2, 4, 6, 1)]
    for o in outputs:
        depth = 1.0 / np.asarray(o)
        assert depth.min() >= 0.5 - 1e-4 and depth.max() <= 40 + 1e-3
    with pytest.raises(ValueError, match="multiples of 16"):
        networks.disp_net((24, 32, 3))
    with pytest.raises(ValueError, match="min_depth"):
        networks.disp_net((32, 48, 3), min_depth=5, max_depth=1)


def test_pose_exp_net_outputs_and_the_paper_scaling():
    with_masks = networks.pose_exp_net((32, 48, 3), filters=(4, 8, 8, 8, 8))
    out = with_masks(np.random.default_rng(1).random((2, 32, 48, 9)).astype("float32"))
    assert tuple(out[0].shape) == (2, 2, 6)
    assert [tuple(m.shape) for m in out[1:]] == [(2, 32, 48, 2), (2, 16, 24, 2), (2, 8, 12, 2),
                                                 (2, 4, 6, 2)]
    assert all(0 < float(np.min(m)) and float(np.max(m)) < 1 for m in out[1:])
    assert with_masks.get_layer("pose_scale").scale == 0.01
    plain = networks.pose_exp_net((32, 48, 3), explainability=False, filters=(4, 8, 8, 8, 8))
    assert tuple(plain.output.shape) == (None, 2, 6)
    with pytest.raises(ValueError, match="num_sources"):
        networks.pose_exp_net((32, 48, 3), num_sources=0)


def _trainer(explainability=True, seed=0):
    keras.utils.set_random_seed(seed)
    return networks.ViewSynthesis(
        networks.disp_net((32, 48, 3), filters=(8, 8, 16, 16)),
        networks.pose_exp_net((32, 48, 3), explainability=explainability,
                              filters=(8, 8, 16, 16, 16)),
        video.default_intrinsics(32, 48))


@pytest.fixture(scope="module")
def snippets():
    return video.make_video_snippets(8, (32, 48), seed=7, cache=False)


@pytest.mark.parametrize("explainability", [False, True])
def test_training_lowers_the_loss_on_a_fixed_batch(snippets, explainability):
    model = _trainer(explainability)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    batch = snippets.frames.astype("float32") / 255
    before = [float(t) for t in model.loss_terms(batch)]
    assert all(np.isfinite(before))
    assert (before[3] > 0) == explainability  # the regulariser only with masks
    model.fit(batch, batch_size=8, epochs=30, verbose=0)
    after = float(model.loss_terms(batch)[0])
    assert after < 0.9 * before[0]
    depth = model.predict_depth(snippets.targets)  # uint8 input is scaled to [0, 1]
    assert depth.shape == (8, 32, 48) and np.all(np.isfinite(depth))
    assert model.predict_poses(snippets.frames).shape == (8, 2, 6)


def test_wrong_snippet_length_is_rejected(snippets):
    model = _trainer(False)
    with pytest.raises(ValueError, match="snippets must have shape"):
        model.loss_terms(np.zeros((2, 5, 32, 48, 3), np.float32))


def test_save_and_load_give_the_same_outputs(snippets, tmp_path):
    model = _trainer(True)
    batch = snippets.frames[:2].astype("float32") / 255
    disparities, poses, masks = model(batch)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    disparities2, poses2, masks2 = loaded(batch)
    np.testing.assert_allclose(np.asarray(poses2), np.asarray(poses), atol=1e-6)
    for a, b in zip(disparities + masks, disparities2 + masks2):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    np.testing.assert_allclose(loaded.intrinsics, model.intrinsics)
