"""VGG builders, the per-class box loss, weight transfer and the fully convolutional net."""

import gc

import keras
import numpy as np
import pytest

from bestiary_keras.classification import vgg as V
from bestiary_keras.classification import vgg_protocol as P


def _layer_signature(model):
    """(name, weight shapes) of every layer but the input, whose automatic name ("input_layer",
    "input_layer_17", ...) depends on how many models the session built before."""
    return [(layer.name, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


@pytest.fixture(scope="module")
def applications_counts():
    """Builds keras.applications.VGG16/19 (weights=None) once, keeps only what the tests need."""
    out = {}
    for depth, builder in ((16, keras.applications.VGG16), (19, keras.applications.VGG19)):
        model = builder(weights=None)
        out[depth] = (model.count_params(),
                      _layer_signature(model))
        del model
        keras.backend.clear_session()
        gc.collect()
    return out


@pytest.mark.parametrize("depth, expected", [(16, 138_357_544), (19, 143_667_240)])
def test_vgg16_vgg19_match_keras_applications(applications_counts, depth, expected):
    model = V.vgg(depth)
    try:
        app_count, app_layers = applications_counts[depth]
        assert app_count == expected
        assert model.count_params() == expected
        assert _layer_signature(model) == app_layers  # same names, order, weight shapes
    finally:
        del model
        keras.backend.clear_session()
        gc.collect()


def test_vgg11_vgg13_parameter_counts():
    # Table 2 of the paper: 133 M for A and B; exact counts of the layers of Table 1.
    for depth, expected in ((11, 132_863_336), (13, 133_047_848)):
        model = V.vgg(depth)
        assert model.count_params() == expected
        assert sum(isinstance(l, keras.layers.Conv2D) for l in model.layers) == depth - 3
        del model
        keras.backend.clear_session()


def test_narrow_variant_hand_count():
    model = V.vgg("A", input_shape=(64, 64, 3), num_classes=6, base_width=8, fc_units=32,
                  box_head=True, dropout=0.5)
    convs = [(3, 8), (8, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)]
    expected = sum(9 * i * o + o for i, o in convs)
    expected += (2 * 2 * 64 * 32 + 32) + (32 * 32 + 32) + (32 * 6 + 6) + (32 * 24 + 24)
    assert model.count_params() == expected
    out = model(np.zeros((2, 64, 64, 3), np.float32))
    assert out["predictions"].shape == (2, 6) and out["boxes"].shape == (2, 24)
    assert "fc1_dropout" in [layer.name for layer in model.layers]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="config='F'"):
        V.vgg("F")
    with pytest.raises(ValueError, match="config=12"):
        V.vgg(12)
    with pytest.raises(ValueError, match=r"multiples of 32.*height 32 or 64"):
        V.vgg("A", input_shape=(48, 48, 3), base_width=8, fc_units=8)
    with pytest.raises(ValueError, match="dropout"):
        V.vgg("A", input_shape=(32, 32, 3), base_width=8, fc_units=8, dropout=1.0)
    with pytest.raises(ValueError, match="base_width"):
        V.vgg("A", input_shape=(32, 32, 3), base_width=0)
    # Without the top any size >= 32 works.
    assert V.vgg("A", input_shape=(48, 48, 3), include_top=False,
                 base_width=8).output.shape[1:] == (1, 1, 64)


def test_weight_decay_is_half_l2_like_caffe():
    model = V.vgg("A", input_shape=(32, 32, 3), num_classes=2, base_width=8, fc_units=8,
                  weight_decay=5e-4, kernel_initializer="ones")
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    expected = 0.5 * 5e-4 * sum(float(np.prod(k.shape)) for k in kernels)  # ||w||^2 with w = 1
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def test_configuration_table_lists_every_layer():
    table = V.configuration_table("AE")
    assert table.count("conv3-64") == 1 + 2 and table.count("conv3-512") == 4 + 8
    assert "16 weight layers" not in table and "19 weight layers" in table


def test_per_class_box_loss_hand_computed():
    # Two samples, three classes; only the box of the true class counts.
    y_pred = np.array([
        [9, 9, 9, 9, 0.1, 0.2, 0.5, 0.5, 9, 9, 9, 9],   # class 1 predicted box (0.1, 0.2, .5, .5)
        [0.0, 0.0, 1.0, 1.0, 9, 9, 9, 9, 9, 9, 9, 9],   # class 0 predicted box (0, 0, 1, 1)
    ], np.float32)
    y_true = np.array([[1, 0.0, 0.0, 0.5, 0.5],          # error (0.1, 0.2, 0, 0): 0.5 * 0.05
                       [0, 0.5, 0.0, 1.0, 0.0]], np.float32)  # error (-.5, 0, 0, 1): 0.5 * 1.25
    loss = keras.ops.convert_to_numpy(V.per_class_box_loss(y_true, y_pred))
    np.testing.assert_allclose(loss, [0.025, 0.625], rtol=1e-6)
    # A padding sample (class -1) contributes nothing.
    pad = np.array([[-1, 5, 5, 5, 5]], np.float32)
    assert float(V.per_class_box_loss(pad, y_pred[:1])[0]) == 0.0


def test_per_class_box_loss_gradient_only_on_true_class():
    import tensorflow as tf

    y_pred = tf.Variable(np.zeros((1, 12), np.float32))
    with tf.GradientTape() as tape:
        loss = V.per_class_box_loss(np.array([[2, 1, 1, 1, 1]], np.float32), y_pred)
    grad = tape.gradient(loss, y_pred).numpy().reshape(3, 4)
    np.testing.assert_allclose(grad, [[0] * 4, [0] * 4, [-1] * 4])


def test_localisation_targets():
    targets = P.localisation_targets(np.array([[3], [1]]),
                                     np.array([[[16, 16, 48, 48]], [[0, 0, 16, 32]]]), 64)
    np.testing.assert_array_equal(targets["predictions"], [3, 1])
    np.testing.assert_allclose(targets["boxes"], [[3, 0, 0, 0.5, 0.5],
                                                  [1, -0.375, -0.25, 0.25, 0.5]])


def _small(config, **kwargs):
    return V.vgg(config, input_shape=(64, 64, 3), num_classes=3, base_width=4, fc_units=8,
                 box_head=True, **kwargs)


def test_transfer_weights_by_name():
    keras.utils.set_random_seed(0)
    shallow, deep = _small("A"), _small("D")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in deep.layers}
    copied = P.transfer_weights(shallow, deep, V.SHALLOW_INIT_LAYERS + ("boxes",))
    assert copied == list(V.SHALLOW_INIT_LAYERS) + ["boxes"]
    for name in copied:
        for a, b in zip(shallow.get_layer(name).get_weights(), deep.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for name in ("block1_conv2", "block3_conv3", "block5_conv3"):  # untouched
        np.testing.assert_array_equal(deep.get_layer(name).get_weights()[0], before[name][0])
    # Default: every same-named layer with the same shapes (A's block4/5 convs too).
    assert "block5_conv2" in P.transfer_weights(shallow, deep)
    with pytest.raises(ValueError, match="'block1_conv2' is not a layer of model"):
        P.transfer_weights(shallow, deep, ["block1_conv2"])
    wide = V.vgg("A", input_shape=(64, 64, 3), num_classes=3, base_width=8, fc_units=8)
    with pytest.raises(ValueError, match="weight shapes differ"):
        P.transfer_weights(shallow, wide, ["block1_conv1"])


def test_fully_convolutional_matches_at_training_size_and_slides():
    keras.utils.set_random_seed(1)
    model = _small("A", dropout=0.5)
    fcn = P.fully_convolutional(model)
    dense_layers = [l for l in fcn.layers if isinstance(l, keras.layers.Conv2D)
                    and l.name in ("fc1", "fc2", "predictions", "boxes")]
    assert [l.kernel_size for l in dense_layers] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    x = np.random.default_rng(0).normal(size=(3, 64, 64, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = fcn.predict(x, verbose=0)
    assert got["predictions"].shape == (3, 1, 1, 3) and got["boxes"].shape == (3, 1, 1, 12)
    for key in ("predictions", "boxes"):
        np.testing.assert_allclose(got[key][:, 0, 0], expected[key], atol=1e-5)
    # On a 96x128 input: (96 - 64) / 32 + 1 = 2 rows and 3 columns of class posteriors.
    maps = fcn.predict(np.zeros((1, 96, 128, 3), np.float32), verbose=0)
    assert maps["predictions"].shape == (1, 2, 3, 3) and maps["boxes"].shape == (1, 2, 3, 12)
    np.testing.assert_allclose(maps["predictions"][0].sum(-1), np.ones((2, 3)), atol=1e-5)


def test_dense_predict_merges_boxes_and_maps_flips_back():
    # A tiny hand-made "fully convolutional" model: constant class scores (class 1 wins) and
    # a box head that always says "the whole window": dx = dy = 0, w = h = 1.
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.AveragePooling2D(64, strides=32)(inputs)
    zeros = keras.layers.Lambda(lambda t: t[..., :1] * 0.0)(pooled)
    logits = keras.layers.Lambda(
        lambda z: z + keras.ops.convert_to_tensor([0.0, 2.0], dtype="float32"))(zeros)
    probs = keras.layers.Softmax()(logits)
    boxes = keras.layers.Lambda(
        lambda z: z + keras.ops.convert_to_tensor([0, 0, 1, 1] * 2, dtype="float32"))(zeros)
    fcn = keras.Model(inputs, {"predictions": probs, "boxes": boxes})
    images = np.zeros((2, 64, 64, 3), np.uint8)
    out = P.dense_predict(fcn, images, window=64, scales=(64, 96), flip=True)
    np.testing.assert_array_equal(out.labels, [1, 1])
    np.testing.assert_allclose(out.box_scores, 1 / (1 + np.exp(-2)), rtol=1e-5)
    assert out.score_maps[96].shape == (2, 2, 2, 2)
    # At scale 64 the window is the whole image; at 96 the four 64-windows map to 42.67-pixel
    # boxes at the corners, which overlap the best (first) one by less than 0.5 except
    # itself. All locations score the same, so the first location of the first pass wins:
    # the whole image.
    np.testing.assert_allclose(out.boxes, [[0, 0, 64, 64]] * 2, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 32"):
        P.dense_predict(fcn, images, window=64, scales=(80,))


def test_localisation_errors_ilsvrc_rule():
    true_boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    pred_boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 4], [0, 0, 10, 6], [0, 0, 10, 10]],
                          np.float32)  # IoU 1, 0.4, 0.6, 1
    cls_err, loc_err = P.localisation_errors([1, 1, 1, 2], pred_boxes, [1, 1, 1, 1], true_boxes)
    assert cls_err == 0.25
    assert loc_err == 0.5  # sample 1: IoU < 0.5; sample 3: wrong class


def test_fc_initializer_and_preprocess():
    model = V.vgg("A", input_shape=(32, 32, 3), num_classes=2, base_width=4, fc_units=4,
                        box_head=True, kernel_initializer="zeros", fc_initializer="ones")
    assert not model.get_layer("block5_conv2").get_weights()[0].any()
    for name in ("fc1", "fc2", "predictions", "boxes"):
        assert np.all(model.get_layer(name).get_weights()[0] == 1.0)
    np.testing.assert_allclose(V.preprocess(np.array([[0, 127.5, 255]], np.uint8)),
                               [[-0.5, 0.0, 0.5]], atol=0.003)
    np.testing.assert_allclose(V.preprocess(np.full((1, 3), 10, np.uint8), mean_rgb=[10, 0, 5]),
                               [[0, 10 / 255, 5 / 255]], rtol=1e-6)


def test_compile_localiser_trains_one_step():
    keras.utils.set_random_seed(2)
    model = _small("A", dropout=0.5, weight_decay=5e-4)
    P.compile_localiser(model, learning_rate=0.01)
    x = np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype(np.float32)
    targets = P.localisation_targets(np.array([0, 1, 2, 0]),
                                     np.array([[8, 8, 40, 40]] * 4, np.float32), 64)
    logs = model.train_on_batch(x, targets, return_dict=True)
    assert np.isfinite(logs["loss"]) and "boxes_loss" in logs
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.momentum) == 0.9
    with pytest.raises(ValueError, match="learning_rate"):
        P.compile_localiser(model, learning_rate=0.0)


