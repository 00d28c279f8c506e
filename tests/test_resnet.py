"""ResNet builders and blocks (bestiary_keras.classification.resnet), checked against Keras
and against values worked out by hand."""

import keras
import numpy as np
import pytest
from keras import layers

from bestiary_keras.batching import step_indices
from bestiary_keras.classification import experiments
from bestiary_keras.classification import resnet as rn
from bestiary_keras.classification import resnet_blocks as blocks


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _bn_channels(model):
    return sum(
        int(layer.gamma.shape[0])
        for layer in model.layers
        if isinstance(layer, layers.BatchNormalization)
    )


# --------------------------------------------------------------------------- builders
def test_resnet50_is_keras_resnet50_layer_for_layer():
    ours = rn.resnet(50)
    theirs = keras.applications.ResNet50(weights=None)
    assert ours.count_params() == theirs.count_params() == 25_636_712
    ours_layers = [(l.name, [tuple(w.shape) for w in l.weights]) for l in ours.layers[1:]]
    their_layers = [(l.name, [tuple(w.shape) for w in l.weights]) for l in theirs.layers[1:]]
    assert ours_layers == their_layers
    # Same BN epsilon and convolution biases (the Keras v1 layout).
    assert ours.get_layer("conv3_block1_1_bn").epsilon == pytest.approx(1.001e-5)
    assert ours.get_layer("conv3_block1_1_conv").use_bias
    # The stride of a bottleneck sits on its first 1x1 convolution, as in Keras v1.
    assert ours.get_layer("conv3_block1_1_conv").strides == (2, 2)
    assert ours.get_layer("conv3_block1_2_conv").strides == (1, 1)


@pytest.mark.parametrize(
    "depth, application, count",
    [(101, "ResNet101", 44_707_176), (152, "ResNet152", 60_419_944)],
)
def test_deep_resnets_match_keras_applications(depth, application, count):
    theirs = getattr(keras.applications, application)(weights=None)
    assert rn.resnet(depth).count_params() == theirs.count_params() == count


@pytest.mark.parametrize("depth, torchvision", [(18, 11_689_512), (34, 21_797_672)])
def test_basic_block_resnets_match_the_published_counts(depth, torchvision):
    # Without convolution biases (the torchvision layout), the trainable parameters are
    # exactly torchvision's count (its BN running statistics are buffers, not parameters).
    no_bias = rn.resnet(depth, use_bias=False)
    assert _trainable(no_bias) == torchvision
    # The Keras v1 layout adds one bias per convolution channel (every convolution is followed
    # by a BN of the same width) and Keras counts BN's moving mean and variance as
    # (non-trainable) parameters too.
    with_bias = rn.resnet(depth)
    channels = _bn_channels(with_bias)
    assert with_bias.count_params() == torchvision + channels + 2 * channels


def test_resnet50_without_bias_is_torchvision_resnet50():
    assert _trainable(rn.resnet50(use_bias=False)) == 25_557_032


def test_depth_shortcuts_are_the_generic_builder():
    assert rn.resnet18(width=4, input_shape=(32, 32, 3)).count_params() == rn.resnet(
        18, width=4, input_shape=(32, 32, 3)
    ).count_params()
    assert rn.resnet152(width=2, input_shape=(32, 32, 3)).name == "resnet152"


def test_unknown_depth_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"depth=42.*18, 34, 50, 101, 152"):
        rn.resnet(42)


def test_small_resnet_runs_at_32x32():
    model = rn.resnet(18, input_shape=(32, 32, 3), width=8, stem="cifar", num_classes=5)
    assert model.output_shape == (None, 5)
    out = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # Widths 8/16/32/64: the last stage has 64 channels.
    assert model.get_layer("conv5_block2_out").output.shape[-1] == 64
    # width scales the parameters roughly quadratically.
    assert rn.resnet(18, width=8, use_bias=False).count_params() < 11_689_512 / 40


