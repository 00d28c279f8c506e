"""The inverse warp and its parts: hand cases, the true depth and pose, bad input."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from bestiary_keras.datasets import video
from bestiary_keras.depth import geometry

K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]], np.float32)  # 24 x 32 images


def _translation(tx=0.0, ty=0.0, tz=0.0):
    m = np.eye(4, dtype=np.float32)
    m[:3, 3] = (tx, ty, tz)
    return m[None]


def test_check_intrinsics_rejects_bad_matrices():
    assert geometry.check_intrinsics(K).dtype == np.float32
    with pytest.raises(ValueError, match="3x3"):
        geometry.check_intrinsics(np.eye(4))
    with pytest.raises(ValueError, match="not invertible"):
        geometry.check_intrinsics([[0, 0, 1], [0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match="last row"):
        geometry.check_intrinsics([[1, 0, 0], [0, 1, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match="finite"):
        geometry.check_intrinsics([[np.nan, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_scale_intrinsics_keeps_pixel_centres():
    half = geometry.scale_intrinsics(K, 0.5)
    np.testing.assert_allclose(half, [[20, 0, 7.5], [0, 20, 5.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="factor"):
        geometry.scale_intrinsics(K, 0)


def test_pose_vector_hand_cases():
    np.testing.assert_allclose(geometry.pose_vec_to_matrix(np.zeros((1, 6))), np.eye(4)[None],
                               atol=1e-7)
    # 90 degrees about z: x -> y
    m = np.asarray(geometry.pose_vec_to_matrix([[1, 2, 3, 0, 0, np.pi / 2]]))[0]
    np.testing.assert_allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(m[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(m[3], [0, 0, 0, 1])
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(size=(5, 3)), rng.normal(0, 0.5, size=(5, 3))], 1)
    matrices = np.asarray(geometry.pose_vec_to_matrix(vectors))
    for r in matrices[:, :3, :3]:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(geometry.matrix_to_pose_vec(matrices), vectors, atol=1e-4)
    with pytest.raises(ValueError, match="6 numbers"):
        geometry.pose_vec_to_matrix(np.zeros((2, 7)))


def test_pose_vector_gradient_is_finite_at_zero():
    import tensorflow as tf

    v = tf.Variable(np.zeros((1, 6), np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(geometry.pose_vec_to_matrix(v) * np.arange(16).reshape(1, 4, 4))
    grad = tape.gradient(loss, v).numpy()
    assert np.all(np.isfinite(grad))
    # d/dr_z of R[1, 0] = r_z is 1, of R[0, 1] = -r_z is -1: (1 * 4) + (-1 * 1) = 3
    assert grad[0, 5] == pytest.approx(3.0, abs=1e-4)


def test_bilinear_sample_hand_case_and_outside():
    image = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)  # value = 4 * row + column
    x = np.array([[[0.5, 3.0, 3.5, -0.1]]], np.float32)
    y = np.array([[[1.5, 2.0, 0.0, 1.0]]], np.float32)
    values, inside = geometry.bilinear_sample(image, x, y)
    np.testing.assert_allclose(np.asarray(values)[0, 0, :, 0], [6.5, 11.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(inside)[0, 0, :, 0], [1, 1, 0, 0])


def test_identity_pose_reproduces_the_source():
    rng = np.random.default_rng(1)
    source = rng.random((2, 24, 32, 3)).astype(np.float32)
    depth = rng.uniform(1, 5, (2, 24, 32, 1)).astype(np.float32)
    warped, valid = geometry.inverse_warp(source, depth, np.repeat(np.eye(4)[None], 2, 0), K)
    np.testing.assert_allclose(np.asarray(warped), source, atol=1e-4)
    assert np.asarray(valid).min() == 1.0


def test_sideways_motion_shifts_by_focal_times_baseline_over_depth():
    rng = np.random.default_rng(2)
    source = rng.random((1, 24, 32, 3)).astype(np.float32)
    depth = np.full((1, 24, 32), 4.0, np.float32)  # (B, H, W) is accepted too
    # a target point X maps to X + t in the source: u_s = u + f * tx / Z = u + 40 * 0.3 / 4 = u + 3
    warped, valid = geometry.inverse_warp(source, depth, _translation(tx=0.3), K)
    warped, valid = np.asarray(warped)[0], np.asarray(valid)[0, ..., 0]
    np.testing.assert_allclose(warped[:, :-3], source[0, :, 3:], atol=1e-4)
    assert valid[:, :-3].all() and not valid[:, -3:].any()  # out of view: masked, not clipped
    assert np.all(warped[:, -3:] == 0)


def test_zero_depth_and_points_behind_the_camera_give_no_nan():
    source = np.ones((1, 24, 32, 1), np.float32)
    depth = np.zeros((1, 24, 32, 1), np.float32)
    for pose in (_translation(), _translation(tz=-2.0), _translation(tx=100.0)):
        warped, valid = geometry.inverse_warp(source, depth, pose, K)
        assert np.all(np.isfinite(np.asarray(warped)))
    warped, valid = geometry.inverse_warp(source, np.ones_like(depth), _translation(tz=-2.0), K)
    assert np.asarray(valid).max() == 0  # everything is behind the source camera


def test_gradients_of_the_warp_are_finite():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    source = tf.constant(rng.random((1, 24, 32, 3)).astype(np.float32))
    depth = tf.Variable(rng.uniform(0.0, 3.0, (1, 24, 32, 1)).astype(np.float32))
    pose = tf.Variable(np.array([[0.5, 0.1, -0.2, 0.01, 0.02, 0.0]], np.float32))
    with tf.GradientTape() as tape:
        warped, valid = geometry.inverse_warp(source, depth, pose, K)
        loss = tf.reduce_sum(warped)
    for grad in tape.gradient(loss, [depth, pose]):
        assert np.all(np.isfinite(grad.numpy()))


def test_bad_shapes_raise_clear_errors():
    source = np.zeros((1, 24, 32, 3), np.float32)
    with pytest.raises(ValueError, match="depth must be"):
        geometry.inverse_warp(source, np.ones((1, 12, 16, 1)), _translation(), K)
    with pytest.raises(ValueError, match="pose must be"):
        geometry.inverse_warp(source, np.ones((1, 24, 32, 1)), np.eye(3)[None], K)
    with pytest.raises(ValueError, match="3x3"):
        geometry.inverse_warp(source, np.ones((1, 24, 32, 1)), _translation(), np.eye(2))
    with pytest.raises(ValueError, match="source must be"):
        geometry.inverse_warp(source[0], np.ones((1, 24, 32, 1)), _translation(), K)
    with pytest.raises(ValueError, match="snippets must have shape"):
        geometry.check_snippet(np.zeros((2, 5, 24, 32, 3)))


def test_true_depth_and_pose_reproduce_the_rendered_target():
    snippets = video.make_video_snippets(8, (48, 64), seed=5, cache=False)
    target = snippets.targets.astype(np.float32) / 255
    motions = snippets.target_to_source()
    for j, frame in enumerate((0, 2)):
        source = snippets.frames[:, frame].astype(np.float32) / 255
        warped, valid = geometry.inverse_warp(source, snippets.target_depth, motions[:, j],
                                              snippets.intrinsics)
        error = np.abs(np.asarray(warped) - target).mean(-1)
        valid = np.asarray(valid)[..., 0] > 0
        unwarped = np.abs(source - target).mean(-1)
        # up to occlusions, borders and resampling: small where valid, 4x below no warp
        assert valid.mean() > 0.6
        assert np.median(error[valid]) < 0.02
        assert error[valid].mean() < 0.35 * unwarped.mean()
