"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017): a decoder that upsamples with pooling indices.

Notebook 09 (``notebooks/09_segnet.ipynb``) uses this module. Reference: V. Badrinarayanan,
A. Kendall, R. Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder Architecture for Image
Segmentation", IEEE TPAMI 39(12), 2017 (arXiv:1511.00561).

The encoder is the 13 convolutional layers of VGG-16 (each followed by batch normalisation and a
ReLU) with five 2x2 max poolings. Each pooling remembers *where* its maxima were
(``MaxPoolingWithArgmax2D``); the decoder's ``MaxUnpooling2D`` puts every value back at its
maximum's position and leaves the other three pixels of the 2x2 window at zero, a sparse map that
the decoder's convolutions then densify. The decoder therefore keeps only the indices from the
encoder (the paper: 2 bits per 2x2 window), where a U-Net-style decoder keeps whole feature maps.

Keras has no max pooling with indices, so ``MaxPoolingWithArgmax2D`` calls
``tf.nn.max_pool_with_argmax`` (``include_batch_in_index=True``: one flat index into the whole
batch), the one TensorFlow-only place of this module; the unpooling is ``keras.ops.scatter``.
Both layers are registered for ``model.save`` / ``keras.models.load_model``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.segmentation.unet import check_channels_and_classes

__all__ = [
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "conv_bn_relu",
    "decoder_memory",
    "segnet",
]


@keras.saving.register_keras_serializable(package="bestiary_keras")
class MaxPoolingWithArgmax2D(layers.Layer):
    """2x2 max pooling that also returns the position of every maximum.

    Returns ``(pooled, indices)``: ``indices`` (int64, same shape as ``pooled``) is the flat
    position ``((b * height + y) * width + x) * channels + c`` of each maximum in the input.

    Args:
        pool_size: window size (int).
        strides: step (int, default ``pool_size``).
        padding: ``"valid"`` (odd sizes are floored, like ``MaxPooling2D``) or ``"same"``.
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}.")
        self.pool_size = int(pool_size)
        self.strides = int(strides or pool_size)
        self.padding = padding

    def call(self, inputs):
        import tensorflow as tf  # Keras has no max pooling that returns the positions

        pooled, indices = tf.nn.max_pool_with_argmax(
            inputs, ksize=self.pool_size, strides=self.strides, padding=self.padding.upper(),
            include_batch_in_index=True)
        return pooled, indices

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape

        def size(n):
            if n is None:
                return None
            if self.padding == "same":
                return -(-n // self.strides)
            return (n - self.pool_size) // self.strides + 1

        shape = (batch, size(height), size(width), channels)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(inputs.shape)[0]
        return (keras.KerasTensor(shape, dtype=inputs.dtype),
                keras.KerasTensor(shape, dtype="int64"))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


@keras.saving.register_keras_serializable(package="bestiary_keras")
class MaxUnpooling2D(layers.Layer):
    """Puts pooled values back at their maxima's positions; every other pixel is zero.

    Call it on ``[values, indices]`` where ``indices`` come from ``MaxPoolingWithArgmax2D``.

    Args:
        output_size: (height, width) of the map before the pooling; ``None`` means ``size`` times
            the input size (an odd size before the pooling needs the explicit value).
        size: the pooling factor used when ``output_size`` is ``None``.
    """

    def __init__(self, output_size=None, size=2, **kwargs):
        super().__init__(**kwargs)
        self.output_size = None if output_size is None else tuple(int(s) for s in output_size)
        self.size = int(size)

    def _target(self, height, width):
        if self.output_size is not None:
            return self.output_size
        return (None if height is None else height * self.size,
                None if width is None else width * self.size)

    def call(self, inputs):
        values, indices = inputs
        batch, height, width, channels = keras.ops.shape(values)
        if self.output_size is not None:
            height, width = self.output_size
        else:
            height, width = height * self.size, width * self.size
        # the indices are flat positions in the whole unpooled batch: scatter into one vector
        total = keras.ops.cast(batch, "int64") * keras.ops.cast(height * width * channels, "int64")
        flat = keras.ops.scatter(keras.ops.reshape(indices, (-1, 1)),
                                 keras.ops.reshape(values, (-1,)), keras.ops.reshape(total, (1,)))
        return keras.ops.reshape(flat, (-1, height, width, channels))

    def compute_output_shape(self, input_shape):
        values_shape = input_shape[0]
        height, width = self._target(values_shape[1], values_shape[2])
        return (values_shape[0], height, width, values_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "size": self.size}


def conv_bn_relu(x, filters, *, bn_momentum=0.9, name):
    """3x3 convolution (padded), batch normalisation, ReLU: SegNet's unit, encoder and decoder."""
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


VGG16_FILTERS = (64, 128, 256, 512, 512)
VGG16_CONVS = (2, 2, 3, 3, 3)


