"""ResNet (He et al., 2016): residual blocks, the ImageNet builders and the CIFAR-style nets.

Notebook 02 (``notebooks/02_resnet.ipynb``) uses this module. Reference: K. He, X. Zhang,
S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).

The code follows ``keras.applications.resnet`` (small block functions on tensors composed by a
short top-level builder, every layer named) so that a reader can put the two side by side:

- ``simple_resnet_block``: the lecture slide's "simple ResNet block", corrected (``"same"``
  padding so that ``Add`` sees equal shapes, ``x = layers.ReLU()(x)`` and the activation
  returned).
- ``basic_block_v1`` (two 3x3 convolutions; ResNet-18/34 and the CIFAR nets) and
  ``residual_block_v1`` (the 1x1-3x3-1x1 bottleneck of ResNet-50/101/152, Keras' v1 layout:
  the stride sits on the first 1x1 convolution, convolutions have biases, BN epsilon 1.001e-5).
- ``stack_residual_blocks``: one stage ("conv2_x" ... "conv5_x" in the paper's table 1).
- ``resnet_v1(depth, ...)`` (and ``resnet18`` ... ``resnet152``): ResNet-18/34/50/101/152
  with width and input size parameters; ``resnet_v1(50)`` has exactly the 25,636,712 parameters of ``keras.applications.ResNet50``.
- ``cifar_resnet(n, residual=...)``: the 6n+2-layer nets of the paper's section 4.2 and their
  "plain" counterparts (the same net without the shortcuts), for the degradation experiment.
- ``weighted_depth`` / ``count_weighted_layers``: depth as the slides count it.
- ``train_for_steps`` / ``conv_kernel_gradient_norms``: the fixed-budget comparison of plain
  and residual nets (identical batches for every net) and the gradient norms at initialisation.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.training import build_optimizer

__all__ = [
    "basic_block_v1", "batch_order", "BLOCK_EXPANSION", "BN_EPSILON", "cifar_resnet",
    "conv_kernel_gradient_norms", "count_weighted_layers", "residual_block_v1", "resnet101",
    "resnet152", "resnet18", "resnet34", "resnet50", "RESNET_CONFIGS", "resnet_v1", "SHORTCUTS",
    "simple_resnet_block", "stack_residual_blocks", "train_for_steps", "weighted_depth",
    "WEIGHTED_LAYER_TYPES", "ZeroPadShortcut",
]

BN_EPSILON = 1.001e-5
"""The batch-normalisation epsilon of ``keras.applications`` ResNets (kept for equal weights)."""

RESNET_CONFIGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""Depth -> (block type, blocks per stage), the paper's table 1."""

BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
"""Output channels of a block divided by its ``filters`` argument."""

SHORTCUTS = ("auto", "identity", "projection", "zero_pad")


def _bn_axis():
    return 3 if keras.config.image_data_format() == "channels_last" else 1


def _channels(x):
    return int(x.shape[_bn_axis()])