def test_kernel_initializer_reaches_every_kernel_and_keeps_the_count():
    kwargs = dict(input_shape=(32, 32, 3), width=4, num_classes=3)
    for depth in (18, 50):
        zero = rn.resnet(depth, kernel_initializer="zeros", **kwargs)
        assert zero.count_params() == rn.resnet(depth, **kwargs).count_params()
        kernels = [w for w in zero.weights if w.path.endswith("kernel")]
        # stem + every block's convolutions + projections + the dense top.
        assert len(kernels) == experiments.count_weighted_layers(zero)
        assert all(not np.any(keras.ops.convert_to_numpy(w)) for w in kernels)
    default = rn.resnet(18, **kwargs)
    assert all(np.any(keras.ops.convert_to_numpy(w)) for w in default.weights
               if w.path.endswith("kernel"))


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="width"):
        rn.resnet(18, width=0)
    with pytest.raises(ValueError, match="stem"):
        rn.resnet(18, stem="tiny")
    with pytest.raises(ValueError, match="pooling"):
        rn.resnet(18, include_top=False, pooling="median", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="n=0"):
        rn.cifar_resnet(0)
    x = keras.Input((8, 8, 4))
    with pytest.raises(ValueError, match="needs a `name`"):
        blocks.basic_block_v1(x, 4)
    with pytest.raises(ValueError, match="shortcut must be one of"):
        blocks.basic_block_v1(x, 8, shortcut="dense", name="b")
    with pytest.raises(ValueError, match="identity shortcut needs stride=1"):
        blocks.basic_block_v1(x, 8, shortcut="identity", name="b")
    with pytest.raises(ValueError, match="needs filters=8 channels; got 4"):
        blocks.simple_resnet_block(x, 8, 3)


# --------------------------------------------------------------------------- depth
def test_weighted_depth_counts_the_longest_path():
    # ResNet-152: 1 + 3 * (3 + 8 + 36 + 3) + 1 = 152 on the longest path; the four 1x1
    # projection shortcuts make 156 weighted layers in all.
    model = rn.resnet(152, include_top=True, input_shape=(64, 64, 3), width=4)
    assert experiments.weighted_depth(model) == 152
    assert experiments.count_weighted_layers(model) == 156
    assert experiments.weighted_depth(rn.resnet(18, width=4, input_shape=(64, 64, 3))) == 18
    vgg19 = keras.applications.VGG19(weights=None, input_shape=(32, 32, 3), include_top=False)
    assert experiments.weighted_depth(vgg19) == experiments.count_weighted_layers(vgg19) == 16


@pytest.mark.parametrize("n", [1, 3, 5])
def test_cifar_nets_have_6n_plus_2_layers_and_equal_parameters(n):
    res = rn.cifar_resnet(n, residual=True)
    plain = rn.cifar_resnet(n, residual=False)
    assert experiments.weighted_depth(res) == experiments.weighted_depth(plain) == 6 * n + 2
    assert res.count_params() == plain.count_params()
    assert res.name == f"resnet{6 * n + 2}" and plain.name == f"plain{6 * n + 2}"
    assert not any(isinstance(l, layers.Add) for l in plain.layers)
    assert sum(isinstance(l, layers.Add) for l in res.layers) == 3 * n


def test_cifar_resnet8_parameter_count_by_hand():
    # conv1 3*3*3*16 + BN 4*16; stage 1: two 3x3 16->16 convs + 2 BN;
    # stage 2: 16->32 and 32->32; stage 3: 32->64 and 64->64; dense 64*10 + 10.
    convs = 27 * 16 + 9 * 16 * 16 * 2 + 9 * 16 * 32 + 9 * 32 * 32 + 9 * 32 * 64 + 9 * 64 * 64
    bn = 4 * (16 + 16 * 2 + 32 * 2 + 64 * 2)
    assert rn.cifar_resnet(1).count_params() == convs + bn + 64 * 10 + 10


def test_zero_pad_shortcut_subsamples_and_pads_channels():
    x = np.arange(2 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 2)
    y = blocks.ZeroPadShortcut(5, 2)(x).numpy()
    assert y.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(y[..., :2], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 2:], 0.0)
    assert blocks.ZeroPadShortcut.from_config(blocks.ZeroPadShortcut(5, 2).get_config()).filters == 5


