"""ResNet (He et al., 2016): the ImageNet networks of table 1 and the CIFAR nets of section 4.2.

Notebook 02 (``notebooks/02_resnet.ipynb``) uses this module. Reference: K. He, X. Zhang,
S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385).

The code follows ``keras.applications.resnet``: the blocks of ``resnet_blocks`` (small
functions on tensors) composed by a short top-level builder, every layer named, so that a
reader can put the two side by side:

- ``resnet(depth, ...)`` (and ``resnet18`` ... ``resnet152``): ResNet-18/34/50/101/152
  with width and input size parameters; ``resnet(50)`` has exactly the 25,636,712 parameters
  of ``keras.applications.ResNet50``.
- ``cifar_resnet(n, residual=...)``: the 6n+2-layer nets of the paper's section 4.2 and their
  "plain" counterparts (the same net without the shortcuts), for the degradation experiment.

Depth counting, gradient norms and the fixed-budget training loop of the notebook's
experiment live in ``classification.experiments``.
"""

from __future__ import annotations

import keras
from keras import layers

from bestiary_keras.classification.resnet_blocks import (
    BN_EPSILON,
    channel_axis,
    stack_residual_blocks,
)

__all__ = [
    "RESNET_CONFIGS",
    "cifar_resnet",
    "resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]

RESNET_CONFIGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
"""Depth -> (block type, blocks per stage), the paper's table 1."""


def _classifier_head(
    x, include_top, pooling, num_classes, classifier_activation, kernel_initializer="glorot_uniform"
):
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(
            num_classes, activation=classifier_activation, kernel_initializer=kernel_initializer,
            name="predictions",
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    if pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max'; got {pooling!r}.")
    return x


def resnet(
    depth=50,
    *,
    include_top=True,
    input_shape=(224, 224, 3),
    num_classes=1000,
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

    With the defaults, ``resnet(50)`` is layer for layer ``keras.applications.ResNet50(
    weights=None)`` (25,636,712 parameters, same layer names), and ``resnet(101)`` /
    ``resnet(152)`` match ``ResNet101`` / ``ResNet152``. ``use_bias=False`` gives the
    torchvision layout (11,689,512 trainable parameters for ResNet-18).

    Args:
        depth: one of 18, 34, 50, 101, 152.
        include_top: global average pooling and the ``num_classes``-way dense layer.
        input_shape: ``(height, width, channels)``; small sizes (e.g. 32x32) are fine.
        num_classes: number of classes of the top layer.
        width: filters of the stem and of the first stage (64 in the paper); the stages use
            ``width``, ``2 width``, ``4 width``, ``8 width`` (times 4 at the output of a
            bottleneck), so ``width=16`` is a 16x cheaper net that trains on a CPU.
        stem: ``"imagenet"`` (7x7/2 convolution and 3x3/2 max pooling, 4x downsampling) or
            ``"cifar"`` (one 3x3 convolution, no pooling: for 32x32 inputs).
        use_bias: biases in the convolutions.
        pooling: without the top: ``None``, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top layer (``None`` for logits).
        zero_init_residual: zero gamma in the last BN of every residual branch (two-layer
            blocks only).
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
    bn_axis = channel_axis()

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
        x, include_top, pooling, num_classes, classifier_activation, kernel_initializer
    )
    return keras.Model(inputs, x, name=name or f"resnet{depth}")


def resnet18(**kwargs):
    """ResNet-18 (basic blocks 2-2-2-2); keyword arguments as in ``resnet``."""
    return resnet(18, **kwargs)


def resnet34(**kwargs):
    """ResNet-34 (basic blocks 3-4-6-3); keyword arguments as in ``resnet``."""
    return resnet(34, **kwargs)


def resnet50(**kwargs):
    """ResNet-50 (bottlenecks 3-4-6-3), ``keras.applications.ResNet50(weights=None)``'s layers."""
    return resnet(50, **kwargs)


def resnet101(**kwargs):
    """ResNet-101 (bottlenecks 3-4-23-3); keyword arguments as in ``resnet``."""
    return resnet(101, **kwargs)


def resnet152(**kwargs):
    """ResNet-152 (bottlenecks 3-8-36-3); keyword arguments as in ``resnet``."""
    return resnet(152, **kwargs)


def cifar_resnet(
    n=1,
    *,
    residual=True,
    filters=(16, 32, 64),
    input_shape=(32, 32, 3),
    num_classes=10,
    shortcut="zero_pad",
    skip_span=2,
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
        num_classes: number of classes.
        shortcut: ``"zero_pad"`` (option A, parameter-free) or ``"projection"`` (option B)
            where the shape changes.
        skip_span: convolutions spanned by each shortcut: 2 (the paper's basic block) or 1
            (``single_layer_block``: ``y = ReLU(BN(W * x) + x)``, the one-layer residual that
            the paper's section 3.1 found no better than a linear layer). Same layers and
            parameters either way; only where the additions sit changes.
        use_bias: biases in the convolutions (redundant before BN; ``False``).
        classifier_activation: activation of the top layer (``None`` for logits).
        zero_init_residual: zero gamma in the last BN of every residual branch (two-layer
            blocks only).
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
    if skip_span not in (1, 2):
        raise ValueError(f"skip_span must be 1 or 2 (convolutions per shortcut); got {skip_span!r}.")
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(filters[0], 3, padding="same", use_bias=use_bias, name="conv1_conv")(inputs)
    x = layers.BatchNormalization(
        axis=channel_axis(), epsilon=BN_EPSILON, momentum=bn_momentum, name="conv1_bn"
    )(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for stage, stage_filters in enumerate(filters):
        x = stack_residual_blocks(
            x,
            stage_filters,
            int(n) * (3 - skip_span),  # 2n one-layer blocks or n two-layer blocks
            "basic" if skip_span == 2 else "single",
            stride1=1 if stage == 0 else 2,
            residual=residual,
            shortcut=shortcut,
            use_bias=use_bias,
            zero_init_residual=zero_init_residual,
            bn_momentum=bn_momentum,
            name=f"conv{stage + 2}",
        )
    x = _classifier_head(x, True, None, num_classes, classifier_activation)
    depth = 6 * int(n) + 2
    kind = ("resnet" if skip_span == 2 else "resnet1skip") if residual else "plain"
    return keras.Model(inputs, x, name=name or f"{kind}{depth}")