def segnet(
    input_shape=(360, 480, 3),
    num_classes: int = 12,
    *,
    filters=VGG16_FILTERS,
    convs=VGG16_CONVS,
    output_activation: str | None = "softmax",
    bn_momentum: float = 0.9,
    name: str = "segnet",
) -> keras.Model:
    """SegNet: a VGG-16 encoder, a mirrored decoder that unpools with the stored indices.

    The defaults are the paper's network for CamVid (360 x 480 images; 11 classes plus "void"
    make 12 outputs): 13 encoder and 13 decoder convolutions, every one followed by batch
    normalisation and a ReLU except the last decoder convolution, which gives the class scores
    for the pixel-wise soft-max. As in the authors' Caffe model, the last convolution of each
    decoder block reduces the channels to those of the next block.

    Args:
        input_shape: (height, width, channels); height and width must be known (the unpooling
            layers need the sizes before each pooling, e.g. 45 -> 22 -> 45).
        num_classes: output channels.
        filters: channels of the encoder blocks (VGG-16: 64, 128, 256, 512, 512).
        convs: 3x3 convolutions per encoder block (VGG-16: 2, 2, 3, 3, 3).
        output_activation: ``"softmax"`` or ``None`` (scores).
        bn_momentum: momentum of the batch-normalisation moving statistics (0.9, not Keras'
            0.99, so that they keep up during a training of a few hundred steps).
        name: the model's name.

    Returns:
        A ``keras.Model`` from (batch, H, W, C) images to (batch, H, W, num_classes).
    """
    filters, convs = tuple(filters), tuple(convs)
    if len(filters) != len(convs) or not filters:
        raise ValueError(f"filters {filters} and convs {convs} must be non-empty and equally long "
                         "(one entry per encoder block).")
    if min(convs) < 1:
        raise ValueError(f"every block needs at least one convolution, got convs={convs}.")
    if len(input_shape) != 3 or input_shape[0] is None or input_shape[1] is None:
        raise ValueError(f"input_shape must be (height, width, channels) with known height and "
                         f"width, got {input_shape!r}.")
    check_channels_and_classes(input_shape, num_classes)
    if min(input_shape[:2]) < 2 ** len(filters):
        raise ValueError(f"input size {input_shape[:2]} is smaller than 2**{len(filters)}: "
                         "use fewer blocks or a larger input.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    stored = []
    for block, (width, count) in enumerate(zip(filters, convs), start=1):
        for i in range(1, count + 1):
            x = conv_bn_relu(x, width, bn_momentum=bn_momentum, name=f"encoder{block}_{i}")
        size_before = tuple(x.shape[1:3])
        x, indices = MaxPoolingWithArgmax2D(name=f"encoder{block}_pool")(x)
        stored.append((indices, size_before))
    for block in range(len(filters), 0, -1):
        indices, size_before = stored[block - 1]
        x = MaxUnpooling2D(size_before, name=f"decoder{block}_unpool")([x, indices])
        width, count = filters[block - 1], convs[block - 1]
        for i in range(count, 0, -1):
            if block == 1 and i == 1:
                break  # the last convolution is the classifier below
            out = filters[block - 2] if (i == 1 and block > 1) else width
            x = conv_bn_relu(x, out, bn_momentum=bn_momentum, name=f"decoder{block}_{i}")
    x = layers.Conv2D(num_classes, 3, padding="same", name="classifier")(x)
    if output_activation is not None:
        x = layers.Activation(output_activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, x, name=name)


def decoder_memory(model, input_shape=None) -> dict:
    """Bytes per image that the decoder keeps from the encoder, SegNet versus U-Net style.

    For every ``MaxPoolingWithArgmax2D`` of ``model`` with input (H, W, C) and output (h, w, C):

    - ``indices_int64``: what ``tf.nn.max_pool_with_argmax`` stores here, 8 bytes per pooled
      value;
    - ``indices_2bit``: the paper's count, 2 bits per pooled value (which of the 4 pixels);
    - ``feature_maps_float32``: what a U-Net-style decoder keeps instead, the whole (H, W, C)
      map before the pooling in float32.

    Returns:
        ``{"indices_int64": ..., "indices_2bit": ..., "feature_maps_float32": ...}`` in bytes.
    """
    del input_shape
    totals = {"indices_int64": 0, "indices_2bit": 0.0, "feature_maps_float32": 0}
    for layer in model.layers:
        if isinstance(layer, MaxPoolingWithArgmax2D):
            before = layer.input.shape[1:]
            after = layer.output[0].shape[1:]
            pooled = int(np.prod(after))
            totals["indices_int64"] += 8 * pooled
            totals["indices_2bit"] += pooled / 4
            totals["feature_maps_float32"] += 4 * int(np.prod(before))
    if totals["indices_int64"] == 0:
        raise ValueError(f"model {model.name!r} has no MaxPoolingWithArgmax2D layer.")
    return totals
