"""Triplet descriptors for recognition and 3D pose (notebook 16): loss, rasteriser, sampling."""

import numpy as np
import pytest
import tensorflow as tf

from bestiary_keras.metric_learning import losses, render, triplet


# --- the loss -------------------------------------------------------------------------------

def test_triplet_ratio_loss_hand_values():
    anchor = np.zeros((3, 2), np.float32)
    positive = np.array([[3, 4], [3, 4], [0, 0]], np.float32)  # d+ = 5, 5, 0
    negative = np.array([[6, 8], [0, 3], [0, 0.5]], np.float32)  # d- = 10, 3, 0.5
    cost = np.asarray(losses.triplet_ratio_loss(anchor, positive, negative, margin=1.0))
    # max(0, 1 - 10 / 6) = 0; 1 - 3 / 6 = 0.5; 1 - 0.5 / (1e-6 + 1) ~ 0.5
    np.testing.assert_allclose(cost, [0.0, 0.5, 0.5], atol=1e-5)


def test_pair_and_full_cost_hand_values():
    anchor = np.array([[1.0, 2.0]], np.float32)
    same = np.array([[1.0, 0.0]], np.float32)
    assert float(losses.pair_loss(anchor, same)[0]) == pytest.approx(4.0)
    # triplet term: d+ = |(1,2) - (1,2)| ~ 0, d- = |(1,2) - (1,2.5)| = 0.5, m = 1 -> 0.5
    cost = losses.wohlhart_lepetit_loss(anchor, anchor, np.array([[1.0, 2.5]], np.float32),
                                        same, margin=1.0, pair_weight=0.5)
    assert float(cost[0]) == pytest.approx(0.5 + 0.5 * 4.0, abs=1e-5)


def test_triplet_loss_gradients_are_finite_when_descriptors_coincide():
    x = tf.Variable([[0.3, -0.2, 0.1]])
    with tf.GradientTape() as tape:
        cost = losses.wohlhart_lepetit_loss(x, x, x, x, margin=0.01)
    grad = tape.gradient(cost, x).numpy()
    assert np.all(np.isfinite(grad))
    assert float(cost[0]) == pytest.approx(1.0, abs=1e-3)  # d- = 0: the full cost of 1


def test_triplet_loss_rejects_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        losses.triplet_ratio_loss(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="margin"):
        triplet.TripletPoseLoss(margin=-1)


def test_triplet_network_and_loss_class():
    branch = triplet.wohlhart_lepetit_net((32, 32, 1), descriptor_dim=3)
    assert branch.output_shape == (None, 3)
    model = triplet.triplet_network(branch)
    assert model.count_params() == branch.count_params()
    x = [np.random.default_rng(i).random((2, 32, 32, 1)).astype(np.float32) for i in range(4)]
    out = np.asarray(model(x))
    assert out.shape == (2, 4, 3)
    np.testing.assert_allclose(out[:, 2], np.asarray(branch(x[2])), rtol=1e-5, atol=1e-6)
    loss = triplet.TripletPoseLoss(margin=0.5, pair_weight=2.0)
    expected = np.mean(np.asarray(losses.wohlhart_lepetit_loss(out[:, 0], out[:, 1], out[:, 2],
                                                               out[:, 3], 0.5, 2.0)))
    assert float(loss(np.zeros(2), out)) == pytest.approx(expected, rel=1e-5)
    assert triplet.TripletPoseLoss.from_config(loss.get_config()).pair_weight == 2.0
    with pytest.raises(ValueError, match="input_shape"):
        triplet.wohlhart_lepetit_net((16, 16, 1))


# --- the rasteriser -------------------------------------------------------------------------

def test_camera_looks_at_the_origin():
    rotation, centre = render.camera_pose(40.0, 30.0, distance=4.0)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(centre), 4.0)
    px, depth = render.project(np.zeros(3), rotation, centre, focal=10.0, size=32)
    np.testing.assert_allclose(px, [16.0, 16.0])
    assert depth == pytest.approx(4.0)
    # a point above the origin appears above the centre (smaller y)
    px, _ = render.project(np.array([0, 0, 1.0]), rotation, centre, focal=10.0, size=32)
    assert px[1] < 16.0
    with pytest.raises(ValueError, match="elevation"):
        render.camera_pose(0.0, 90.0)


def test_rasterize_half_square_and_z_buffer():
    # one triangle covering the lower-left half of a 4x4 image
    tri = np.array([[[0, 0], [4, 4], [0, 4]]], np.float64)
    image, covered = render.rasterize(tri, np.ones((1, 3)), np.array([0.7]), 4)
    # pixel centres (x + 0.5, y + 0.5) with y >= x lie inside (the diagonal included)
    expected = np.tri(4, dtype=bool)
    np.testing.assert_array_equal(covered, expected)
    np.testing.assert_allclose(image[covered], 0.7)
    # a second, nearer triangle over the same pixels wins
    tris = np.concatenate([tri, tri])
    image, _ = render.rasterize(tris, np.array([[2.0] * 3, [1.0] * 3]), np.array([0.2, 0.9]), 4)
    np.testing.assert_allclose(image[expected], 0.9)


