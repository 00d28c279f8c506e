"""The conv body shared by the two-stage detectors (R-CNN, Fast, Faster and Mask R-CNN).

``vgg_backbone`` is a small VGG-like body (the papers use VGG16): chapter 03's R-CNN and
chapter 04's Fast R-CNN take it from here, so no chapter depends on another's module.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = ["square_image_size", "vgg_backbone"]


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
