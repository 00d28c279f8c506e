"""RefineNet (Lin, Milan, Shen and Reid, 2017): multi-path refinement of a residual encoder.

Notebook 10 (``notebooks/10_refinenet.ipynb``) uses this module. Reference: G. Lin, A. Milan,
C. Shen, I. Reid, "RefineNet: Multi-Path Refinement Networks for High-Resolution Semantic
Segmentation", CVPR 2017 (arXiv:1611.06612).

A residual encoder gives feature maps at four resolutions. A cascade of *RefineNet blocks* fuses
them from the coarsest to the finest; each block (the paper's figure 3) is

1. ``residual_conv_unit`` (RCU) x 2 on every input path: ReLU-conv-ReLU-conv plus the input;
2. ``multi_resolution_fusion``: a 3x3 convolution on every path, the coarser paths upsampled
   (bilinear) to the finest, then summed;
3. ``chained_residual_pooling`` (CRP): a *chain* of pooling blocks (5x5 max pooling with stride
   1, then a 3x3 convolution), each block taking the previous block's output, every block's
   output added to the running sum. (Several public ports apply the pooling blocks in parallel
   to the same input; ``tests/test_refinenet.py`` checks the chain.)
4. one more RCU on the output.

The paper uses ResNet-101 (features at 1/4 ... 1/32 of the input, output at 1/4, upsampled);
``refinenet`` builds the same cascade on a small residual encoder trained from scratch, whose
stem stride is a parameter so that 48-pixel images keep a 1/2-resolution finest path.
"""

from __future__ import annotations

import keras
from keras import layers

from bestiary_keras.segmentation.unet import check_channels_and_classes

__all__ = [
    "basic_residual_block",
    "chained_residual_pooling",
    "multi_resolution_fusion",
    "refine_block",
    "refinenet",
    "residual_conv_unit",
    "residual_encoder",
]


def residual_conv_unit(x, filters, *, batch_norm=False, name):
    """RCU: ``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions.

    The paper's RCU has no batch normalisation (it fine-tunes a pretrained ResNet);
    ``batch_norm=True`` adds one after each convolution, which helps a training from scratch.
    A 3x3 convolution first adapts ``x`` to ``filters`` channels when it has a different number.
    """
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_adapt")(x)
    y = x
    for i in (1, 2):
        y = layers.ReLU(name=f"{name}_relu{i}")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          name=f"{name}_conv{i}")(y)
        if batch_norm:
            y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def multi_resolution_fusion(inputs, filters, *, name):
    """3x3 convolution on every path, bilinear upsampling to the finest path, sum.

    Args:
        inputs: list of maps; their sizes must be integer multiples of each other.
        filters: channels of the fused map.

    Returns:
        The fused map at the largest resolution (a single input is returned unchanged).
    """
    if len(inputs) == 1:
        return inputs[0]
    height = max(int(x.shape[1]) for x in inputs)
    width = max(int(x.shape[2]) for x in inputs)
    paths = []
    for i, x in enumerate(inputs):
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{i + 1}")(x)
        factor_h, factor_w = height // int(x.shape[1]), width // int(x.shape[2])
        if factor_h * int(x.shape[1]) != height or factor_w * int(x.shape[2]) != width:
            raise ValueError(f"multi_resolution_fusion needs sizes that divide {height} x {width}; "
                             f"path {i + 1} is {x.shape[1]} x {x.shape[2]}.")
        if (factor_h, factor_w) != (1, 1):
            x = layers.UpSampling2D((factor_h, factor_w), interpolation="bilinear",
                                    name=f"{name}_upsample{i + 1}")(x)
        paths.append(x)
    return layers.Add(name=f"{name}_sum")(paths)


