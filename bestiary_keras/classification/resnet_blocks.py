"""ResNet's building blocks (He et al., 2016), on tensors, as ``keras.applications`` writes them.

``resnet.py`` composes them into the networks of the paper; notebook 02 shows their source.

- ``simple_resnet_block``: the lecture slide's "simple ResNet block", corrected (``"same"``
  padding so that ``Add`` sees equal shapes, ``x = layers.ReLU()(x)`` and the activation
  returned).
- ``basic_block_v1`` (two 3x3 convolutions; ResNet-18/34 and the CIFAR nets) and
  ``residual_block_v1`` (the 1x1-3x3-1x1 bottleneck of ResNet-50/101/152, Keras' v1 layout:
  the stride sits on the first 1x1 convolution, convolutions have biases, BN epsilon 1.001e-5).
- ``single_layer_block``: a shortcut over ONE convolution, ``y = ReLU(BN(W * x) + x)``, the
  variant the paper (section 3.1) dismisses as nearly linear, for notebook 02's comparison.
- ``stack_residual_blocks``: one stage ("conv2_x" ... "conv5_x" in the paper's table 1).
- ``ZeroPadShortcut``: the parameter-free shortcut "option A" (a registered layer).
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = [
    "BLOCK_EXPANSION",
    "BN_EPSILON",
    "SHORTCUTS",
    "ZeroPadShortcut",
    "basic_block_v1",
    "channel_axis",
    "residual_block_v1",
    "simple_resnet_block",
    "single_layer_block",
    "stack_residual_blocks",
]

BN_EPSILON = 1.001e-5
"""The batch-normalisation epsilon of ``keras.applications`` ResNets (kept for equal weights)."""

BLOCK_EXPANSION = {"single": 1, "basic": 1, "bottleneck": 4}
"""Output channels of a block divided by its ``filters`` argument."""

SHORTCUTS = ("auto", "identity", "projection", "zero_pad")


def channel_axis():
    """The channel (batch-normalisation) axis of Keras' image data format."""
    return 3 if keras.config.image_data_format() == "channels_last" else 1


def _channels(x):
    return int(x.shape[channel_axis()])


def _check_name(name, what):
    if not name:
        raise ValueError(
            f"{what} needs a `name` (every layer is named, e.g. name='conv2_block1'); got {name!r}."
        )