# --------------------------------------------------------------------------- blocks
def test_slide_block_with_valid_convolutions_cannot_add():
    inputs = keras.Input((16, 16, 8))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(8, 3, activation=None)(x)
    x = layers.BatchNormalization()(x)
    assert x.shape == (None, 12, 12, 8)
    with pytest.raises(ValueError):
        layers.Add()([x, inputs])


def test_simple_resnet_block_keeps_the_shape():
    inputs = keras.Input((16, 16, 8))
    out = blocks.simple_resnet_block(inputs, 8, 3, name="slide")
    model = keras.Model(inputs, out)
    assert model.output_shape == (None, 16, 16, 8)
    y = model.predict(np.random.default_rng(0).normal(size=(2, 16, 16, 8)), verbose=0)
    assert y.min() >= 0.0  # the block ends with a ReLU


def _identity_check(build, channels, rng):
    inputs = keras.Input((6, 6, channels))
    model = keras.Model(inputs, build(inputs))
    # Non-negative input, as after a ReLU; make the other weights non-trivial.
    for w in model.weights:
        if w.path.endswith("kernel"):
            w.assign(rng.normal(size=w.shape).astype("float32"))
    x = rng.uniform(0.0, 3.0, size=(4, 6, 6, channels)).astype("float32")
    for training in (False, True):
        y = keras.ops.convert_to_numpy(model(x, training=training))
        np.testing.assert_allclose(y, np.maximum(x, 0.0), atol=1e-6)
    # Without the zero gamma the same block is not the identity.
    return model


def test_single_layer_block_is_one_conv_plus_its_input():
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, blocks.single_layer_block(inputs, 4, name="one"))
    convs = [l for l in model.layers if isinstance(l, layers.Conv2D)]
    assert [c.name for c in convs] == ["one_1_conv"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    # inference mode with fresh BN statistics: BN(z) = z / sqrt(1 + eps)
    conv_out = keras.ops.convert_to_numpy(convs[0](x))
    expected = np.maximum(conv_out / np.sqrt(1.0 + blocks.BN_EPSILON) + x, 0.0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)
    with pytest.raises(ValueError, match="name"):
        blocks.single_layer_block(inputs, 4)


@pytest.mark.parametrize("n", [1, 2])
def test_one_layer_skip_net_has_the_same_layers_and_twice_the_additions(n):
    two = rn.cifar_resnet(n, residual=True)
    one = rn.cifar_resnet(n, residual=True, skip_span=1)
    assert one.name == f"resnet1skip{6 * n + 2}"
    assert experiments.weighted_depth(one) == 6 * n + 2
    assert one.count_params() == two.count_params()
    adds = lambda m: sum(isinstance(l, layers.Add) for l in m.layers)
    assert adds(one) == 2 * adds(two) == 6 * n
    plain_one = rn.cifar_resnet(n, residual=False, skip_span=1)
    assert plain_one.count_params() == two.count_params() and adds(plain_one) == 0
    with pytest.raises(ValueError, match="skip_span"):
        rn.cifar_resnet(n, skip_span=3)


@pytest.mark.parametrize("block", ["simple", "basic", "bottleneck"])
def test_zero_init_residual_block_is_the_identity(block):
    rng = np.random.default_rng(0)
    builders = {
        "simple": (lambda x: blocks.simple_resnet_block(x, 8, 3, zero_init_residual=True), 8),
        "basic": (lambda x: blocks.basic_block_v1(x, 8, zero_init_residual=True, name="b"), 8),
        "bottleneck": (
            lambda x: blocks.residual_block_v1(
                x, 4, conv_shortcut=False, zero_init_residual=True, name="b"
            ),
            16,
        ),
    }
    build, channels = builders[block]
    _identity_check(build, channels, rng)


def test_default_init_block_is_not_the_identity():
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, blocks.basic_block_v1(inputs, 8, name="b"))
    x = np.random.default_rng(1).uniform(0.0, 3.0, size=(4, 6, 6, 8)).astype("float32")
    assert np.abs(model(x, training=True).numpy() - x).max() > 0.1


