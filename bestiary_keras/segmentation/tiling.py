"""The overlap-tile strategy of the U-Net paper (its figure 2).

A valid-convolution U-Net maps an input tile to a smaller output tile: every output pixel sees
a context of ``margin = (input_size - output_size) / 2`` pixels on each side. To segment an image
of any size, the paper

1. extends the image by mirroring (``numpy.pad(..., mode="reflect")``) so that the pixels at
   the border also get their context,
2. cuts input tiles whose *output* regions lie side by side and cover the image,
3. predicts every tile and puts the output regions together.

One subtlety the paper's figure does not show: a max pooling groups pixels in pairs, so a
network with ``depth`` poolings only commutes with shifts by multiples of ``2**depth`` pixels.
``tile_layout`` therefore steps the tiles by the largest multiple of ``2**depth`` that fits in
the output size (for the paper's 388 px output: 384 px, tiles overlap by 4 px); then the tiled
prediction equals the prediction of one big tile over the whole (mirrored) image, up to float
round-off.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

__all__ = [
    "center_crop", "predict_tiled", "tile_layout", "TileLayout",
]


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """Where the tiles of an image go.

    Attributes:
        image_shape: (height, width) of the image.
        input_size, output_size: the network's tile sizes.
        margin: context pixels on each side, ``(input_size - output_size) // 2``.
        stride: distance between neighbouring tiles (a multiple of ``2**depth``).
        offsets: list of (y, x): top-left corner of each tile's *output* region in the image; the
            tile's *input* region starts at (y - margin, x - margin).
        padding: ((top, bottom), (left, right)) mirrored pixels added around the image.
    """

    image_shape: tuple
    input_size: int
    output_size: int
    margin: int
    stride: int
    offsets: list
    padding: tuple


def _starts(length, output_size, stride):
    count = 1 if length <= output_size else math.ceil((length - output_size) / stride) + 1
    return [i * stride for i in range(count)]


def tile_layout(image_shape, input_size: int, output_size: int, depth: int) -> TileLayout:
    """Plans the overlap-tile prediction of an image of ``image_shape``.

    Args:
        image_shape: (height, width, ...) of the image.
        input_size: the network's input tile size (e.g. 572).
        output_size: its output tile size (e.g. 388).
        depth: its number of 2x2 poolings.

    Returns:
        A ``TileLayout``.
    """
    if (input_size - output_size) % 2 or input_size < output_size:
        raise ValueError(f"input_size {input_size} and output_size {output_size} must differ by an "
                         "even, non-negative number of pixels (a symmetric margin).")
    step = 2**depth
    stride = output_size - output_size % step
    if stride <= 0:
        raise ValueError(f"output_size {output_size} is smaller than 2**depth = {step}: the tiles "
                         "cannot be shifted by whole pooling cells; use a larger input tile.")
    height, width = int(image_shape[0]), int(image_shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"image_shape {image_shape!r} must have a positive height and width.")
    margin = (input_size - output_size) // 2
    ys, xs = _starts(height, output_size, stride), _starts(width, output_size, stride)
    padding = ((margin, margin + ys[-1] + output_size - height),
               (margin, margin + xs[-1] + output_size - width))
    offsets = [(y, x) for y in ys for x in xs]
    return TileLayout((height, width), int(input_size), int(output_size), margin, stride, offsets,
                      padding)


def _model_sizes(model):
    input_size, output_size = model.input_shape[1], model.output_shape[1]
    if input_size is None or output_size is None:
        raise ValueError("predict_tiled needs a model with a fixed input size (the tile size).")
    if model.input_shape[1] != model.input_shape[2] or model.output_shape[1] != model.output_shape[2]:
        raise ValueError(f"predict_tiled expects square tiles, got input {model.input_shape} and "
                         f"output {model.output_shape}.")
    depth = sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    return int(input_size), int(output_size), depth


def predict_tiled(model, image, *, batch_size: int = 16, layout: TileLayout | None = None):
    """Predicts an image of any size with a valid-convolution U-Net by mirrored overlap-tiles.

    Args:
        model: a U-Net with a fixed square input tile (e.g. ``unet((92, 92, 1), depth=2)``).
        image: (H, W) or (H, W, C) array.
        batch_size: tiles per forward pass.
        layout: a ``TileLayout`` (default: ``tile_layout`` for this model and image).

    Returns:
        float32 (H, W, num_classes): the network's output for every pixel of the image.
    """
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}.")
    input_size, output_size, depth = _model_sizes(model)
    if layout is None:
        layout = tile_layout(image.shape, input_size, output_size, depth)
    padded = np.pad(image, layout.padding + ((0, 0),), mode="reflect")
    tiles = np.stack([padded[y:y + input_size, x:x + input_size] for y, x in layout.offsets])
    outputs = []
    for start in range(0, len(tiles), batch_size):
        outputs.append(keras.ops.convert_to_numpy(model(tiles[start:start + batch_size],
                                                        training=False)))
    outputs = np.concatenate(outputs)
    height, width = layout.image_shape
    (_, bottom), (_, right) = layout.padding
    full = np.zeros((height + bottom - layout.margin, width + right - layout.margin,
                     outputs.shape[-1]), np.float32)
    for (y, x), out in zip(layout.offsets, outputs):
        full[y:y + output_size, x:x + output_size] = out
    return full[:height, :width]


def center_crop(array, size, *, axes=(-2, -1)):
    """The central ``size x size`` window of ``array`` along two ``axes``.

    A valid-convolution U-Net's output covers the centre of its input tile, so training labels
    are cropped like this (e.g. 92 x 92 images, 52 x 52 labels: 20 pixels off each side).

    Args:
        array: an array with at least two dimensions.
        size: the output height and width (int or (height, width)).
        axes: the two spatial axes (``(-2, -1)`` for (N, H, W) labels, ``(1, 2)`` for
            (N, H, W, C) images).

    Returns:
        A view of ``array``.
    """
    array = np.asarray(array)
    sizes = (size, size) if np.isscalar(size) else tuple(size)
    index = [slice(None)] * array.ndim
    for axis, new in zip(axes, sizes):
        old = array.shape[axis]
        if new > old or (old - new) % 2:
            raise ValueError(f"Cannot centre-crop axis {axis} of size {old} to {new}: the size "
                             "must not grow and the difference must be even.")
        start = (old - new) // 2
        index[axis] = slice(start, start + new)
    return array[tuple(index)]