@keras.saving.register_keras_serializable(package="bestiary_keras")
class ZeroPadShortcut(layers.Layer):
    """The parameter-free shortcut "option A" of the paper (section 3.3, used on CIFAR-10).

    Subsamples the input by ``strides`` (takes every ``strides``-th pixel, like a 1x1
    convolution with that stride would) and appends zero channels up to ``filters``, so the
    identity is kept where the channel count grows and plain and residual nets have exactly
    the same parameters.

    Args:
        filters: number of output channels (at least the number of input channels).
        strides: spatial subsampling factor.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        if int(filters) < 1 or int(strides) < 1:
            raise ValueError(
                f"ZeroPadShortcut needs filters >= 1 and strides >= 1; got filters={filters}, "
                f"strides={strides}."
            )
        self.filters = int(filters)
        self.strides = int(strides)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        if channels is not None and channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut cannot shrink {channels} channels to filters={self.filters}; "
                "use a projection shortcut (shortcut='projection') instead."
            )

        def sub(size):
            return None if size is None else (size + self.strides - 1) // self.strides

        return (batch, sub(height), sub(width), self.filters)

    def call(self, inputs):
        if keras.config.image_data_format() != "channels_last":
            raise ValueError("ZeroPadShortcut supports channels_last data only.")
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra < 0:
            raise ValueError(
                f"ZeroPadShortcut cannot shrink {inputs.shape[-1]} channels to "
                f"filters={self.filters}; use shortcut='projection' instead."
            )
        if extra:
            x = keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, extra]])
        return x

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, strides=self.strides)
        return config


def simple_resnet_block(input_data, filters, conv_size, *, zero_init_residual=False, name=None):
    """The slide's "simple ResNet block", corrected.

    The slide's version fails twice: its unpadded (``"valid"``) convolutions shrink the
    feature map, so ``layers.Add()`` gets two different shapes, and
    ``output = layers.ReLU(output)`` passes an undefined tensor to the layer's constructor
    (a ``NameError``) instead of calling a ``ReLU`` layer on ``x``. Here both convolutions use
    ``padding="same"`` and the block ends with ``x = layers.ReLU()(x)``, which is returned::

        x -> Conv(relu) -> BN -> Conv -> BN -> (+ x) -> ReLU

    Args:
        input_data: input tensor with ``filters`` channels (the shortcut is the identity).
        filters: number of filters of both convolutions.
        conv_size: kernel size of both convolutions (odd, e.g. 3).
        zero_init_residual: initialise the last BN's gamma at zero, so the block starts as
            ``ReLU(input)`` (the identity on post-ReLU activations).
        name: prefix of the layer names (``None``: Keras picks unique names).

    Returns:
        Output tensor, same shape as ``input_data``.
    """
    if _channels(input_data) != filters:
        raise ValueError(
            f"simple_resnet_block adds its input to its output, so the input needs filters="
            f"{filters} channels; got {_channels(input_data)}. Use basic_block_v1 (with a "
            "projection shortcut) where the channel count changes."
        )

    def n(suffix):
        return None if name is None else f"{name}_{suffix}"

    x = layers.Conv2D(filters, conv_size, padding="same", activation="relu", name=n("1_conv"))(
        input_data
    )
    x = layers.BatchNormalization(axis=channel_axis(), name=n("1_bn"))(x)
    x = layers.Conv2D(filters, conv_size, padding="same", activation=None, name=n("2_conv"))(x)
    x = layers.BatchNormalization(
        axis=channel_axis(),
        gamma_initializer="zeros" if zero_init_residual else "ones",
        name=n("2_bn"),
    )(x)
    x = layers.Add(name=n("add"))([x, input_data])
    x = layers.ReLU(name=n("out"))(x)
    return x


def _shortcut(
    x, out_channels, stride, shortcut, use_bias, name, bn_momentum=0.99,
    kernel_initializer="glorot_uniform",
):
    """The shortcut branch of a block: identity, 1x1 projection + BN, or zero padding."""
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}; got {shortcut!r}.")
    same_shape = stride == 1 and _channels(x) == out_channels
    if shortcut == "auto":
        shortcut = "identity" if same_shape else "projection"
    if shortcut == "identity":
        if not same_shape:
            raise ValueError(
                f"An identity shortcut needs stride=1 and {out_channels} input channels; got "
                f"stride={stride} and {_channels(x)} channels (block {name!r}). Use "
                "shortcut='projection' or 'zero_pad'."
            )
        return x
    if shortcut == "zero_pad":
        return ZeroPadShortcut(out_channels, stride, name=f"{name}_0_pad")(x)
    x = layers.Conv2D(
        out_channels, 1, strides=stride, use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=f"{name}_0_conv",
    )(x)
    return _batch_norm(x, bn_momentum, f"{name}_0_bn")


def _batch_norm(x, momentum, name, zero_gamma=False):
    """BN over the channel axis with Keras' epsilon; ``zero_gamma`` for a block's last BN."""
    return layers.BatchNormalization(
        axis=channel_axis(), epsilon=BN_EPSILON, momentum=momentum,
        gamma_initializer="zeros" if zero_gamma else "ones", name=name,
    )(x)


def _conv3x3(x, filters, stride, use_bias, name, kernel_initializer="glorot_uniform"):
    """A 3x3 convolution; with a stride, explicit symmetric padding as in the paper's nets."""
    if stride == 1:
        return layers.Conv2D(
            filters, 3, padding="same", use_bias=use_bias,
            kernel_initializer=kernel_initializer, name=f"{name}_conv",
        )(x)
    x = layers.ZeroPadding2D(padding=1, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters, 3, strides=stride, use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=f"{name}_conv",
    )(x)


