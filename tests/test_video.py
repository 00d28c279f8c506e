"""The ray-cast corridor video: determinism, geometry of the depth and poses, bad input."""

import numpy as np
import pytest

from bestiary_keras.datasets import video


@pytest.fixture(scope="module")
def snippets():
    return video.make_video_snippets(6, (24, 32), seed=3, snippets_per_scene=3, cache=False)


def test_shapes_types_and_ranges(snippets):
    assert snippets.frames.shape == (6, 3, 24, 32, 3) and snippets.frames.dtype == np.uint8
    assert snippets.depth.shape == (6, 3, 24, 32) and snippets.poses.shape == (6, 3, 4, 4)
    assert snippets.targets.shape == (6, 24, 32, 3)
    assert np.all(np.isfinite(snippets.depth)) and snippets.depth.min() > 0.5
    assert snippets.frames.std() > 20  # textured, not flat
    np.testing.assert_allclose(snippets.intrinsics, video.default_intrinsics(24, 32))


def test_deterministic_and_independent_of_the_count(snippets):
    again = video.make_video_snippets(3, (24, 32), seed=3, snippets_per_scene=3, cache=False)
    np.testing.assert_array_equal(again.frames, snippets.frames[:3])
    np.testing.assert_array_equal(again.depth, snippets.depth[:3])
    other = video.make_video_snippets(3, (24, 32), seed=4, snippets_per_scene=3, cache=False)
    assert not np.array_equal(other.frames, snippets.frames[:3])


def test_snippets_of_one_scene_share_frames(snippets):
    # snippet i + 1 starts one frame later on the same camera path
    np.testing.assert_array_equal(snippets.frames[0, 1:], snippets.frames[1, :2])
    np.testing.assert_allclose(snippets.poses[0, 1:], snippets.poses[1, :2])


def test_depth_is_the_z_of_the_floor_below_the_centre():
    """A pixel on the image's vertical midline, below the horizon, sees the floor plane."""
    rng = np.random.default_rng(0)
    scene = video._scene(rng)
    scene["boxes"] = []  # only the corridor's planes
    floor = scene["planes"][0][1]
    k = video.default_intrinsics(24, 32)
    image, depth = video.render_view(scene, np.eye(4), k, 24, 32)
    v = 23  # bottom row: ray (0, (23 - cy) / f, 1) hits y = floor at z = floor * f / (23 - cy)
    u = 15  # near the centre column (cx = 15.5): the ray's x barely matters for the floor
    assert depth[v, u] == pytest.approx(floor * k[1, 1] / (v - k[1, 2]), rel=1e-5)
    assert image.shape == (24, 32, 3) and 0 <= image.min() and image.max() <= 1


def test_relative_pose_maps_target_points_into_the_source_frame(snippets):
    motions = snippets.target_to_source()
    assert motions.shape == (6, 2, 4, 4)
    poses = snippets.poses[0].astype(np.float64)
    point_world = np.array([0.3, 0.2, 5.0, 1.0])
    in_target = np.linalg.inv(poses[1]) @ point_world
    in_source = np.linalg.inv(poses[0]) @ point_world
    np.testing.assert_allclose(motions[0, 0] @ in_target, in_source, atol=1e-4)
    # the camera moves forward between frames: t_z of T_{t-1 <- t} is positive
    assert np.all(motions[:, 0, 2, 3] > 0.1) and np.all(motions[:, 1, 2, 3] < -0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        video.make_video_snippets(2, (4, 32), cache=False)
    with pytest.raises(ValueError, match="num_snippets"):
        video.make_video_snippets(0, cache=False)
    with pytest.raises(ValueError, match="snippets_per_scene"):
        video.make_video_snippets(2, snippets_per_scene=0, cache=False)