def test_plain_block_has_no_shortcut():
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, blocks.basic_block_v1(inputs, 8, residual=False, name="p"))
    assert not any(isinstance(l, layers.Add) for l in model.layers)
    # zero gamma on the last BN makes the plain block output ReLU(0) = 0 (no shortcut).
    model = keras.Model(
        inputs, blocks.basic_block_v1(inputs, 8, residual=False, zero_init_residual=True, name="q")
    )
    np.testing.assert_array_equal(model(np.ones((1, 6, 6, 8), "float32")).numpy(), 0.0)


# --------------------------------------------------------------------------- training helpers
def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    model = rn.cifar_resnet(1, filters=(4, 4, 4), input_shape=(8, 8, 3), num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    return model


def test_train_for_steps_gives_identical_runs_for_identical_models():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=32)
    a = experiments.train_for_steps(_tiny_model(0), x, y, steps=6, batch_size=8, seed=0)
    b = experiments.train_for_steps(_tiny_model(0), x, y, steps=6, batch_size=8, seed=0)
    assert len(a.history["loss"]) == 6
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    # The first loss is the untrained model's loss on the first batch.
    model = _tiny_model(0)
    first = step_indices(32, 8, 1, seed=0)[0]
    expected = model.evaluate(x[first], y[first], verbose=0)
    # (BN in training mode during the step vs inference mode here: equal only to a tolerance.)
    assert abs(a.history["loss"][0] - expected) < 0.5


def test_train_for_steps_with_the_ci_plan_trains_exactly_as_without():
    from bestiary_keras import distributed

    rng = np.random.default_rng(2)
    x = rng.uniform(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=32)
    plain = _tiny_model(0)
    a = experiments.train_for_steps(plain, x, y, steps=4, batch_size=8, seed=1)
    plan = distributed.plan_for("ci")
    keras.utils.set_random_seed(0)
    with plan.scope():
        planned = rn.cifar_resnet(1, filters=(4, 4, 4), input_shape=(8, 8, 3), num_classes=3)
    planned = plan.compile(planned, optimizer=keras.optimizers.SGD(0.1),
                           loss="sparse_categorical_crossentropy")
    b = experiments.train_for_steps(planned, x, y, steps=4, batch_size=8, seed=1, training=plan)
    assert a.history["loss"] == b.history["loss"] and plan.seconds > 0
    for u, v in zip(plain.get_weights(), planned.get_weights(), strict=True):
        np.testing.assert_array_equal(u, v)


def test_train_for_steps_records_each_batch_not_running_means():
    # Plain SGD with a zero learning rate and no BN: nothing changes, so each recorded loss
    # must be the loss of that step's own batch (a running mean would blend them).
    rng = np.random.default_rng(1)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = rng.integers(0, 3, size=24)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = experiments.train_for_steps(model, x, y, steps=5, batch_size=8, seed=3)
    order = step_indices(24, 8, 5, seed=3)
    expected = [model.evaluate(x[i], y[i], verbose=0) for i in order]
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-4)


def test_gradient_norms_by_layer():
    model = _tiny_model(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=8)
    norms = experiments.conv_kernel_gradient_norms(model, x, y)
    names = [l.name for l in model.layers if isinstance(l, layers.Conv2D)]
    assert list(norms) == names and len(names) == 7
    assert all(v > 0 for v in norms.values())
    # With a zero classifier kernel no gradient reaches the convolutions: all norms are 0.
    model.get_layer("predictions").kernel.assign(np.zeros((4, 3), "float32"))
    assert all(v == 0.0 for v in experiments.conv_kernel_gradient_norms(model, x, y).values())


def test_zero_pad_shortcut_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = rn.cifar_resnet(1, filters=(4, 8, 8), input_shape=(8, 8, 3), num_classes=3)
    assert any(isinstance(layer, blocks.ZeroPadShortcut) for layer in model.layers)
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    layer = loaded.get_layer("conv3_block1_0_pad")
    assert (layer.filters, layer.strides) == (8, 2)