def basic_block_v1(
    x,
    filters,
    stride=1,
    shortcut="auto",
    *,
    residual=True,
    use_bias=True,
    zero_init_residual=False,
    bn_momentum=0.99,
    kernel_initializer="glorot_uniform",
    name=None,
):
    """The basic residual block of ResNet-18/34 and of the CIFAR nets (two 3x3 convolutions).

    ``x -> conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN -> (+ shortcut(x)) -> ReLU``.
    With ``residual=False`` the addition is left out: the "plain" block of the paper's
    comparison, otherwise identical (same layers, names and initialisation).

    Args:
        x: input tensor.
        filters: number of filters of both convolutions (and of the output).
        stride: stride of the first convolution (and of the shortcut).
        shortcut: ``"auto"`` (identity when the shape is kept, else ``"projection"``),
            ``"identity"``, ``"projection"`` (1x1 convolution + BN, the paper's option B) or
            ``"zero_pad"`` (subsample and pad channels with zeros, option A, no parameters).
        residual: ``False`` builds the plain block (no shortcut at all).
        use_bias: biases in the convolutions (``keras.applications`` v1 layout: ``True``;
            torchvision: ``False``, the following BN makes them redundant).
        zero_init_residual: initialise the last BN's gamma at zero so that the block starts
            as ``ReLU(shortcut(x))``: the identity on non-negative (post-ReLU) inputs.
        bn_momentum: momentum of the BN moving statistics (Keras: 0.99; 0.9 suits short runs).
        kernel_initializer: initialiser of the convolution kernels (Keras default
            ``"glorot_uniform"``; ``"zeros"`` builds large nets fast when only counting).
        name: block label, e.g. ``"conv2_block1"``; layers are ``{name}_1_conv`` etc.

    Returns:
        Output tensor for the block.
    """
    _check_name(name, "basic_block_v1")
    if residual:
        short = _shortcut(
            x, filters, stride, shortcut, use_bias, name, bn_momentum, kernel_initializer
        )

    x = _conv3x3(x, filters, stride, use_bias, f"{name}_1", kernel_initializer)
    x = _batch_norm(x, bn_momentum, f"{name}_1_bn")
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)

    x = _conv3x3(x, filters, 1, use_bias, f"{name}_2", kernel_initializer)
    x = _batch_norm(x, bn_momentum, f"{name}_2_bn", zero_gamma=zero_init_residual)

    if residual:
        x = layers.Add(name=f"{name}_add")([short, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def single_layer_block(
    x, filters, stride=1, shortcut="auto", *, residual=True, use_bias=True, bn_momentum=0.99,
    kernel_initializer="glorot_uniform", name=None,
):
    """A shortcut over a single convolution: ``x -> conv3x3(stride) -> BN -> (+ x) -> ReLU``.

    The paper (section 3.1): "if F has only a single layer, Eq. (1) is similar to a linear
    layer: y = W1 x + x, for which we have not observed advantages". Before the ReLU the block
    computes ``(W + I) x`` (up to BN), a re-parametrised single convolution, not a residual
    function of two layers with a non-linearity inside. Arguments as in ``basic_block_v1``;
    ``residual=False`` gives conv-BN-ReLU.
    """
    _check_name(name, "single_layer_block")
    if residual:
        short = _shortcut(
            x, filters, stride, shortcut, use_bias, name, bn_momentum, kernel_initializer
        )
    x = _conv3x3(x, filters, stride, use_bias, f"{name}_1", kernel_initializer)
    x = _batch_norm(x, bn_momentum, f"{name}_1_bn")
    if residual:
        x = layers.Add(name=f"{name}_add")([short, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def residual_block_v1(
    x,
    filters,
    kernel_size=3,
    stride=1,
    conv_shortcut=True,
    *,
    use_bias=True,
    zero_init_residual=False,
    bn_momentum=0.99,
    kernel_initializer="glorot_uniform",
    name=None,
):
    """The bottleneck block of ResNet-50/101/152, as ``keras.applications`` builds it (v1).

    ``x -> conv1x1(stride) -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv1x1 (4 filters)
    -> BN -> (+ shortcut(x)) -> ReLU``. The stride sits on the first 1x1 convolution as in
    Keras (the "v1.5" of torchvision moves it to the 3x3; the parameter count is the same).

    Args:
        x: input tensor.
        filters: filters of the bottleneck; the block outputs ``4 * filters`` channels.
        kernel_size: kernel size of the middle convolution.
        stride: stride of the first layer (and of the projection shortcut).
        conv_shortcut: 1x1 projection + BN shortcut if ``True``, identity otherwise.
        use_bias: biases in the convolutions (``True`` in ``keras.applications``).
        zero_init_residual: initialise the last BN's gamma at zero (the block starts as
            ``ReLU(shortcut(x))``).
        bn_momentum: momentum of the BN moving statistics.
        kernel_initializer: initialiser of the convolution kernels (Keras default
            ``"glorot_uniform"``; ``"zeros"`` builds large nets fast when only counting).
        name: block label, e.g. ``"conv2_block1"``.

    Returns:
        Output tensor for the residual block.
    """
    _check_name(name, "residual_block_v1")
    shortcut = _shortcut(
        x, 4 * filters, stride, "projection" if conv_shortcut else "identity", use_bias, name,
        bn_momentum, kernel_initializer,
    )

    def conv(x, channels, kernel_size, stride, padding, part):
        return layers.Conv2D(
            channels, kernel_size, strides=stride, padding=padding, use_bias=use_bias,
            kernel_initializer=kernel_initializer, name=f"{name}_{part}_conv",
        )(x)

    x = conv(x, filters, 1, stride, "valid", 1)  # 1x1, reduces the channels
    x = _batch_norm(x, bn_momentum, f"{name}_1_bn")
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = conv(x, filters, kernel_size, 1, "same", 2)  # 3x3 on the reduced channels
    x = _batch_norm(x, bn_momentum, f"{name}_2_bn")
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = conv(x, 4 * filters, 1, 1, "valid", 3)  # 1x1, restores 4x the channels
    x = _batch_norm(x, bn_momentum, f"{name}_3_bn", zero_gamma=zero_init_residual)

    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stack_residual_blocks(
    x,
    filters,
    blocks,
    block="bottleneck",
    stride1=2,
    *,
    residual=True,
    shortcut="auto",
    use_bias=True,
    zero_init_residual=False,
    bn_momentum=0.99,
    kernel_initializer="glorot_uniform",
    name=None,
):
    """One stage: ``blocks`` residual blocks, the first one with stride ``stride1``.

    Args:
        x: input tensor.
        filters: ``filters`` of every block of the stage.
        blocks: number of blocks (at least 1).
        block: ``"basic"`` (``basic_block_v1``), ``"bottleneck"`` (``residual_block_v1``) or
            ``"single"`` (``single_layer_block``: one convolution per shortcut).
        stride1: stride of the first block (1 for the first stage after max pooling).
        residual: ``False`` builds plain blocks (basic blocks only).
        shortcut: shortcut of the first block for basic and single blocks (see ``basic_block_v1``);
            the other blocks keep the shape and use the identity. Bottleneck stages use a
            projection first, as in Keras.
        use_bias: biases in the convolutions.
        zero_init_residual: zero gamma in the last BN of every block.
        bn_momentum: momentum of the BN moving statistics.
        kernel_initializer: initialiser of the convolution kernels (Keras default
            ``"glorot_uniform"``; ``"zeros"`` builds large nets fast when only counting).
        name: stage label, e.g. ``"conv2"``; blocks are ``{name}_block1`` ...

    Returns:
        Output tensor for the stacked blocks.
    """
    _check_name(name, "stack_residual_blocks")
    if block not in BLOCK_EXPANSION:
        raise ValueError(f"block must be one of {tuple(BLOCK_EXPANSION)}; got {block!r}.")
    if int(blocks) < 1:
        raise ValueError(f"A stage needs blocks >= 1; got blocks={blocks} (stage {name!r}).")
    if block == "bottleneck" and not residual:
        raise ValueError("Plain (residual=False) stages are built from basic or single blocks only.")
    for i in range(1, int(blocks) + 1):
        stride = stride1 if i == 1 else 1
        if block == "single":
            x = single_layer_block(
                x, filters, stride, shortcut if i == 1 else "auto", residual=residual,
                use_bias=use_bias, bn_momentum=bn_momentum,
                kernel_initializer=kernel_initializer, name=f"{name}_block{i}",
            )
        elif block == "basic":
            x = basic_block_v1(
                x,
                filters,
                stride,
                shortcut if i == 1 else "auto",
                residual=residual,
                use_bias=use_bias,
                zero_init_residual=zero_init_residual,
                bn_momentum=bn_momentum,
                kernel_initializer=kernel_initializer,
                name=f"{name}_block{i}",
            )
        else:
            x = residual_block_v1(
                x,
                filters,
                stride=stride,
                conv_shortcut=i == 1,
                use_bias=use_bias,
                zero_init_residual=zero_init_residual,
                bn_momentum=bn_momentum,
                kernel_initializer=kernel_initializer,
                name=f"{name}_block{i}",
            )
    return x
