"""SegNet (notebook 09): pooling indices, max unpooling, the builder, memory, class weights."""

import keras
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bestiary_keras.segmentation import losses, metrics  # noqa: E402
from bestiary_keras.segmentation.segnet import (  # noqa: E402
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
    decoder_memory,
    segnet,
)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_pool_and_unpool_hand_case_with_batch_and_channels():
    x = np.zeros((2, 4, 4, 2), np.float32)
    x[0, :, :, 0] = [[1, 2, 0, 1], [4, 3, 1, 5], [0, 0, 2, 2], [6, 1, 3, 2]]
    x[1, :, :, 1] = np.arange(16).reshape(4, 4)[::-1, ::-1]  # maxima at the top-left of each window
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    np.testing.assert_array_equal(_np(pooled)[0, ..., 0], [[4, 5], [6, 3]])
    np.testing.assert_array_equal(_np(pooled)[1, ..., 1], [[15, 13], [7, 5]])
    # Flat index ((b * H + y) * W + x) * C + c, batch included.
    assert _np(indices)[0, 0, 0, 0] == ((0 * 4 + 1) * 4 + 0) * 2 + 0  # the 4 at (1, 0)
    assert _np(indices)[1, 0, 0, 1] == ((1 * 4 + 0) * 4 + 0) * 2 + 1  # the 15 at (0, 0)
    unpooled = _np(MaxUnpooling2D()([pooled, indices]))
    expected = np.zeros_like(x)
    expected[0, :, :, 0] = [[0, 0, 0, 0], [4, 0, 0, 5], [0, 0, 0, 0], [6, 0, 3, 0]]
    expected[1, :, :, 1] = [[15, 0, 13, 0], [0, 0, 0, 0], [7, 0, 5, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(unpooled, expected)


def test_unpooling_restores_an_odd_size():
    x = np.random.default_rng(0).random((1, 5, 5, 3)).astype(np.float32)
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    assert pooled.shape == (1, 2, 2, 3)
    unpooled = _np(MaxUnpooling2D((5, 5))([pooled, indices]))
    assert unpooled.shape == (1, 5, 5, 3)
    assert np.all(unpooled[:, 4] == 0) and np.all(unpooled[:, :, 4] == 0)
    # Every kept value sits where it was in the input.
    kept = unpooled != 0
    np.testing.assert_array_equal(unpooled[kept], x[kept])
    assert kept.sum() == 4 * 3


def test_gradients_flow_to_the_maxima_only():
    x = tf.Variable(np.random.default_rng(1).random((2, 4, 6, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        pooled, indices = MaxPoolingWithArgmax2D()(x)
        loss = tf.reduce_sum(3.0 * MaxUnpooling2D()([pooled, indices]))
    gradient = tape.gradient(loss, x).numpy()
    values = x.numpy()
    windows = values.reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))
    is_max = values == np.repeat(np.repeat(windows, 2, 1), 2, 2)
    np.testing.assert_allclose(gradient, 3.0 * is_max)
    # And through a model: every weight gets a gradient.
    model = segnet((16, 16, 3), 3, filters=(4, 8), convs=(1, 1))
    with tf.GradientTape() as tape:
        out = model(np.random.default_rng(2).random((2, 16, 16, 3)).astype(np.float32),
                    training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            np.zeros((2, 16, 16)), out))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def _full_segnet_parameters(classes=12):
    def conv_bn(cin, cout):  # 3x3 conv without bias + batch norm (gamma, beta, mean, variance)
        return 9 * cin * cout + 4 * cout

    encoder = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    decoder = [(512, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 256),
               (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64)]
    return (sum(conv_bn(*c) for c in encoder) + sum(conv_bn(*c) for c in decoder)
            + 9 * 64 * classes + classes)


def test_full_segnet_is_the_papers_network():
    model = segnet()
    assert model.input_shape == (None, 360, 480, 3) and model.output_shape == (None, 360, 480, 12)
    assert model.count_params() == _full_segnet_parameters() == 29_457_868  # paper: 29.5M
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 26  # 13 encoder, 12 decoder, the classifier
    sizes = [layer.output_size for layer in model.layers if isinstance(layer, MaxUnpooling2D)]
    assert sizes == [(22, 30), (45, 60), (90, 120), (180, 240), (360, 480)]


def test_small_segnet_and_config_round_trip():
    model = segnet((48, 48, 3), 5, filters=(16, 32, 64), convs=(2, 2, 2), name="small")
    assert model.output_shape == (None, 48, 48, 5)
    out = _np(model(np.zeros((2, 48, 48, 3), np.float32)))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    clone = keras.Model.from_config(model.get_config(), custom_objects={
        "MaxPoolingWithArgmax2D": MaxPoolingWithArgmax2D, "MaxUnpooling2D": MaxUnpooling2D})
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(0).random((1, 48, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(_np(clone(x)), _np(model(x)), atol=1e-6)


def test_decoder_memory_by_hand():
    model = segnet((48, 48, 3), 5, filters=(16, 32, 64), convs=(2, 2, 2))
    memory = decoder_memory(model)
    pooled = 24 * 24 * 16 + 12 * 12 * 32 + 6 * 6 * 64
    assert memory["indices_int64"] == 8 * pooled
    assert memory["indices_2bit"] == pooled / 4
    assert memory["feature_maps_float32"] == 4 * (48 * 48 * 16 + 24 * 24 * 32 + 12 * 12 * 64)
    with pytest.raises(ValueError, match="MaxPoolingWithArgmax2D"):
        decoder_memory(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="equally long"):
        segnet((48, 48, 3), 3, filters=(8, 16), convs=(1,))
    with pytest.raises(ValueError, match="known height"):
        segnet((None, None, 3), 3)
    with pytest.raises(ValueError, match="smaller"):
        segnet((16, 16, 3), 3)
    with pytest.raises(ValueError, match="padding"):
        MaxPoolingWithArgmax2D(padding="full")


def test_median_frequency_weights_hand_case():
    labels = np.zeros((2, 2, 4), np.int32)
    labels[0, 0, :2] = 1  # class 1: 2 pixels, in image 0 only (8 pixels)
    labels[1, :, :] = 2  # class 2: 8 pixels, in image 1 only (8 pixels)
    # f = [6 / 8 (image 0 only), 2 / 8, 8 / 8], median 6 / 8; class 3 never occurs -> 0.
    weights = losses.median_frequency_weights(labels, 4)
    np.testing.assert_allclose(weights, [1.0, 3.0, 0.75, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="lie in"):
        losses.median_frequency_weights(labels, 2)


def test_mean_iou_hand_case():
    true = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    predicted = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    mean, per_class = metrics.mean_iou(true, predicted, 4)
    # class 0: 2 / 4; class 1: 2 / 3; class 2: 2 / 3; class 3 absent -> NaN, left out.
    np.testing.assert_allclose(per_class[:3], [0.5, 2 / 3, 2 / 3])
    assert np.isnan(per_class[3])
    assert mean == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    # Keras 3's MeanIoU also leaves the absent class out of its mean
    metric = keras.metrics.MeanIoU(num_classes=4)
    metric.update_state(true.ravel(), predicted.ravel())
    assert float(metric.result()) == pytest.approx(mean, abs=1e-6)


def test_layers_survive_save_and_load(tmp_path):
    """A small SegNet (both custom layers) saved as .keras and reloaded gives the same outputs."""
    model = segnet((20, 20, 3), 4, filters=(4, 8), convs=(1, 1), name="tiny")
    x = np.random.default_rng(3).random((2, 20, 20, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert [type(layer).__name__ for layer in loaded.layers].count("MaxUnpooling2D") == 2
    np.testing.assert_array_equal(_np(loaded(x)), _np(model(x)))


def test_unpooling_with_an_unknown_batch_and_size():
    """The layer inside a model whose batch and size are only known at call time."""
    inputs = keras.Input((None, None, 2))
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    model = keras.Model(inputs, MaxUnpooling2D()([pooled, indices]))
    x = np.random.default_rng(4).random((3, 6, 4, 2)).astype(np.float32)
    out = _np(model(x))
    windows = x.reshape(3, 3, 2, 2, 2, 2).max(axis=(2, 4))
    expected = np.where(x == np.repeat(np.repeat(windows, 2, 1), 2, 2), x, 0)
    np.testing.assert_array_equal(out, expected)


def test_segmentation_legend_and_comparison_figure():
    import matplotlib

    matplotlib.use("Agg")
    from bestiary_keras import figures
    from bestiary_keras.segmentation import plots

    names = ("background", "circle", "square")
    legend = plots.segmentation_legend(names)
    # the background first, with an empty swatch (overlay leaves it untinted), then the classes
    assert list(legend) == ["background (no tint)", "circle", "square"]
    assert legend["background (no tint)"][3] == 0.0
    np.testing.assert_allclose(legend["square"], figures.label_colors(3)[2])
    with pytest.raises(ValueError, match="class_names"):
        plots.segmentation_legend(("background",))
    images = np.zeros((3, 8, 8, 3), np.float32)
    maps = np.zeros((3, 8, 8), np.int64)
    maps[:, 2:4, 2:4] = 2
    fig = plots.show_segmentations(images, {"truth": maps, "net": maps}, names)
    assert len(fig.axes) == 9  # one row of images and one per label map
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert texts == list(legend)
    assert fig.axes[3].get_ylabel() == "truth"
    with pytest.raises(ValueError, match="net"):
        plots.show_segmentations(images, {"net": maps[:2]}, names)
    matplotlib.pyplot.close(fig)
