"""U-Net (Ronneberger, Fischer and Brox, 2015): the paper's valid-convolution network.

Notebook 08 (``notebooks/08_unet.ipynb``) uses this module. Reference: O. Ronneberger,
P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
MICCAI 2015 (arXiv:1505.04597).

The paper's network (its figure 1) is ``unet()`` with the defaults: a contracting path of
``depth = 4`` steps (two unpadded 3x3 convolutions with ReLU, then 2x2 max pooling, doubling
the channels from 64), a bottom block with 1024 channels, an expanding path of 2x2
up-convolutions that halve the channels, each followed by the concatenation with the
*cropped* feature map of the contracting path and two 3x3 convolutions, and a final 1x1
convolution to the classes: 23 convolutional layers, 31,030,658 parameters, a 572x572 input
tile gives a 388x388 output map.

``padding="same"`` builds a padded variant of that network (same layers and weights): the maps
keep their size, a skip connection is cropped only where a pooling floored an odd size, and
``ZeroPadding2D`` at the end gives the output the input's size.

``unet_upsampling()`` builds the slides' snippet (the widely copied Keras U-Net of
zizhaozhang/unet-tensorflow-keras): padded convolutions, ``UpSampling2D`` (no weights, the
channels kept) instead of the 2x2 up-convolution, every skip cropped by ``Cropping2D`` to the
size that ``get_crop_shape`` computes, the last map zero-padded back to the input size, 32
filters in the first level.

Valid convolutions shrink every map by 2 pixels per convolution and every 2x2 pooling needs an
even size, so only some input sizes work; ``unet_output_size``, ``valid_input_sizes`` and
``nearest_valid_input_sizes`` say which, and the builder refuses the others with a
``ValueError`` that names the nearest valid sizes.
"""

from __future__ import annotations

import keras
from keras import layers

__all__ = [
    "PADDINGS",
    "check_channels_and_classes",
    "count_conv_layers",
    "crop_shape",
    "double_conv",
    "get_crop_shape",
    "nearest_valid_input_sizes",
    "unet",
    "unet_output_size",
    "up_block",
    "upsampling_up_block",
    "unet_upsampling",
    "valid_input_sizes",
]

PADDINGS = ("valid", "same")


def _check_depth(depth):
    if int(depth) != depth or depth < 1:
        raise ValueError(f"depth must be a positive integer (number of poolings), got {depth!r}.")
    return int(depth)


def check_channels_and_classes(input_shape, num_classes) -> None:
    """Refuses a ``(height, width, channels)`` input without channels and ``num_classes < 1``.

    Shared by the builders of this family (``unet``, ``segnet``, ``refinenet``), which would
    otherwise build a model without input channels or fail inside Keras ("filters=0").
    """
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(
            f"num_classes must be an int >= 1 (the output channels, background included: 2 "
            f"for cell / background), got num_classes={num_classes!r}."
        )
    channels = input_shape[-1]
    if channels is None or int(channels) != channels or channels < 1:
        raise ValueError(
            f"input_shape must end with the number of image channels, an int >= 1 (1 for grey, "
            f"3 for colour images), got input_shape={tuple(input_shape)!r}."
        )


def unet_output_size(input_size: int, depth: int = 4, padding: str = "valid") -> int | None:
    """Output height (or width) of a U-Net for an input of ``input_size`` pixels.

    Args:
        input_size: input height or width in pixels.
        depth: number of 2x2 poolings (4 in the paper).
        padding: ``"valid"`` (the paper) or ``"same"`` (output size = input size).

    Returns:
        The output size, or ``None`` when a valid-convolution U-Net cannot take that size (a map
        shrinks to nothing or a pooling meets an odd size).
    """
    depth = _check_depth(depth)
    if padding == "same":
        return int(input_size) if input_size >= 2**depth else None
    size = int(input_size)
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size <= 0 or size % 2:
            return None
        size //= 2  # 2x2 max pooling
    size -= 4
    if size <= 0:
        return None
    for _ in range(depth):
        size = 2 * size - 4  # 2x2 up-convolution, then two unpadded 3x3 convolutions
    return size if size > 0 else None


def valid_input_sizes(depth: int = 4, *, max_size: int = 1024) -> list[int]:
    """All input sizes up to ``max_size`` that a valid-convolution U-Net of ``depth`` accepts.

    For ``depth = 4`` these are 188, 204, ..., 572, ... (steps of ``2**depth``); for ``depth = 2``
    they are 28, 32, ..., 92, ... (steps of 4).
    """
    depth = _check_depth(depth)
    return [s for s in range(1, int(max_size) + 1) if unet_output_size(s, depth) is not None]