def test_render_object_is_centred_and_keeps_the_background():
    background = np.full((32, 32), 0.1)
    image, coverage = render.render_object("house", 30.0, background=background)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert coverage[16, 16] == 1.0 and coverage[0, 0] == 0.0
    assert image[0, 0] == pytest.approx(0.1)
    assert 0.0 <= image.min() and image.max() <= 1.0
    again, _ = render.render_object("house", 30.0, background=background)
    np.testing.assert_array_equal(image, again)
    other, _ = render.render_object("house", 120.0, background=background)
    assert np.abs(image - other).mean() > 0.02  # another pose looks different
    with pytest.raises(ValueError, match="Unknown object"):
        render.render_object("teapot", 0.0)


def test_compose_without_conditions_is_alpha_blending():
    shading, coverage = render.render_layers(["stairs"], [10.0], size=16)
    backgrounds = np.full((1, 16, 16), 0.4, np.float32)
    out = render.compose(shading, coverage, np.random.default_rng(0), backgrounds=backgrounds)
    np.testing.assert_allclose(out[0, ..., 0], shading[0] + (1 - coverage[0]) * 0.4, atol=1e-6)
    noisy = render.compose(shading, coverage, np.random.default_rng(0), backgrounds=backgrounds,
                           noise=0.05, clutter=2, shift=2)
    assert noisy.shape == (1, 16, 16, 1) and 0 <= noisy.min() and noisy.max() <= 1


def test_angle_difference():
    np.testing.assert_allclose(render.angle_difference([350, 10, 90, 0], [10, 350, 270, 180]),
                               [20, 20, 180, 180])


# --- data and evaluation --------------------------------------------------------------------

def test_sample_triplets_follows_the_rules():
    names = ("house", "stairs")
    pool = triplet.make_pose_pool(names, np.random.default_rng(0), pose_step_deg=30, variants=2,
                                  size=16)
    assert len(pool) == 2 * 12 * 2 and pool.shading.shape == (48, 16, 16)
    idx = triplet.sample_triplets(pool, 300, np.random.default_rng(1), positive_max_deg=30)
    i, j, k, same = idx.T
    obj, az = pool.object, pool.azimuth
    assert np.all(obj[j] == obj[i])
    d_pos = render.angle_difference(az[j], az[i])
    assert np.all((d_pos > 0) & (d_pos <= 30))
    other = obj[k] != obj[i]
    assert np.all(render.angle_difference(az[k], az[i])[~other] >= 60)
    assert 0.3 < other.mean() < 0.7
    assert np.all((obj[same] == obj[i]) & (az[same] == az[i]))
    with pytest.raises(ValueError, match="positive_max_deg"):
        triplet.sample_triplets(pool, 1, np.random.default_rng(0), positive_max_deg=10)


def test_triplet_batches_are_reproducible():
    pool = triplet.make_pose_pool(("house", "tower"), np.random.default_rng(0),
                                  pose_step_deg=30, variants=2, size=32)
    backgrounds = np.random.default_rng(0).random((5, 32, 32)).astype(np.float32) * 0.5
    batches = triplet.TripletBatches(pool, backgrounds, steps=3, batch_size=4, seed=7,
                                     positive_max_deg=30)
    assert len(batches) == 3
    (a, p, n, s), y = batches[1]
    assert a.shape == (4, 32, 32, 1) and y.shape == (4,)
    again = batches[1][0]
    np.testing.assert_array_equal(a, again[0])
    assert not np.array_equal(a, batches[2][0][0])
    # A batching.SeededBatches whose step generator is the one the class used before it was
    # one (numpy.random.default_rng([seed, index])): the same batches as before.
    (old_inputs, old_idx) = batches.compose(np.random.default_rng([7, 1]))
    inputs, idx = batches.batch(1)
    np.testing.assert_array_equal(idx, old_idx)
    for new, old in zip(inputs, old_inputs):
        np.testing.assert_array_equal(new, old)
    np.testing.assert_array_equal(a, old_inputs[0])


def test_pose_retrieval_hand_case():
    names = ("a", "b")
    templates = triplet.PoseViews(None, np.array([0, 0, 1, 1]), np.array([0.0, 90, 0, 90]),
                                  np.zeros(4, int), names)
    template_desc = np.array([[0.0], [1.0], [10.0], [11.0]])
    queries = triplet.PoseViews(None, np.array([0, 0, 1, 1]), np.array([5.0, 60, 350, 0]),
                                np.ones(4, int), names)
    query_desc = np.array([[0.1], [0.9], [10.2], [1.2]])  # the last one is mistaken for "a"
    r = triplet.pose_retrieval(query_desc, queries, template_desc, templates)
    assert r["class_accuracy"] == pytest.approx(0.75)
    # errors of the right ones: 5, 30, 10 degrees
    assert r["pose_10"] == pytest.approx(0.25)
    assert r["pose_20"] == pytest.approx(0.5)
    assert r["pose_40"] == pytest.approx(0.75)
    assert r["median_pose_error"] == pytest.approx(10.0)
    np.testing.assert_array_equal(r["nearest"], [0, 1, 2, 1])


def test_normalized_pixels():
    x = np.random.default_rng(0).random((3, 4, 4, 1))
    d = triplet.normalized_pixels(x)
    assert d.shape == (3, 16)
    np.testing.assert_allclose(d.mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, atol=1e-4)
