"""RefineNet (notebook 10): RCU, multi-resolution fusion, chained residual pooling, the builder."""

import keras
import numpy as np
import pytest

from bestiary_keras.segmentation.refinenet import (
    chained_residual_pooling,
    multi_resolution_fusion,
    refinenet,
    residual_conv_unit,
)


def _identity_kernel(channels):
    kernel = np.zeros((3, 3, channels, channels), np.float32)
    for c in range(channels):
        kernel[1, 1, c, c] = 1.0
    return kernel


def _set_identity_convolutions(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            weights = layer.get_weights()
            weights[0] = _identity_kernel(weights[0].shape[-1])
            if len(weights) == 2:
                weights[1] = np.zeros_like(weights[1])
            layer.set_weights(weights)


def _maxpool5(x):
    out = np.zeros_like(x)
    h, w = x.shape
    for y in range(h):
        for xx in range(w):
            out[y, xx] = x[max(y - 2, 0):y + 3, max(xx - 2, 0):xx + 3].max()
    return out


def test_chained_residual_pooling_is_a_chain_not_parallel():
    inputs = keras.Input((11, 11, 1))
    model = keras.Model(inputs, chained_residual_pooling(inputs, 1, num_blocks=2, name="crp"))
    _set_identity_convolutions(model)
    x = np.zeros((11, 11), np.float32)
    x[5, 5] = 1.0
    x[1, 2] = -4.0  # the ReLU comes first
    out = keras.ops.convert_to_numpy(model(x[None, ..., None]))[0, ..., 0]
    r = np.maximum(x, 0)
    chain = r + _maxpool5(r) + _maxpool5(_maxpool5(r))
    parallel = r + 2 * _maxpool5(r)
    np.testing.assert_allclose(out, chain, atol=1e-6)
    assert not np.allclose(out, parallel)
    assert out[5, 5] == 3 and out[5, 7] == 2 and out[5, 9] == 1 and out[0, 0] == 0
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [p.pool_size for p in pools] == [(5, 5), (5, 5)]
    assert all(p.strides == (1, 1) for p in pools)
    # Each pooling takes the previous block's convolution as input (the chain in the graph).
    assert model.get_layer("crp_pool2").input is model.get_layer("crp_conv1").output


def test_residual_conv_unit():
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, residual_conv_unit(inputs, 4, name="rcu"))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), x, atol=1e-6)  # x + 0
    _set_identity_convolutions(model)
    # x + relu(relu(x)) = x + relu(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), x + np.maximum(x, 0),
                               atol=1e-5)
    adapted = residual_conv_unit(keras.Input((6, 6, 3)), 8, name="wide")
    assert adapted.shape[-1] == 8


def test_multi_resolution_fusion_upsamples_and_sums():
    fine, coarse = keras.Input((8, 8, 2)), keras.Input((4, 4, 2))
    model = keras.Model([fine, coarse], multi_resolution_fusion([fine, coarse], 2, name="mrf"))
    _set_identity_convolutions(model)
    a = np.random.default_rng(1).random((1, 8, 8, 2)).astype(np.float32)
    b = np.full((1, 4, 4, 2), 0.25, np.float32)
    out = keras.ops.convert_to_numpy(model([a, b]))
    np.testing.assert_allclose(out, a + 0.25, atol=1e-6)  # a constant stays constant
    assert model.get_layer("mrf_upsample2").interpolation == "bilinear"
    single = keras.Input((4, 4, 2))
    assert multi_resolution_fusion([single], 2, name="one") is single
    with pytest.raises(ValueError, match="divide"):
        multi_resolution_fusion([keras.Input((8, 8, 2)), keras.Input((3, 3, 2))], 2, name="bad")


def test_refinenet_builder():
    model = refinenet((48, 48, 3), 5, encoder_filters=(8, 16, 16, 16),
                      refine_filters=(8, 8, 8, 16))
    assert model.output_shape == (None, 48, 48, 5)
    sizes = [model.get_layer(f"refine{k}_output_rcu_add").output.shape[1] for k in (4, 3, 2, 1)]
    assert sizes == [3, 6, 12, 24]
    # RefineNet-4 has one input path, the others two (their own encoder map and the cascade).
    assert "refine4_fusion_sum" not in [layer.name for layer in model.layers]
    assert model.get_layer("refine1_fusion_sum") is not None
    crp_pools = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.MaxPooling2D) and "_crp_" in layer.name]
    assert len(crp_pools) == 4 * 2
    x = np.random.default_rng(0).random((2, 48, 48, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    # The classifier starts at zero: before training every pixel gets uniform probabilities.
    np.testing.assert_allclose(out, 1.0 / 5, rtol=1e-5)
    with_bn = refinenet((32, 32, 3), 3, encoder_filters=(8, 8, 8, 8), refine_filters=(8,) * 4,
                        batch_norm=True)
    assert any("rcu1_bn1" in layer.name for layer in with_bn.layers)


def test_refinenet_trains_one_step():
    keras.utils.set_random_seed(0)
    model = refinenet((32, 32, 3), 3, encoder_filters=(8, 8, 8, 8), refine_filters=(8,) * 4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    y = (x[..., 0] > 0.5).astype(np.int32)
    first = model.train_on_batch(x, y)
    for _ in range(5):
        last = model.train_on_batch(x, y)
    assert np.isfinite(last) and last < first


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible by 16"):
        refinenet((40, 40, 3), 3)
    with pytest.raises(ValueError, match="one entry"):
        refinenet((48, 48, 3), 3, encoder_filters=(8, 16), refine_filters=(8,))
    with pytest.raises(ValueError, match="num_blocks"):
        chained_residual_pooling(keras.Input((4, 4, 1)), 1, num_blocks=0, name="x")