def nearest_valid_input_sizes(size: int, depth: int = 4) -> tuple[int | None, int]:
    """The valid input sizes just below and just above ``size`` (``size`` itself if valid).

    Returns:
        ``(lower, upper)``; ``lower`` is ``None`` when no smaller size works.
    """
    depth = _check_depth(depth)
    size = int(size)
    if unet_output_size(size, depth) is not None:
        return size, size
    lower = next((s for s in range(size - 1, 0, -1) if unet_output_size(s, depth)), None)
    upper = next(s for s in range(size + 1, size + 2 ** (depth + 2) + 200)
                 if unet_output_size(s, depth))
    return lower, upper


def crop_shape(target_shape, reference_shape):
    """Cropping for ``Cropping2D`` so that ``target`` gets the height and width of ``reference``.

    This is the "crop-shape helper" of the slides' snippet (and of many public Keras U-Nets),
    on static shapes. The extra pixel of an odd difference is cropped at the bottom/right.

    Args:
        target_shape: shape of the larger map, (batch, height, width, channels) or (h, w, ...).
        reference_shape: shape of the map whose size the result must have.

    Returns:
        ``((top, bottom), (left, right))``.
    """
    if len(target_shape) == 4:
        target_shape, reference_shape = target_shape[1:3], reference_shape[1:3]
    crops = []
    for axis, (big, small) in enumerate(zip(target_shape[:2], reference_shape[:2])):
        if big is None or small is None:
            raise ValueError("crop_shape needs static heights and widths; build the U-Net with a "
                             f"fixed input_shape, got sizes {big} and {small}.")
        if big < small:
            raise ValueError(f"Cannot crop a map of size {big} to the larger size {small} "
                             f"(axis {axis}).")
        difference = big - small
        crops.append((difference // 2, difference - difference // 2))
    return tuple(crops)


def get_crop_shape(target, refer):
    """The slides' helper: the ``Cropping2D`` cropping that gives ``target`` the size of ``refer``.

    The snippet's ``get_crop_shape(target, refer)`` on Keras tensors (or shapes), returning
    ``((top, bottom), (left, right))``: half the difference on each side, the odd pixel at the
    bottom/right (``crop_shape`` does the arithmetic). E.g. a 143-pixel skip and a 140-pixel
    up-sampled map: ``(1, 2)``.
    """
    target_shape = tuple(getattr(target, "shape", target))
    refer_shape = tuple(getattr(refer, "shape", refer))
    return crop_shape(target_shape, refer_shape)


def double_conv(x, filters, *, padding="valid", batch_norm=False, name):
    """Two 3x3 convolutions, each followed by a ReLU (optionally batch norm before the ReLU)."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def up_block(x, skip, filters, *, padding="valid", batch_norm=False, name):
    """One step of the expanding path: 2x2 up-convolution, crop the skip, concatenate, convolve.

    Args:
        x: the coarser map coming up the expanding path.
        skip: the feature map of the contracting path at this resolution.
        filters: channels after the up-convolution (half those of ``x`` in the paper).

    Returns:
        The output of the two 3x3 convolutions.
    """
    x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal",
                               name=f"{name}_upconv")(x)
    skip = layers.Cropping2D(crop_shape(skip.shape, x.shape), name=f"{name}_crop")(skip)
    x = layers.Concatenate(name=f"{name}_concat")([skip, x])
    return double_conv(x, filters, padding=padding, batch_norm=batch_norm, name=name)


def upsampling_up_block(x, skip, filters, *, name):
    """One step of the slides' expanding path: ``UpSampling2D``, ``Cropping2D`` of the skip by
    ``get_crop_shape``, concatenation ``[up, skip]``, two padded 3x3 convolutions with ReLU.

    Unlike ``up_block`` the up-sampling has no weights and keeps all channels of ``x``.
    """
    up = layers.UpSampling2D(2, name=f"{name}_upsample")(x)
    skip = layers.Cropping2D(get_crop_shape(skip, up), name=f"{name}_crop")(skip)
    x = layers.Concatenate(name=f"{name}_concat")([up, skip])
    return double_conv(x, filters, padding="same", name=name)


def _check_shape_classes_filters(input_shape, num_classes, filters) -> None:
    """The argument checks that both U-Net builders share (a clear ``ValueError`` each)."""
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    check_channels_and_classes(input_shape, num_classes)
    if int(filters) != filters or filters < 1:
        raise ValueError(f"filters must be a positive integer, got {filters!r}.")


def unet_upsampling(
    input_shape=(572, 572, 1),
    num_classes: int = 2,
    *,
    depth: int = 4,
    filters: int = 32,
    output_activation: str | None = "softmax",
    name: str = "unet_upsampling",
) -> keras.Model:
    """The slides' U-Net snippet: same padding, ``UpSampling2D`` and ``Cropping2D`` skips.

    Contracting path as in ``unet(padding="same")`` (two padded 3x3 convolutions with ReLU,
    2x2 max pooling; the channels double from ``filters``); each step up is
    ``upsampling_up_block``: nearest-neighbour ``UpSampling2D`` of the whole map, the skip
    cropped to its size (a pooling floors odd sizes, so the up-sampled map can be a few pixels
    smaller: ``get_crop_shape``), concatenated and convolved. The last map is zero-padded back
    to the input size (the snippet's ``ZeroPadding2D`` after ``get_crop_shape(inputs, conv9)``)
    before the 1x1 classifier.

    Args:
        input_shape: (height, width, channels), each side at least ``2**depth``.
        num_classes: channels of the 1x1 classifier.
        depth: number of poolings (4 in the snippet).
        filters: channels of the first level (32 in the snippet).
        output_activation: ``"softmax"`` or ``None`` (logits, as the snippet ends).
        name: the model's name.

    Returns:
        A ``keras.Model`` from (batch, H, W, C) to (batch, H, W, num_classes).
    """
    depth = _check_depth(depth)
    _check_shape_classes_filters(input_shape, num_classes, filters)
    for axis, size in zip(("height", "width"), input_shape[:2]):
        if size is None or size < 2**depth:
            raise ValueError(f"input {axis} must be a fixed size >= 2**depth = {2**depth} (the "
                             f"skips are cropped to static sizes), got {size!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = double_conv(x, filters * 2**level, padding="same", name=f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = double_conv(x, filters * 2**depth, padding="same", name="bottom")
    for level in reversed(range(depth)):
        x = upsampling_up_block(x, skips[level], filters * 2**level, name=f"up{level + 1}")
    pad = get_crop_shape(inputs, x)
    if pad != ((0, 0), (0, 0)):
        x = layers.ZeroPadding2D(pad, name="pad_to_input")(x)
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    if output_activation is not None:
        x = layers.Activation(output_activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, x, name=name)


def unet(
    input_shape=(572, 572, 1),
    num_classes: int = 2,
    *,
    depth: int = 4,
    filters: int = 64,
    padding: str = "valid",
    batch_norm: bool = False,
    output_activation: str | None = "softmax",
    name: str = "unet",
) -> keras.Model:
    """The U-Net of the paper (defaults) or a smaller one (``depth``, ``filters``).

    Args:
        input_shape: (height, width, channels). With ``padding="valid"`` height and width must
            be sizes that the network can tile (see ``valid_input_sizes``); 572 in the paper.
        num_classes: channels of the final 1x1 convolution (2 in the paper).
        depth: number of 2x2 max poolings (4 in the paper).
        filters: channels of the first level (64 in the paper), doubled at every pooling.
        padding: ``"valid"`` (the paper: unpadded convolutions, cropped skip connections) or
            ``"same"`` (padded convolutions, output as large as the input; the slides' snippet,
            with ``UpSampling2D``, is ``unet_upsampling``).
        batch_norm: add batch normalisation after each convolution (not in the 2015 paper).
        output_activation: ``"softmax"`` (the paper's pixel-wise soft-max) or ``None`` (logits).
        name: the model's name.

    Returns:
        A ``keras.Model`` mapping (batch, H, W, C) images to (batch, H', W', num_classes) maps,
        H' = ``unet_output_size(H, depth, padding)``.
    """
    depth = _check_depth(depth)
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}.")
    _check_shape_classes_filters(input_shape, num_classes, filters)
    for axis, size in zip(("height", "width"), input_shape[:2]):
        if size is None:
            raise ValueError(f"input_shape needs a fixed {axis} (the skip connections are cropped "
                             "to static sizes); build one model per tile size.")
        if unet_output_size(size, depth, padding) is None:
            if padding == "same":
                raise ValueError(f"input {axis} {size} is smaller than 2**depth = {2**depth}.")
            lower, upper = nearest_valid_input_sizes(size, depth)
            sizes = f"{lower} or {upper}" if lower else f"{upper}"
            raise ValueError(
                f"input {axis} {size} cannot be tiled by a valid-convolution U-Net of depth "
                f"{depth}: every 2x2 max pooling needs an even size and the maps must not shrink "
                f"to nothing. The nearest valid sizes are {sizes} (see valid_input_sizes(depth))."
            )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = double_conv(x, filters * 2**level, padding=padding, batch_norm=batch_norm,
                        name=f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = double_conv(x, filters * 2**depth, padding=padding, batch_norm=batch_norm, name="bottom")
    for level in reversed(range(depth)):
        x = up_block(x, skips[level], filters * 2**level, padding=padding, batch_norm=batch_norm,
                     name=f"up{level + 1}")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    if padding == "same" and tuple(x.shape[1:3]) != tuple(input_shape[:2]):
        # As the slides' snippet does: pad the output back to the input size.
        pad = crop_shape(input_shape[:2], x.shape[1:3])
        x = layers.ZeroPadding2D(pad, name="pad_to_input")(x)
    if output_activation is not None:
        x = layers.Activation(output_activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, x, name=name)


def count_conv_layers(model) -> int:
    """Convolutional layers (3x3, up-convolutions and the 1x1 classifier), as the paper counts."""
    return sum(isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)) for layer in model.layers)