def chained_residual_pooling(x, filters, *, num_blocks=2, pool_size=5, name):
    """CRP: ``relu(x) + b1 + b2 + ...`` with ``b_k = conv(maxpool(b_{k-1}))``, ``b_0 = relu(x)``.

    The pooling blocks form a *chain*: each one pools the previous block's output, so the
    context grows with every block (5x5, 9x9, 13x13, ...), and every block's output is added.

    Args:
        x: the fused map (``filters`` channels).
        filters: channels of the block convolutions.
        num_blocks: pooling blocks in the chain (2 in the paper's figure).
        pool_size: max-pooling window (5, stride 1).

    Returns:
        A map of the same size as ``x``.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}.")
    x = layers.ReLU(name=f"{name}_relu")(x)
    total, path = x, x
    for i in range(1, num_blocks + 1):
        path = layers.MaxPooling2D(pool_size, strides=1, padding="same",
                                   name=f"{name}_pool{i}")(path)
        path = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                             name=f"{name}_conv{i}")(path)
        total = layers.Add(name=f"{name}_add{i}")([total, path])
    return total


def refine_block(inputs, filters, *, crp_blocks=2, batch_norm=False, name):
    """One RefineNet block: RCU x 2 per path, multi-resolution fusion, CRP, output RCU."""
    paths = []
    for i, x in enumerate(inputs):
        for j in (1, 2):
            x = residual_conv_unit(x, filters, batch_norm=batch_norm,
                                   name=f"{name}_path{i + 1}_rcu{j}")
        paths.append(x)
    x = multi_resolution_fusion(paths, filters, name=f"{name}_fusion")
    x = chained_residual_pooling(x, filters, num_blocks=crp_blocks, name=f"{name}_crp")
    return residual_conv_unit(x, filters, batch_norm=batch_norm, name=f"{name}_output_rcu")


def basic_residual_block(x, filters, *, stride=1, name):
    """ResNet's basic block: two 3x3 conv + BN, ReLU; projection shortcut when the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{name}_project")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=f"{name}_project_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def residual_encoder(x, filters=(16, 32, 64, 128), blocks=(1, 1, 1, 1), *, stem_stride=2):
    """A small ResNet: a 3x3 stem with ``stem_stride``, then one stage per entry of ``filters``.

    Returns:
        The outputs of the stages, finest first (strides ``stem_stride`` x 1, 2, 4, 8).
    """
    x = layers.Conv2D(filters[0], 3, strides=stem_stride, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    features = []
    for stage, (width, count) in enumerate(zip(filters, blocks), start=1):
        for block in range(1, count + 1):
            stride = 2 if (block == 1 and stage > 1) else 1
            x = basic_residual_block(x, width, stride=stride, name=f"stage{stage}_block{block}")
        features.append(x)
    return features


def refinenet(
    input_shape=(48, 48, 3),
    num_classes: int = 5,
    *,
    encoder_filters=(16, 32, 64, 128),
    encoder_blocks=(1, 1, 1, 1),
    refine_filters=(32, 32, 32, 64),
    stem_stride: int = 2,
    crp_blocks: int = 2,
    batch_norm: bool = False,
    output_activation: str | None = "softmax",
    name: str = "refinenet",
) -> keras.Model:
    """4-cascaded RefineNet on a residual encoder.

    ``RefineNet-4`` refines the coarsest encoder map alone, ``RefineNet-3`` fuses its output with
    the next finer encoder map, and so on; the finest block's output goes through two more RCUs
    and a 1x1 classifier (initialised to zero), and is upsampled bilinearly by ``stem_stride`` to the input size.

    Args:
        input_shape: (height, width, channels); height and width divisible by
            ``stem_stride * 2 ** (len(encoder_filters) - 1)``.
        num_classes: output channels.
        encoder_filters, encoder_blocks: widths and basic blocks per encoder stage.
        refine_filters: channels of the RefineNet blocks, finest first (the paper: 256 and 512
            for the coarsest).
        stem_stride: stride of the encoder's stem (4 in ResNet; 2 for small images).
        crp_blocks: pooling blocks in each chained residual pooling.
        batch_norm: batch normalisation in the RCUs (not in the paper; see
            ``residual_conv_unit``).
        output_activation: ``"softmax"`` or ``None``.
        name: the model's name.

    Returns:
        A ``keras.Model`` from (batch, H, W, C) images to (batch, H, W, num_classes).
    """
    encoder_filters, refine_filters = tuple(encoder_filters), tuple(refine_filters)
    if not (len(encoder_filters) == len(encoder_blocks) == len(refine_filters)):
        raise ValueError(f"encoder_filters {encoder_filters}, encoder_blocks {encoder_blocks} and "
                         f"refine_filters {refine_filters} need one entry per encoder stage.")
    if int(stem_stride) != stem_stride or stem_stride < 1:
        raise ValueError(f"stem_stride must be an int >= 1 (4 in ResNet, 2 for small images, 1 for "
                         f"no downsampling in the stem), got stem_stride={stem_stride!r}.")
    factor = stem_stride * 2 ** (len(encoder_filters) - 1)
    if len(input_shape) != 3 or any(s is None or s % factor for s in input_shape[:2]):
        raise ValueError(f"input height and width must be known and divisible by {factor} "
                         f"(stem stride x 2 ** (stages - 1)), got input_shape {input_shape!r}.")
    check_channels_and_classes(input_shape, num_classes)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    features = residual_encoder(inputs, encoder_filters, encoder_blocks, stem_stride=stem_stride)
    x = None
    for level in range(len(features), 0, -1):  # coarsest first: RefineNet-4, -3, -2, -1
        paths = [features[level - 1]] if x is None else [features[level - 1], x]
        x = refine_block(paths, refine_filters[level - 1], crp_blocks=crp_blocks,
                         batch_norm=batch_norm, name=f"refine{level}")
    for j in (1, 2):
        x = residual_conv_unit(x, refine_filters[0], batch_norm=batch_norm, name=f"head_rcu{j}")
    # Zero-initialised classifier: the logits start at 0 (uniform probabilities) instead of the
    # large spread that the unnormalised residual and fusion sums give; trains much faster.
    x = layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="classifier")(x)
    if stem_stride > 1:
        x = layers.UpSampling2D(stem_stride, interpolation="bilinear", name="upsample")(x)
    if output_activation is not None:
        x = layers.Activation(output_activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, x, name=name)
