"""LIFT (notebook 17): the spatial transformer, softargmax, the global cost, the stages."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from bestiary_keras.metric_learning import lift, lift_pipeline, losses, patches, siamese


def ramp(h=20, w=24):
    """I(y, x) = x + 10 y: bilinear interpolation reproduces it exactly."""
    y, x = np.mgrid[0:h, 0:w]
    return (x + 10.0 * y).astype(np.float32)


# --- G(P, x, theta) -------------------------------------------------------------------------

def test_crop_without_rotation_hand_case():
    image = ramp()[None, ..., None]
    crop = np.asarray(lift.crop_and_rotate(image, [[10.0, 8.0]], [0.0], 4))[0, ..., 0]
    # pixel (i, j) samples (x, y) = (10 + j - 2, 8 + i - 2)
    i, j = np.mgrid[0:4, 0:4]
    np.testing.assert_allclose(crop, (10 + j - 2) + 10.0 * (8 + i - 2), atol=1e-4)
    # the same as patches.extract_patches (the convention shared by the whole chapter)
    np.testing.assert_allclose(crop, patches.extract_patches(ramp(), [(10, 8)], 4)[0], atol=1e-4)


def test_crop_rotated_by_90_degrees_and_subpixel_centre():
    image = ramp()[None, ..., None]
    crop = np.asarray(lift.crop_and_rotate(image, [[10.5, 8.25]], [np.pi / 2], 4))[0, ..., 0]
    # R(90) (dx, dy) = (-dy, dx): pixel (i, j) samples (10.5 - (i - 2), 8.25 + (j - 2))
    i, j = np.mgrid[0:4, 0:4]
    np.testing.assert_allclose(crop, (10.5 - (i - 2)) + 10.0 * (8.25 + (j - 2)), atol=1e-3)
    # (cos, sin) gives the same crop as the angle
    again = lift.crop_and_rotate(image, [[10.5, 8.25]], np.array([[0.0, 1.0]], np.float32), 4)
    np.testing.assert_allclose(np.asarray(again)[0, ..., 0], crop, atol=1e-3)


def test_crop_outside_the_image_is_zero():
    crop = np.asarray(lift.crop_and_rotate(np.ones((1, 8, 8, 1), np.float32), [[0.0, 0.0]],
                                           [0.0], 4))[0, ..., 0]
    assert crop[0, 0] == 0.0 and crop[3, 3] == 1.0


def test_crop_is_differentiable_in_location_and_angle():
    image = tf.constant(ramp()[None, ..., None])
    centre = tf.Variable([[10.3, 8.6]])
    angle = tf.Variable([0.0])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(lift.crop_and_rotate(image, centre, angle, 4))
    g_centre, g_angle = tape.gradient(total, [centre, angle])
    # each of the 16 pixels grows by 1 per pixel of x and by 10 per pixel of y
    np.testing.assert_allclose(g_centre.numpy(), [[16.0, 160.0]], rtol=1e-4)
    assert np.isfinite(g_angle.numpy()).all()


def test_crop_of_a_rotated_view_with_the_added_angle_is_the_same_crop():
    # The convention ORI relies on: if view 2 is view 1 rotated by alpha about c, the crop of
    # view 2 at c with theta + alpha equals the crop of view 1 at c with theta. On a linear
    # image bilinear sampling is exact, so the rotated view can be written down by hand:
    # J(p) = I(c + R(-alpha) (p - c)) with I(x, y) = x + 10 y.
    c = np.array([12.0, 10.0])
    alpha, theta = np.deg2rad(30.0), np.deg2rad(20.0)
    y, x = np.mgrid[0:20, 0:24].astype(np.float64)
    back_x = c[0] + np.cos(alpha) * (x - c[0]) + np.sin(alpha) * (y - c[1])
    back_y = c[1] - np.sin(alpha) * (x - c[0]) + np.cos(alpha) * (y - c[1])
    view_2 = (back_x + 10.0 * back_y).astype(np.float32)
    crop_1 = lift.crop_and_rotate(ramp()[None, ..., None], [c], [theta], 6)
    crop_2 = lift.crop_and_rotate(view_2[None, ..., None], [c], [theta + alpha], 6)
    np.testing.assert_allclose(np.asarray(crop_2), np.asarray(crop_1), atol=1e-3)


def test_crops_from_a_batch_of_images_by_index():
    images = np.stack([ramp(), 100 + ramp()])[..., None]
    crops = np.asarray(lift.crop_and_rotate(images, [[10.0, 8.0]] * 3, [0.0] * 3, 4,
                                            image_index=[1, 0, 1]))
    np.testing.assert_allclose(crops[0], crops[1] + 100, atol=1e-4)
    np.testing.assert_allclose(crops[2], crops[0], atol=1e-4)


def test_crop_layer_defaults_to_the_middle():
    layer = lift.CropAndRotate(4)
    images = np.stack([ramp(), ramp() + 1])[..., None]
    out = np.asarray(layer(images))
    np.testing.assert_allclose(out[1, ..., 0], out[0, ..., 0] + 1, atol=1e-4)
    np.testing.assert_allclose(out[0, ..., 0],
                               patches.extract_patches(ramp(), [(12, 10)], 4)[0], atol=1e-4)
    assert lift.CropAndRotate.from_config(layer.get_config()).crop_size == 4
    with pytest.raises(ValueError, match="crop_size"):
        lift.CropAndRotate(1)


# --- DET and ORI ----------------------------------------------------------------------------

def test_soft_argmax_hand_cases():
    peak = np.zeros((1, 64, 64), np.float32)
    peak[0, 30, 20] = 100.0  # y = 30, x = 20
    location, score = lift.SoftArgmax(margin=16)(peak)
    np.testing.assert_allclose(np.asarray(location), [[20.0, 30.0]], atol=1e-3)
    assert float(score[0]) == pytest.approx(100.0, rel=1e-3)
    flat = np.zeros((1, 64, 64), np.float32)
    location, score = lift.SoftArgmax(margin=16)(flat)
    np.testing.assert_allclose(np.asarray(location), [[31.5, 31.5]], atol=1e-4)  # mean of 16..47


def test_soft_argmax_is_the_weighted_mean_and_has_gradients():
    # two equal peaks: the location is their midpoint; beta sharpens the softmax
    scores = np.zeros((1, 8, 8), np.float32)
    scores[0, 2, 2] = scores[0, 2, 6] = 50.0
    location, score = lift.SoftArgmax(margin=0)(scores)
    np.testing.assert_allclose(np.asarray(location), [[4.0, 2.0]], atol=1e-4)
    # a hand case with margin 1 on a 4x4 map: the central 2x2 window holds 0, ln 3 (row 1) and
    # 0, 0 (row 2): weights 1/6, 3/6, 1/6, 1/6 on (x, y) = (1, 1), (2, 1), (1, 2), (2, 2)
    scores = np.zeros((1, 4, 4), np.float32)
    scores[0, 1, 2] = np.log(3.0)
    scores[0, 0, 0] = 99.0  # in the margin: ignored
    location, score = lift.SoftArgmax(margin=1)(scores)
    np.testing.assert_allclose(np.asarray(location), [[1 + 4 / 6, 1 + 2 / 6]], atol=1e-5)
    assert float(score[0]) == pytest.approx(0.5 * np.log(3.0), abs=1e-5)
    variable = tf.Variable(scores)
    with tf.GradientTape() as tape:
        x = lift.SoftArgmax(margin=1)(variable)[0][0, 0]
    grad = tape.gradient(x, variable).numpy()
    assert np.isfinite(grad).all() and grad[0, 1, 2] > 0 and grad[0, 0, 0] == 0
    with pytest.raises(ValueError, match="margin"):
        lift.SoftArgmax(margin=-1)
    with pytest.raises(ValueError, match="beta"):
        lift.SoftArgmax(beta=0.0)


def test_builders_reject_bad_sizes():
    with pytest.raises(ValueError, match="kernel_size"):
        lift.detector_net(kernel_size=4)
    with pytest.raises(ValueError, match=r"input_shape=\(30, 30, 1\).*multiple of 4.*try 28 or 32"):
        lift.orientation_net((30, 30, 1))
    with pytest.raises(ValueError, match="square crop"):
        lift.orientation_net((32, 16, 1))
    with pytest.raises(ValueError, match="crop_size"):
        lift.desc_stage(siamese.patch_descriptor((32, 32, 1), 8, filters=(4, 8)), patch_size=16)
    with pytest.raises(ValueError, match="pairs is empty"):
        lift_pipeline.evaluate_pipelines([], {})


def test_detector_is_fully_convolutional_and_orientation_is_a_unit_vector():
    det = lift.detector_net()
    assert np.asarray(det(np.zeros((2, 64, 64, 1), np.float32))).shape == (2, 64, 64)
    assert np.asarray(det(np.zeros((1, 40, 56, 1), np.float32))).shape == (1, 40, 56)
    ori = lift.orientation_net((32, 32, 1))
    out = np.asarray(ori(np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype(np.float32)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


# --- the global cost ------------------------------------------------------------------------

def test_lift_global_cost_hand_values():
    d1 = np.array([[0.0, 0.0]], np.float32)
    d2 = np.array([[3.0, 4.0]], np.float32)  # pair: 5
    d3 = np.array([[1.0, 0.0]], np.float32)  # negative: max(0, 4 - 1) = 3
    scores = np.array([[1.0, 0.5, 2.0, -0.5]], np.float32)
    # class: (1 - 1)^2 = 0, (1 - 0.5)^2 = 0.25, 0, (1 - 0.5)^2 = 0.25 for y = -1
    cost = losses.lift_global_cost(d1, d2, d3, scores, margin=4.0, gamma=2.0)
    assert float(cost[0]) == pytest.approx(5 + 3 + 2 * 0.5, abs=1e-5)
    assert float(losses.lift_global_cost(d1, d2, d3, terms=("pair",))[0]) == pytest.approx(5.0)
    assert float(losses.lift_global_cost(d1, d2, d3, scores, terms=("class",))[0]) == \
        pytest.approx(0.5)
    with pytest.raises(ValueError, match="scores"):
        losses.lift_global_cost(d1, d2, d3)
    with pytest.raises(ValueError, match="terms"):
        losses.lift_global_cost(d1, d2, d3, terms=("orientation",))


def test_lift_global_cost_squared_form_hand_values():
    # the slide's form: ||d1 - d2||^2 + max(0, 1 - ||d1 - d3||^2) + gamma * class
    d1 = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)
    d2 = np.array([[3.0, 4.0], [0.3, 0.4]], np.float32)  # pair: 25, 0.25
    d3 = np.array([[0.6, 0.0], [2.0, 0.0]], np.float32)  # negative: 1 - 0.36 = 0.64, max(0, 1 - 4) = 0
    scores = np.array([[1.0, 0.5, 2.0, -0.5], [1.0, 1.0, 1.0, -1.0]], np.float32)  # class 0.5, 0
    cost = np.asarray(losses.lift_global_cost(d1, d2, d3, scores, gamma=2.0, margin=1.0,
                                              squared=True))
    np.testing.assert_allclose(cost, [25 + 0.64 + 2 * 0.5, 0.25], atol=1e-5)
    # the margin form of the same first row: 5 + max(0, 4 - 0.6) + 1
    assert float(losses.lift_global_cost(d1, d2, d3, scores, gamma=2.0)[0]) == \
        pytest.approx(5 + 3.4 + 1, abs=1e-5)
    packed = np.concatenate([d1, d2, d3, scores], axis=1)
    lift_cost = lift.LiftCost(2, ("pair", "negative"), margin=1.0, squared=True)
    assert lift.LiftCost.from_config(lift_cost.get_config()).squared
    np.testing.assert_allclose(np.asarray(lift_cost.call(np.zeros(2), packed)), [25.64, 0.25],
                               atol=1e-5)
    with pytest.raises(ValueError, match="margin"):
        losses.lift_global_cost(d1, d2, d3, terms=("pair",), margin=0.0, squared=True)


def test_lift_cost_reads_the_packed_output():
    packed = np.array([[0, 0, 3, 4, 1, 0, 1, 0.5, 2, -0.5]], np.float32)
    cost = lift.LiftCost(2, margin=4.0, gamma=2.0)
    assert float(cost(np.zeros(1), packed)) == pytest.approx(9.0, abs=1e-5)
    assert lift.LiftCost.from_config(cost.get_config()).terms == ("pair", "negative", "class")


# --- the stages -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(0)
    return (lift.detector_net(), lift.orientation_net((32, 32, 1)),
            siamese.patch_descriptor((32, 32, 1), 8, filters=(4, 8)))


def test_stage_models_and_gradients_reach_each_network(nets):
    det, ori, desc = nets
    rng = np.random.default_rng(0)
    quads = rng.random((2, 4, 64, 64, 1)).astype(np.float32)
    angles = np.array([0.3, -0.2], np.float32)
    stage = lift.desc_stage(desc)
    assert stage([quads[:, 0], quads[:, 1], quads[:, 2], angles]).shape == (2, 3 * 8 + 4)
    stage = lift.ori_stage(ori, desc)
    out = np.asarray(stage([quads[:, 0], quads[:, 1]]))
    assert out.shape == (2, 28) and np.all(out[:, 16:] == 0)
    stage = lift.det_stage(det, ori, desc)
    x = [tf.constant(quads[:, k]) for k in range(4)]
    with tf.GradientTape() as tape:
        cost = tf.reduce_mean(lift.LiftCost(8, ("pair", "class"))(tf.zeros(2), stage(x)))
    grads = tape.gradient(cost, det.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_whole_image_helpers(nets):
    det, ori, desc = nets
    image = patches.grey_photo("camera")[100:228, 100:228]
    points, angles, descriptors = lift_pipeline.detect_sift(image, max_points=50)
    assert 0 < len(points) <= 50 and descriptors.shape == (len(points), 128)
    assert points.min() >= 16 and points.max() < 128 - 16 and np.abs(angles).max() <= 2 * np.pi
    learned = lift_pipeline.detect_learned(det, image, max_points=40)
    assert learned.shape[1] == 2 and 0 < len(learned) <= 40
    theta = lift_pipeline.orient(ori, image, learned)
    assert theta.shape == (len(learned),)
    d = lift_pipeline.describe(desc, image, learned, theta)
    assert d.shape == (len(learned), 8)


def test_sift_angles_follow_the_crop_convention():
    # rotate a photo by alpha about its centre (p' = c + R(alpha)(p - c), x right, y down):
    # a point's SIFT angle must grow by alpha, the angle G adds for a rotated view
    import cv2

    image = patches.grey_photo("camera")[80:240, 120:280]
    alpha = np.deg2rad(30.0)
    c = np.array([80.0, 80.0])
    rotation = np.array([[np.cos(alpha), -np.sin(alpha)], [np.sin(alpha), np.cos(alpha)]])
    matrix = np.c_[rotation, c - rotation @ c]
    view = cv2.warpAffine(image, matrix, (160, 160), flags=cv2.INTER_LINEAR)
    p1, a1, _ = lift_pipeline.detect_sift(image, 60, border=30)
    p2, a2, _ = lift_pipeline.detect_sift(view, 60, border=30)
    moved = p1 @ rotation.T + matrix[:, 2]
    d = np.linalg.norm(moved[:, None] - p2[None], axis=-1)
    i = np.flatnonzero(d.min(1) < 1.0)
    assert len(i) >= 10
    change = np.rad2deg(a2[d[i].argmin(1)] - a1[i])
    error = np.abs((change - 30.0 + 180) % 360 - 180)
    assert np.median(error) < 5.0


def test_evaluate_pipelines_on_an_identical_pair():
    image = patches.grey_photo("camera")[100:228, 100:228]

    def sift(img):
        p, _, d = lift_pipeline.detect_sift(img, 100)
        return p, d

    result = lift_pipeline.evaluate_pipelines([(image, image.copy(), np.eye(3))], {"SIFT": sift})
    assert result["SIFT"]["repeatability"] == pytest.approx(1.0)
    assert result["SIFT"]["matching_score"] > 0.95
    assert result["SIFT"]["mAP"] > 0.95


def test_hardest_negative_descriptors_hand_case():
    d1 = np.array([[0.0], [1.0], [5.0]], np.float32)
    d2 = np.array([[0.5], [1.0], [9.0]], np.float32)
    d3 = np.array([[0.2], [7.0], [5.5]], np.float32)
    mined = np.asarray(lift.hardest_negative_descriptors(d1, d2, d3, np.array([0, 1, 2])))
    # row 0: d3 at 0.2 beats the in-batch 1.0 (d2[1]); row 1: d2[0] at 0.5 beats d3 at 6;
    # row 2: d3 at 0.5 beats d2[1] at 4
    np.testing.assert_allclose(mined, [[0.2], [0.5], [5.5]])
    # the same point is never its own negative
    mined = np.asarray(lift.hardest_negative_descriptors(d1, d2, d3 + 100, np.array([4, 4, 2])))
    np.testing.assert_allclose(mined[:2], [[9.0], [9.0]])
    cost = lift.LiftCost(1, ("pair", "negative"), margin=2.0, mine_negatives=True)
    packed = np.concatenate([d1, d2, d3, np.zeros((3, 4), np.float32)], axis=1)
    # pair + max(0, 2 - negative distance): 0.5 + 1.8, 0 + 1.5, 4 + 1.5
    assert float(cost(np.array([0.0, 1, 2]), packed)) == pytest.approx((2.3 + 1.5 + 5.5) / 3,
                                                                       abs=1e-4)


def test_detector_class_loss_takes_labels_then_scores():
    # alpha_i max(0, 1 - s_i y_i)^2: (1 - 0.5)^2 = 0.25, (1 + 0.5)^2 = 2.25, (1 - 2)^+ = 0
    cost = losses.detector_class_loss(np.float32([1, -1, 1]), np.float32([0.5, 0.5, 2.0]),
                                      weights=np.float32([1, 2, 1]))
    np.testing.assert_allclose(np.asarray(cost), [0.25, 4.5, 0.0])