def test_compile_localiser_with_the_ci_plan_trains_exactly_as_without():
    from bestiary_keras import distributed

    x = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
    targets = P.localisation_targets(np.array([0, 1, 2, 0, 1, 2, 0, 1]),
                                     np.array([[4, 4, 20, 24]] * 8, np.float32), 32)

    def trained(plan):
        keras.utils.set_random_seed(4)
        model = V.vgg("A", input_shape=(32, 32, 3), num_classes=3, base_width=4, fc_units=8,
                      box_head=True, dropout=0.5, weight_decay=5e-4)
        compiled = P.compile_localiser(model, learning_rate=0.01, training=plan)
        assert compiled is model and compiled.optimizer.built
        fit = compiled.fit if plan is None else lambda *a, **k: plan.fit(compiled, *a, **k)
        fit(x, targets, batch_size=4, epochs=2, verbose=0)
        return model.get_weights()

    for a, b in zip(trained(None), trained(distributed.plan_for("ci")), strict=True):
        np.testing.assert_array_equal(a, b)


def test_rescore_and_merge_hand_worked():
    # A 32x32 image with a white square [8, 8, 24, 24] on black. The "classification network"
    # sees an 8x8 crop and says p(class 0) = fraction of white pixels, p(class 1) = the rest.
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 8:24, 8:24] = 255

    def classify(crops):
        white = crops[..., 0].mean(axis=(1, 2)) / 255
        return np.stack([white, 1 - white], axis=1)

    candidates = np.array([[[8, 8, 24, 24],     # A: the square, all white       -> 1.0
                            [0, 0, 16, 16],     # B: a quarter of it             -> 64/256 = 0.25
                            [12, 8, 28, 24]]],  # C: shifted 4 px, 12/16 white   -> 0.75
                          np.float32)
    crops = P.crop_boxes(image, candidates, 8)
    assert crops.shape == (1, 3, 8, 8, 3)
    boxes, best_score, scores = P.rescore_and_merge(classify, image, candidates, [0], window=8)
    np.testing.assert_allclose(scores, [[1.0, 0.25, 0.75]], atol=1e-6)
    assert best_score[0] == pytest.approx(1.0)
    # A is best; IoU(A, C) = 192 / 320 = 0.6 >= 0.5, IoU(A, B) = 64 / 448 < 0.5: merged =
    # (1.0 * A + 0.75 * C) / 1.75 = [(8 + 9) / 1.75, 8, (24 + 21) / 1.75, 24]
    np.testing.assert_allclose(boxes, [[17 / 1.75, 8, 45 / 1.75, 24]], atol=1e-5)
    # for class 1 the scores are 0, 0.75, 0.25: B wins alone (IoU with A and C < 0.5)
    boxes1, best1, _ = P.rescore_and_merge(classify, image, candidates, [1], window=8)
    np.testing.assert_allclose(boxes1, [[0, 0, 16, 16]], atol=1e-5)
    assert best1[0] == pytest.approx(0.75)
    # context 2: B's crop is the square [-8, -8, 24, 24] clipped to [0, 0, 24, 24]: 256/576 white
    _, _, wide = P.rescore_and_merge(classify, image, candidates[:, 1:2], [0], window=8,
                                     context=2.0)
    np.testing.assert_allclose(wide, [[256 / 576]], atol=1e-6)
    with pytest.raises(ValueError, match="context"):
        P.crop_boxes(image, candidates, 8, context=0.0)


def test_rescoring_with_the_dense_posteriors_reproduces_dense_predict():
    keras.utils.set_random_seed(0)
    model = _small("A")
    kernel, _ = model.get_layer("boxes").get_weights()  # every location's box: its own window
    model.get_layer("boxes").set_weights([np.zeros_like(kernel),
                                          np.array([0, 0, 1, 0.8] * 3, np.float32)])
    fcn = P.fully_convolutional(model)
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    out = P.dense_predict(fcn, images, window=64, scales=(64, 96), flip=True)
    assert out.candidates.shape == (3, 2 + 8, 4) and out.candidate_scores.shape == (3, 10)
    merged, _ = P._merge(out.candidates, out.candidate_scores, 0.5)
    np.testing.assert_allclose(np.clip(merged, 0, 64), out.boxes, atol=1e-4)
    # a classifier that returns the dense posteriors again changes nothing
    lookup = iter(out.candidate_scores.reshape(-1))
    boxes, _, _ = P.rescore_and_merge(
        lambda crops: np.stack([[next(lookup)] * 3 for _ in range(len(crops))]), images,
        out.candidates, out.labels, window=64)
    np.testing.assert_allclose(boxes, out.boxes, atol=1e-4)
