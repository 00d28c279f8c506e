"""Offline-safe ImageNet weights: loaded when cached, random (with a message) otherwise."""

import os
import socket

import h5py
import keras
import numpy as np
import pytest

from bestiary_keras import pretrained


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in tmp_path and a machine where any download attempt fails."""

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: get_file{args}")

    def no_connect(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    from keras.src.utils import file_utils

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", no_download)
    monkeypatch.setattr(file_utils, "get_file", no_download)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    return tmp_path


def test_file_names_are_the_ones_keras_applications_uses():
    assert pretrained.weights_file_name("vgg16") == "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert (
        pretrained.weights_file_name("VGG19", include_top=False)
        == "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert (
        pretrained.weights_file_name("resnet50", include_top=False)
        == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    # Keras' own sources name the same files (the loader never calls them).
    import inspect

    from keras.src.applications import resnet, vgg16, vgg19

    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in inspect.getsource(vgg16)
    assert "vgg19_weights_tf_dim_ordering_tf_kernels.h5" in inspect.getsource(vgg19)
    assert "_weights_tf_dim_ordering_tf_kernels_notop.h5" in inspect.getsource(resnet)


def test_keras_home_is_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert pretrained.cache_dirs()[0] == os.path.join(str(tmp_path / "kh"), "models")


def test_unknown_name_and_weights_argument_are_refused():
    with pytest.raises(ValueError, match="Unknown application name='alexnet'.*vgg16"):
        pretrained.load_application("alexnet")
    with pytest.raises(ValueError, match="chooses `weights` itself"):
        pretrained.load_application("vgg16", weights="imagenet")


def test_offline_gives_random_weights_and_a_message(offline, capsys):
    model, loaded = pretrained.load_application(
        "resnet50", include_top=False, input_shape=(32, 32, 3)
    )
    assert loaded is False
    message = capsys.readouterr().out
    expected = os.path.join(
        str(offline), "models", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    assert f"ImageNet weights for ResNet50 are not cached at {expected}" in message
    assert "continuing with random weights" in message
    assert "on a machine with internet" in message
    assert model.name == "resnet50"
    assert model.output_shape == (None, 1, 1, 2048)
    # Random (Glorot) weights, not zeros.
    assert float(np.std(model.get_layer("conv1_conv").kernel.numpy())) > 1e-3


def _write_legacy_h5(model, path):
    """Writes weights as the legacy Keras HDF5 file keras.applications caches (not .weights.h5)."""
    from keras.src.legacy.saving import legacy_h5_format

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize(
    "name, builder, layer",
    [("vgg16", "VGG16", "block1_conv1"), ("resnet50", "ResNet50", "conv1_conv")],
)
def test_cached_weights_are_loaded(offline, capsys, name, builder, layer):
    source = getattr(keras.applications, builder)(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    kernel = source.get_layer(layer).kernel
    marker = np.arange(np.prod(kernel.shape), dtype="float32").reshape(kernel.shape) / 1000.0
    kernel.assign(marker)
    path = offline / "models" / pretrained.weights_file_name(name, include_top=False)
    _write_legacy_h5(source, str(path))

    model, loaded = pretrained.load_application(
        name, include_top=False, input_shape=(32, 32, 3)
    )
    assert loaded is True
    assert "not cached" not in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_layer(layer).kernel.numpy(), marker)
    # Every other weight came from the file too.
    for a, b in zip(source.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_with_top_file_is_not_used_for_no_top(offline):
    (offline / "models").mkdir()
    (offline / "models" / pretrained.weights_file_name("vgg16", include_top=True)).write_bytes(b"")
    assert pretrained.cached_weights_path("vgg16", include_top=False) is None
    assert pretrained.cached_weights_path("vgg16", include_top=True) is not None
