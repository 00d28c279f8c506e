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


def _trainer(explainability=True, seed=0, mask_out_of_view=False):
    keras.utils.set_random_seed(seed)
    return networks.ViewSynthesis(
        networks.disp_net((32, 48, 3), filters=(8, 8, 16, 16)),
        networks.pose_exp_net((32, 48, 3), explainability=explainability,
                              filters=(8, 8, 16, 16, 16)),
        video.default_intrinsics(32, 48), mask_out_of_view=mask_out_of_view)


@pytest.fixture(scope="module")
def snippets():
    return video.make_video_snippets(8, (32, 48), seed=7, cache=False)


# without a mask the paper's objective keeps an error it cannot train away (target pixels whose
# warp leaves the source are compared with black), so the plain model is checked on the in-view
# mean; the masked model on the paper's objective, where the mask may discount those pixels
@pytest.mark.parametrize("explainability,mask_out_of_view", [(False, True), (True, False)])
def test_training_lowers_the_loss_on_a_fixed_batch(snippets, explainability, mask_out_of_view):
    model = _trainer(explainability, mask_out_of_view=mask_out_of_view)
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


@pytest.mark.parametrize("mask_out_of_view", [False, True])
def test_pixels_that_leave_the_view_cost_only_in_the_papers_objective(mask_out_of_view):
    # a white scene at depth 1, both sources moved sideways: the target's pixels whose p_s
    # leaves the source are synthesised black. The paper's mean over all pixels charges each
    # of them |1 - 0| = 1; the masked mean over pixels in view is exactly 0.
    from keras import layers, ops

    from bestiary_keras.depth import geometry

    height, width = 32, 48
    image = keras.Input((height, width, 3))
    disparities = [layers.Lambda(lambda x, s=s: ops.ones_like(x[:, ::2 ** s, ::2 ** s, :1]))(image)
                   for s in range(networks.NUM_SCALES)]
    frames = keras.Input((height, width, 9))
    pose = layers.Lambda(lambda x: ops.zeros_like(x[:, :2, 0, :6])
                         + ops.convert_to_tensor([[0.2, 0, 0, 0, 0, 0], [-0.2, 0, 0, 0, 0, 0]]))(frames)
    k = video.default_intrinsics(height, width)
    model = networks.ViewSynthesis(keras.Model(image, disparities), keras.Model(frames, pose), k,
                                   mask_out_of_view=mask_out_of_view)
    snippet = np.ones((1, 3, height, width, 3), np.float32)
    photometric = float(model.loss_terms(snippet)[1])
    out_of_view = 0.0
    for s in range(networks.NUM_SCALES):
        h, w = height // 2 ** s, width // 2 ** s
        for t in (0.2, -0.2):
            matrix = geometry.pose_vec_to_matrix(np.array([[t, 0, 0, 0, 0, 0]], np.float32))
            _, valid = geometry.inverse_warp(np.ones((1, h, w, 3), np.float32),
                                             np.ones((1, h, w), np.float32), matrix,
                                             geometry.scale_intrinsics(k, 0.5 ** s))
            out_of_view += 1.0 - float(np.mean(valid))
    assert out_of_view > 0.5  # the shift moves a real share of pixels out of view
    expected = 0.0 if mask_out_of_view else out_of_view
    assert photometric == pytest.approx(expected, abs=1e-5)
