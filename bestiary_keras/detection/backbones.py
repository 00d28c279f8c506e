"""The detectors' conv bodies, so that no chapter takes its backbone from another's module.

- ``vgg_backbone``: a small VGG-like body (the papers use VGG16) for R-CNN, Fast, Faster and
  Mask R-CNN (notebooks 03, 04, 05, 11).
- ``conv_block``, ``yolo_backbone``: YOLO's convolutional trunk (notebook 06) and its block;
  ``darknet_backbone``: YOLOv2's Darknet-19, scaled down (notebook 07).
- ``square_image_size``: the input check of the builders of square-image detectors.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = [
    "square_image_size",
    "vgg_backbone",
    "conv_block",
    "yolo_backbone",
    "darknet_backbone",
]


def vgg_backbone(input_shape=(64, 64, 3), *, widths=(16, 32, 64, 128),
                 convs_per_stage=(1, 1, 2, 2), name="backbone") -> keras.Model:
    """A small VGG-like conv body: stages of 3x3 conv + BN + ReLU with 2x2 max pooling between
    them, so ``S`` stages give stride ``2 ** (S - 1)`` (four: a 64x64 image -> an 8x8 map).

    Args:
        input_shape: ``(H, W, 3)`` of images in [0, 255] (rescaled inside).
        widths: channels of each stage.
        convs_per_stage: 3x3 convolutions of each stage (an int: the same for all).
        name: model name.

    Returns:
        A ``keras.Model`` image -> ``(H / s, W / s, widths[-1])`` feature map.
    """
    if not widths:
        raise ValueError("widths must name at least one stage, e.g. widths=(16, 32, 64, 128).")
    if isinstance(convs_per_stage, int):
        convs_per_stage = (convs_per_stage,) * len(widths)
    if len(convs_per_stage) != len(widths) or min(convs_per_stage) < 1:
        raise ValueError(
            f"convs_per_stage={convs_per_stage!r} must give a positive count for each of the "
            f"{len(widths)} stages of widths={widths!r}."
        )
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for s, (width, convs) in enumerate(zip(widths, convs_per_stage), start=1):
        if s > 1:
            x = layers.MaxPooling2D(2, name=f"block{s - 1}_pool")(x)
        for c in range(1, convs + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{s}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"block{s}_bn{c}")(x)
            x = layers.ReLU(name=f"block{s}_relu{c}")(x)
    return keras.Model(inputs, x, name=name)


def square_image_size(input_shape) -> int:
    """The side ``S`` of the square RGB images ``(S, S, 3)`` a detector builder takes.

    The detectors of this chapter work on square images; a ValueError names the fix otherwise.
    """
    try:
        height, width, channels = input_shape
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}; "
                         "e.g. input_shape=(64, 64, 3).") from None
    if height is None or height != width or int(height) != height or height < 1 or channels != 3:
        raise ValueError(f"input_shape must be square RGB images (S, S, 3), got {input_shape!r}; "
                         "e.g. input_shape=(64, 64, 3).")
    return int(height)


def conv_block(x, filters: int, kernel_size: int = 3, *, batch_norm: bool = False, name: str):
    """Convolution, optional batch norm, leaky ReLU (slope 0.1), as in YOLO and Darknet.

    With batch norm the convolution has no bias (the norm's offset replaces it).
    """
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batch_norm,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky")(x)


def yolo_backbone(widths=(16, 32, 64, 128), *, num_pools: int = 3, batch_norm: bool = False,
                  name: str = "backbone") -> keras.Model:
    """The convolutional trunk of our YOLO: ``len(widths)`` 3x3 conv blocks, a 2x2 max pooling
    after each of the first ``num_pools``.

    Fully convolutional (input ``(None, None, 3)``), so the same weights can be pre-trained as a
    classifier at one resolution and used by the detector at another (YOLOv2's
    high-resolution classifier, notebook 07).

    Args:
        widths: filters of each conv block.
        num_pools: poolings (the output stride is ``2 ** num_pools``); at most ``len(widths)``.
        batch_norm: batch normalisation after every convolution (YOLOv2's first step).
        name: model name, also the prefix of its layers.

    Returns:
        A ``keras.Model`` from images ``(N, H, W, 3)`` (pixel values in [0, 255], rescaled to
        [-1, 1] by its first layer) to features
        ``(N, H / 2**num_pools, W / 2**num_pools, widths[-1])``.
    """
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}.")
    if not 0 <= num_pools <= len(widths):
        raise ValueError(
            f"num_pools={num_pools} must be between 0 and len(widths)={len(widths)} (one pooling "
            "after each of the first num_pools blocks)."
        )
    inputs = keras.Input((None, None, 3), name=f"{name}_image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_rescale")(inputs)  # [0, 255] -> [-1, 1]
    for i, width in enumerate(widths):
        x = conv_block(x, width, 3, batch_norm=batch_norm, name=f"{name}_block{i + 1}")
        if i < num_pools:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{i + 1}")(x)
    return keras.Model(inputs, x, name=name)


def darknet_backbone(widths=(16, 32, 48, 96), *, name: str = "darknet") -> keras.Model:
    """Darknet-19's design at our scale: stride 8, batch norm everywhere, 1x1 bottlenecks.

    Like Darknet-19 (Table 6 of the paper), mostly 3x3 convolutions whose channels double after
    each 2x2 max pooling, with 1x1 convolutions compressing the features between the 3x3 ones
    from the third stage on::

        3x3 w0 | pool | 3x3 w1 | pool | 3x3 w2, 1x1 w2/2, 3x3 w2 | pool | 3x3 w3, 1x1 w3/2, 3x3 w3

    Args:
        widths: the four stages' widths.
        name: model name and layer prefix.

    Returns:
        A ``keras.Model`` from images ``(N, H, W, 3)`` (pixel values in [0, 255]) to
        ``[fine, coarse]``: the last stride-4 features ``(N, H/4, W/4, w2)`` (the passthrough
        layer's input) and the stride-8 features ``(N, H/8, W/8, w3)``.
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) != 4 or min(widths) < 2:
        raise ValueError(f"widths must be 4 ints >= 2 (one per stage), got {widths!r}.")
    inputs = keras.Input((None, None, 3), name=f"{name}_image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_rescale")(inputs)
    x = conv_block(x, widths[0], 3, batch_norm=True, name=f"{name}_stage1_conv1")
    x = layers.MaxPooling2D(2, name=f"{name}_pool1")(x)
    x = conv_block(x, widths[1], 3, batch_norm=True, name=f"{name}_stage2_conv1")
    x = layers.MaxPooling2D(2, name=f"{name}_pool2")(x)
    for stage, width in ((3, widths[2]), (4, widths[3])):
        x = conv_block(x, width, 3, batch_norm=True, name=f"{name}_stage{stage}_conv1")
        x = conv_block(x, width // 2, 1, batch_norm=True, name=f"{name}_stage{stage}_conv2")
        x = conv_block(x, width, 3, batch_norm=True, name=f"{name}_stage{stage}_conv3")
        if stage == 3:
            fine = x
            x = layers.MaxPooling2D(2, name=f"{name}_pool3")(x)
    return keras.Model(inputs, [fine, x], name=name)