def _check_name(name, what):
    if not name:
        raise ValueError(
            f"{what} needs a `name` (every layer is named, e.g. name='conv2_block1'); got {name!r}."
        )


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
    x = layers.BatchNormalization(axis=_bn_axis(), name=n("1_bn"))(x)
    x = layers.Conv2D(filters, conv_size, padding="same", activation=None, name=n("2_conv"))(x)
    x = layers.BatchNormalization(
        axis=_bn_axis(),
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
    return layers.BatchNormalization(
        axis=_bn_axis(), epsilon=BN_EPSILON, momentum=bn_momentum, name=f"{name}_0_bn"
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
    bn_axis = _bn_axis()
    if residual:
        short = _shortcut(
            x, filters, stride, shortcut, use_bias, name, bn_momentum, kernel_initializer
        )

    x = _conv3x3(x, filters, stride, use_bias, f"{name}_1", kernel_initializer)
    x = layers.BatchNormalization(
        axis=bn_axis, epsilon=BN_EPSILON, momentum=bn_momentum, name=f"{name}_1_bn"
    )(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)

    x = _conv3x3(x, filters, 1, use_bias, f"{name}_2", kernel_initializer)
    x = layers.BatchNormalization(
        axis=bn_axis,
        epsilon=BN_EPSILON,
        momentum=bn_momentum,
        gamma_initializer="zeros" if zero_init_residual else "ones",
        name=f"{name}_2_bn",
    )(x)

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
    bn_axis = _bn_axis()
    shortcut = _shortcut(
        x, 4 * filters, stride, "projection" if conv_shortcut else "identity", use_bias, name,
        bn_momentum, kernel_initializer,
    )

    x = layers.Conv2D(
        filters, 1, strides=stride, use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=f"{name}_1_conv",
    )(x)
    x = layers.BatchNormalization(
        axis=bn_axis, epsilon=BN_EPSILON, momentum=bn_momentum, name=f"{name}_1_bn"
    )(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)

    x = layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=f"{name}_2_conv",
    )(x)
    x = layers.BatchNormalization(
        axis=bn_axis, epsilon=BN_EPSILON, momentum=bn_momentum, name=f"{name}_2_bn"
    )(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)

    x = layers.Conv2D(
        4 * filters, 1, use_bias=use_bias, kernel_initializer=kernel_initializer,
        name=f"{name}_3_conv",
    )(x)
    x = layers.BatchNormalization(
        axis=bn_axis,
        epsilon=BN_EPSILON,
        momentum=bn_momentum,
        gamma_initializer="zeros" if zero_init_residual else "ones",
        name=f"{name}_3_bn",
    )(x)

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
        block: ``"basic"`` (``basic_block_v1``) or ``"bottleneck"`` (``residual_block_v1``).
        stride1: stride of the first block (1 for the first stage after max pooling).
        residual: ``False`` builds plain blocks (basic blocks only).
        shortcut: shortcut of the first block for basic blocks (see ``basic_block_v1``);
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
        raise ValueError("Plain (residual=False) stages are built from basic blocks only.")
    for i in range(1, int(blocks) + 1):
        stride = stride1 if i == 1 else 1
        if block == "basic":
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


def _classifier_head(
    x, include_top, pooling, classes, classifier_activation, kernel_initializer="glorot_uniform"
):
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(
            classes, activation=classifier_activation, kernel_initializer=kernel_initializer,
            name="predictions",
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    if pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")
    return x


def resnet_v1(
    depth=50,
    *,
    include_top=True,
    input_shape=(224, 224, 3),
    classes=1000,
    width=64,
    stem="imagenet",
    use_bias=True,
    pooling=None,
    classifier_activation="softmax",
    zero_init_residual=False,
    bn_momentum=0.99,
    kernel_initializer="glorot_uniform",
    name=None,
):
    """ResNet-18/34/50/101/152 (paper's table 1) in the ``keras.applications`` v1 layout.

    With the defaults, ``resnet_v1(50)`` is layer for layer ``keras.applications.ResNet50(
    weights=None)`` (25,636,712 parameters, same layer names), and ``resnet_v1(101)`` /
    ``resnet_v1(152)`` match ``ResNet101`` / ``ResNet152``. ``use_bias=False`` gives the
    torchvision layout (11,689,512 trainable parameters for ResNet-18).

    Args:
        depth: one of 18, 34, 50, 101, 152.
        include_top: global average pooling and the ``classes``-way dense layer.
        input_shape: ``(height, width, channels)``; small sizes (e.g. 32x32) are fine.
        classes: number of classes of the top layer.
        width: filters of the stem and of the first stage (64 in the paper); the stages use
            ``width``, ``2 width``, ``4 width``, ``8 width`` (times 4 at the output of a
            bottleneck), so ``width=16`` is a 16x cheaper net that trains on a CPU.
        stem: ``"imagenet"`` (7x7/2 convolution and 3x3/2 max pooling, 4x downsampling) or
            ``"cifar"`` (one 3x3 convolution, no pooling: for 32x32 inputs).
        use_bias: biases in the convolutions.
        pooling: without the top: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top layer (``None`` for logits).
        zero_init_residual: zero gamma in the last BN of every residual branch.
        bn_momentum: momentum of the BN moving statistics (0.99 as in Keras).
        kernel_initializer: initialiser of the convolution and top-layer kernels (Keras default
            ``"glorot_uniform"``; ``"zeros"`` builds large nets fast when only counting).
        name: model name (default ``"resnet{depth}"``).

    Returns:
        A ``keras.Model``.
    """
    if depth not in RESNET_CONFIGS:
        raise ValueError(
            f"Unknown ResNet depth={depth!r}: valid depths are "
            f"{', '.join(str(d) for d in RESNET_CONFIGS)}."
        )
    if int(width) < 1:
        raise ValueError(f"width must be a positive number of filters; got width={width}.")
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar'; got stem={stem!r}.")
    block, blocks_per_stage = RESNET_CONFIGS[depth]
    bn_axis = _bn_axis()

    inputs = keras.Input(shape=input_shape, name="input")
    if stem == "imagenet":
        x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
        x = layers.Conv2D(
            width, 7, strides=2, use_bias=use_bias, kernel_initializer=kernel_initializer,
            name="conv1_conv",
        )(x)
    else:
        x = layers.Conv2D(
            width, 3, padding="same", use_bias=use_bias,
            kernel_initializer=kernel_initializer, name="conv1_conv",
        )(inputs)
    x = layers.BatchNormalization(
        axis=bn_axis, epsilon=BN_EPSILON, momentum=bn_momentum, name="conv1_bn"
    )(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    if stem == "imagenet":
        x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    for stage, blocks in enumerate(blocks_per_stage):
        x = stack_residual_blocks(
            x,
            width * 2**stage,
            blocks,
            block,
            stride1=1 if stage == 0 else 2,
            use_bias=use_bias,
            zero_init_residual=zero_init_residual,
            bn_momentum=bn_momentum,
            kernel_initializer=kernel_initializer,
            name=f"conv{stage + 2}",
        )

    x = _classifier_head(
        x, include_top, pooling, classes, classifier_activation, kernel_initializer
    )
    return keras.Model(inputs, x, name=name or f"resnet{depth}")



def resnet18(**kwargs):
    """ResNet-18 (basic blocks 2-2-2-2); keyword arguments as in ``resnet_v1``."""
    return resnet_v1(18, **kwargs)


def resnet34(**kwargs):
    """ResNet-34 (basic blocks 3-4-6-3); keyword arguments as in ``resnet_v1``."""
    return resnet_v1(34, **kwargs)


def resnet50(**kwargs):
    """ResNet-50 (bottlenecks 3-4-6-3), ``keras.applications.ResNet50(weights=None)``'s layers."""
    return resnet_v1(50, **kwargs)


def resnet101(**kwargs):
    """ResNet-101 (bottlenecks 3-4-23-3); keyword arguments as in ``resnet_v1``."""
    return resnet_v1(101, **kwargs)


def resnet152(**kwargs):
    """ResNet-152 (bottlenecks 3-8-36-3); keyword arguments as in ``resnet_v1``."""
    return resnet_v1(152, **kwargs)

def cifar_resnet(
    n=1,
    *,
    residual=True,
    filters=(16, 32, 64),
    input_shape=(32, 32, 3),
    classes=10,
    shortcut="zero_pad",
    use_bias=False,
    classifier_activation="softmax",
    zero_init_residual=False,
    bn_momentum=0.9,
    name=None,
):
    """The CIFAR-10 nets of the paper's section 4.2: 6n+2 weighted layers, plain or residual.

    A 3x3 convolution with ``filters[0]`` filters, then three stages of ``n`` basic blocks
    (2n convolutions each) with ``filters[0..2]`` filters on feature maps of size
    32/16/8 (stride 2 at the start of stages 2 and 3), global average pooling and a dense
    layer: ``n=1`` has 8 layers, ``n=3`` 20, ``n=5`` 32, ``n=9`` 56. ``residual=False`` is the
    same net without the shortcuts (the paper's "plain" baseline, BN after every convolution
    in both). With the default ``shortcut="zero_pad"`` (option A) both have exactly the same
    parameters.

    Args:
        n: blocks per stage (at least 1).
        residual: ``True`` for the ResNet, ``False`` for the plain net.
        filters: filters of the three stages.
        input_shape: ``(height, width, channels)``.
        classes: number of classes.
        shortcut: ``"zero_pad"`` (option A, parameter-free) or ``"projection"`` (option B)
            where the shape changes.
        use_bias: biases in the convolutions (redundant before BN; ``False``).
        classifier_activation: activation of the top layer (``None`` for logits).
        zero_init_residual: zero gamma in the last BN of every residual branch.
        bn_momentum: momentum of the BN moving statistics: 0.9 (Torch's 0.1, as in the
            paper's code) so that the statistics used at test time catch up within a short run.
        name: model name (default ``"resnet{6n+2}"`` or ``"plain{6n+2}"``).

    Returns:
        A ``keras.Model``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n (blocks per stage) must be an integer >= 1; got n={n!r}.")
    if len(filters) != 3:
        raise ValueError(f"filters needs one value per stage (3); got filters={filters!r}.")
    if shortcut not in ("zero_pad", "projection"):
        raise ValueError(f"shortcut must be 'zero_pad' or 'projection'; got {shortcut!r}.")
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(filters[0], 3, padding="same", use_bias=use_bias, name="conv1_conv")(inputs)
    x = layers.BatchNormalization(
        axis=_bn_axis(), epsilon=BN_EPSILON, momentum=bn_momentum, name="conv1_bn"
    )(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, stage_filters in enumerate(filters):
        x = stack_residual_blocks(
            x,
            stage_filters,
            int(n),
            "basic",
            stride1=1 if stage == 0 else 2,
            residual=residual,
            shortcut=shortcut,
            use_bias=use_bias,
            zero_init_residual=zero_init_residual,
            bn_momentum=bn_momentum,
            name=f"conv{stage + 2}",
        )
    x = _classifier_head(x, True, None, classes, classifier_activation)
    depth = 6 * int(n) + 2
    return keras.Model(inputs, x, name=name or f"{'resnet' if residual else 'plain'}{depth}")


WEIGHTED_LAYER_TYPES = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Conv2DTranspose,
    layers.DepthwiseConv2D,
    layers.SeparableConv2D,
    layers.Dense,
)
"""Layers that count towards a network's depth (the slides count convolutions and dense)."""


def _is_weighted(layer):
    return isinstance(layer, WEIGHTED_LAYER_TYPES)


def count_weighted_layers(model):
    """Number of convolution and dense layers of ``model`` (shortcut projections included).

    Args:
        model: a ``keras.Model``.

    Returns:
        An ``int``.
    """
    return sum(_is_weighted(layer) for layer in model.layers)


def weighted_depth(model):
    """Depth as the papers count it: weighted layers on the longest input-to-output path.

    For a ResNet the longest path runs through the residual branches, so the 1x1 projection
    shortcuts do not count (ResNet-152: 152, although it has 156 convolution and dense
    layers); for a chain (VGG, AlexNet) it equals ``count_weighted_layers``.

    Args:
        model: a functional or sequential ``keras.Model`` (nested models are not expanded).

    Returns:
        An ``int``.
    """
    members = {id(layer) for layer in model.layers}
    depth = {}
    for layer in model.layers:  # functional models list layers in topological order
        parents = []
        for node in layer._inbound_nodes:
            for parent in node.parent_nodes:
                op = parent.operation
                if id(op) in members and id(op) in depth:
                    parents.append(depth[id(op)])
        depth[id(layer)] = max(parents, default=0) + int(_is_weighted(layer))
    outputs = {id(t._keras_history.operation) for t in keras.tree.flatten(model.outputs)}
    return max((depth[i] for i in outputs if i in depth), default=max(depth.values(), default=0))


def conv_kernel_gradient_norms(model, images, labels, *, from_logits=False):
    """L2 norm of the loss gradient for each convolution kernel on one batch.

    The loss is the mean sparse categorical cross-entropy, computed in training mode (BN uses
    the batch statistics, as at the first step of training). Uses ``tf.GradientTape``:
    Keras has no backend-neutral gradient op (this is the one TensorFlow-specific place).

    Args:
        model: a classifier whose output is class probabilities (or logits).
        images: a batch of inputs as the model expects them.
        labels: integer class labels, shape ``(batch,)``.
        from_logits: ``True`` when the model outputs logits.

    Returns:
        A ``dict`` from convolution layer name to gradient norm, in the order of the layers
        (shortcut projections, whose names end in ``_0_conv``, are left out).
    """
    import tensorflow as tf

    convs = [
        layer
        for layer in model.layers
        if isinstance(layer, layers.Conv2D) and not layer.name.endswith("_0_conv")
    ]
    if not convs:
        raise ValueError(f"Model {model.name!r} has no Conv2D layer to measure.")
    kernels = [layer.kernel for layer in convs]
    images = keras.ops.convert_to_tensor(images, dtype="float32")
    labels = keras.ops.convert_to_tensor(labels, dtype="int32")
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=from_logits)
        )
    grads = tape.gradient(loss, [k.value for k in kernels])
    return {
        layer.name: float(keras.ops.convert_to_numpy(keras.ops.norm(keras.ops.reshape(g, (-1,)))))
        for layer, g in zip(convs, grads)
    }


def batch_order(num_examples, batch_size, steps, seed=0):
    """Indices of the examples of each step: shuffled epochs, the same for a given seed.

    Args:
        num_examples: size of the training set.
        batch_size: examples per step (at most ``num_examples``).
        steps: number of steps.
        seed: seed of the shuffling.

    Returns:
        An ``int`` array of shape ``(steps, batch_size)``.
    """
    if batch_size > num_examples:
        raise ValueError(
            f"batch_size={batch_size} is larger than the training set ({num_examples} examples)."
        )
    rng = np.random.default_rng(seed)
    per_epoch = num_examples // batch_size  # drop the ragged last batch
    epochs = -(-steps // per_epoch)
    order = np.concatenate(
        [rng.permutation(num_examples)[: per_epoch * batch_size] for _ in range(epochs)]
    )
    return order[: steps * batch_size].reshape(steps, batch_size)


def train_for_steps(model, images, labels, *, steps, batch_size, seed=0, progress=None):
    """Trains a compiled model for exactly ``steps`` steps on batches fixed by ``seed``.

    Every model trained with the same arguments sees the same batches in the same order,
    so the comparison of plain and residual nets differs only by the shortcuts.

    Args:
        model: a compiled ``keras.Model``.
        images: training inputs (NumPy array).
        labels: training labels (NumPy array).
        steps: number of optimisation steps.
        batch_size: examples per step.
        seed: seed of the batch order (see ``batch_order``).
        progress: optional callable ``progress(step, loss)`` called after every step.

    Returns:
        NumPy array of the training loss of each step (of the batch, before the update's
        effect: the loss that step's gradient was computed from).
    """
    build_optimizer(model)  # optimizer variables now, not while tracing the first step
    order = batch_order(len(images), batch_size, steps, seed)
    losses = np.empty(steps, dtype=np.float64)
    for step, idx in enumerate(order):
        logs = model.train_on_batch(images[idx], labels[idx], return_dict=True)
        losses[step] = logs["loss"]
        if progress is not None:
            progress(step, losses[step])
    return losses
