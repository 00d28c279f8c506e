"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015): the configurations, the builders and the localisation loss.

- ``vgg(config, ...)`` builds configurations A, B, D, E of the paper's Table 1 (VGG-11/13/16/19)
  from one table, ``VGG_CONFIGS``; ``vgg16()`` / ``vgg19()`` have exactly the layers, names and
  parameter counts of ``keras.applications.VGG16`` / ``VGG19``. ``base_width``, ``fc_units`` and
  ``input_shape`` give the narrow, small-input variants trained in notebook 01.
- ``box_head=True`` adds the paper's per-class bounding-box regression layer ("PCR", Sec. 4.2
  of the localisation appendix) next to the soft-max; ``per_class_box_loss`` is its Euclidean loss.
- ``SHALLOW_INIT_LAYERS``: the layers of net A that initialise the deeper nets.

The paper's training and testing protocol (initialisation from net A, localisation targets and
optimiser, fully convolutional dense evaluation, the ILSVRC errors) is in
``classification.vgg_protocol``.

Localisation parameterisation (the slides' ``(dx, dy, w, h)``): for a box with centre
``(cx, cy)`` and size ``(bw, bh)`` seen through a square window of side ``S`` centred at
``(wx, wy)`` (the network input during training; each location's receptive window when the net
is applied densely), ``dx = (cx - wx) / S``, ``dy = (cy - wy) / S``, ``w = bw / S``,
``h = bh / S`` (``bestiary_keras.geometry.encode_window_boxes``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

__all__ = [
    "VGG_CONFIGS",
    "VGG_DEPTHS",
    "VGG_BLOCK_WIDTHS",
    "SHALLOW_INIT_LAYERS",
    "TOTAL_STRIDE",
    "configuration_table",
    "vgg_block",
    "vgg",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "preprocess",
    "per_class_box_loss",
]

VGG_CONFIGS = {
    "A": (1, 1, 2, 2, 2),
    "B": (2, 2, 2, 2, 2),
    "D": (2, 2, 3, 3, 3),
    "E": (2, 2, 4, 4, 4),
}
"""Number of 3x3 conv layers in each of the five blocks (Table 1 of the paper). Configuration C
(1x1 convolutions in blocks 3-5) and A-LRN are not built here."""

VGG_DEPTHS = {11: "A", 13: "B", 16: "D", 19: "E"}
"""Weight layers (convolutions + 3 FC) -> configuration letter."""

VGG_BLOCK_WIDTHS = (64, 128, 256, 512, 512)
"""Channels of the five blocks for ``base_width=64``; ``base_width`` scales them all."""

SHALLOW_INIT_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2",
                       "fc1", "fc2", "predictions")
"""The layers the paper initialises from the trained net A: its first four conv layers (which
are, by name and shape, the same layers in B, D and E) and the three FC layers."""

TOTAL_STRIDE = 32
"""Stride of the last feature map: five 2x2 max-poolings."""


def _check_config(config) -> str:
    if isinstance(config, (int, np.integer)):
        if int(config) not in VGG_DEPTHS:
            raise ValueError(
                f"config={config!r}: depth must be one of {sorted(VGG_DEPTHS)} "
                f"(or a letter of {sorted(VGG_CONFIGS)})."
            )
        return VGG_DEPTHS[int(config)]
    if config not in VGG_CONFIGS:
        raise ValueError(
            f"config={config!r}: expected one of {sorted(VGG_CONFIGS)} (Table 1 of the paper) "
            f"or a depth in {sorted(VGG_DEPTHS)}."
        )
    return config


def _block_widths(base_width: int) -> tuple[int, ...]:
    if int(base_width) < 1:
        raise ValueError(f"base_width={base_width!r} must be a positive integer (64 in the paper).")
    return tuple(max(1, w * int(base_width) // 64) for w in VGG_BLOCK_WIDTHS)


def configuration_table(configs="ABDE", *, base_width: int = 64, fc_units: int = 4096,
                        num_classes: int = 1000, input_size: int = 224) -> str:
    """The paper's Table 1 for the given configurations, as text (one column per config).

    Args:
        configs: letters of ``VGG_CONFIGS`` (e.g. ``"ABDE"``).
        base_width, fc_units, num_classes, input_size: print a narrow variant's table instead.

    Returns:
        The table as a string.
    """
    letters = [_check_config(c) for c in configs]
    widths = _block_widths(base_width)
    depth = {v: k for k, v in VGG_DEPTHS.items()}
    columns = []
    for letter in letters:
        rows = [f"{letter} (VGG-{depth[letter]})", f"{depth[letter]} weight layers"]
        for block, (num_convs, width) in enumerate(zip(VGG_CONFIGS[letter], widths), start=1):
            rows.append(f"-- block {block} --")
            rows += [f"conv3-{width}"] * num_convs
            rows += [""] * (max(VGG_CONFIGS[c][block - 1] for c in letters) - num_convs)
            rows.append("maxpool")
        rows += [f"FC-{fc_units}", f"FC-{fc_units}", f"FC-{num_classes}", "soft-max"]
        columns.append(rows)
    cell = max(len(r) for col in columns for r in col) + 2
    lines = [f"input ({input_size} x {input_size} RGB image)"]
    for row in zip(*columns):
        lines.append("".join(r.ljust(cell) for r in row).rstrip())
    return "\n".join(lines)


def vgg_block(x, filters: int, num_convs: int, block: int, *, kernel_initializer="glorot_uniform",
              kernel_regularizer=None):
    """``num_convs`` 3x3 convolutions (stride 1, 'same' padding, ReLU) and a 2x2 max-pooling.

    Layers are named ``block{block}_conv{i}`` and ``block{block}_pool`` as in keras.applications.
    """
    for i in range(1, num_convs + 1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                          kernel_initializer=kernel_initializer,
                          kernel_regularizer=kernel_regularizer,
                          name=f"block{block}_conv{i}")(x)
    return layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)


def vgg(config="D", *, input_shape=(224, 224, 3), num_classes: int = 1000, base_width: int = 64,
        fc_units: int = 4096, include_top: bool = True, box_head: bool = False,
        dropout: float = 0.0, weight_decay: float = 0.0, kernel_initializer="glorot_uniform",
        fc_initializer=None, classifier_activation="softmax",
        name: str | None = None) -> keras.Model:
    """Builds a VGG network from the configuration table.

    Args:
        config: ``"A"``, ``"B"``, ``"D"``, ``"E"`` or a depth ``11``, ``13``, ``16``, ``19``.
        input_shape: ``(height, width, 3)``; with ``include_top`` both sides must be multiples
            of 32 (five 2x2 poolings, so that ``fully_convolutional`` tiles windows exactly).
        num_classes: outputs of the soft-max layer ``predictions``.
        base_width: channels of block 1 (64 in the paper); blocks 2-5 have 2, 4, 8, 8 times that.
        fc_units: width of ``fc1`` and ``fc2`` (4096 in the paper).
        include_top: add ``flatten``, ``fc1``, ``fc2`` and ``predictions``; otherwise the model
            ends at ``block5_pool``.
        box_head: also output ``boxes``, a linear layer with ``4 * num_classes`` units: one
            ``(dx, dy, w, h)`` box per class (per-class regression). The model then returns
            ``{"predictions": ..., "boxes": ...}``.
        dropout: dropout rate after ``fc1`` and ``fc2`` (0.5 in the paper; 0 adds no layer).
        weight_decay: the paper's weight decay (5e-4). Applied as a ``kernel_regularizer``
            ``L2(weight_decay / 2)`` on every conv and FC kernel, so that the gradient gets
            ``weight_decay * w`` exactly as in Caffe (and before momentum, as in the paper).
        kernel_initializer: initialiser of the conv kernels (biases start at 0). Keras's
            default, Glorot uniform, like keras.applications; the paper used
            ``RandomNormal(0, 0.01)``; ``"he_normal"`` keeps the signal's scale through ReLUs.
        fc_initializer: initialiser of the FC kernels (``fc1``, ``fc2``, ``predictions``,
            ``boxes``); ``None`` uses ``kernel_initializer``.
        classifier_activation: activation of ``predictions`` (``"softmax"`` or ``None``).
        name: model name (default ``vgg{depth}``).

    Returns:
        A ``keras.Model``.
    """
    letter = _check_config(config)
    depth = {v: k for k, v in VGG_DEPTHS.items()}[letter]
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={input_shape!r} must be (height, width, channels).")
    height, width = input_shape[0], input_shape[1]
    if include_top and (height is None or width is None or height % TOTAL_STRIDE
                        or width % TOTAL_STRIDE or min(height, width) < TOTAL_STRIDE):
        def near(n):
            low = max(TOTAL_STRIDE, (n or 0) // TOTAL_STRIDE * TOTAL_STRIDE)
            return f"{low} or {low + TOTAL_STRIDE}" if n and n % TOTAL_STRIDE else f"{low}"
        raise ValueError(
            f"input_shape={tuple(input_shape)!r}: with include_top=True height and width must be "
            f"fixed multiples of 32 (five 2x2 poolings); nearest sizes: height {near(height)}, "
            f"width {near(width)}. Use include_top=False for other sizes."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be in [0, 1) (0.5 in the paper).")
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0 (5e-4 in the paper).")
    if num_classes < 1 or fc_units < 1:
        raise ValueError(f"num_classes={num_classes!r} and fc_units={fc_units!r} must be >= 1.")
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    conv_kwargs = dict(kernel_initializer=kernel_initializer, kernel_regularizer=regularizer)
    dense_kwargs = dict(kernel_initializer=fc_initializer or kernel_initializer,
                        kernel_regularizer=regularizer)

    inputs = keras.Input(shape=tuple(input_shape), name="input_layer")
    x = inputs
    for block, (num_convs, filters) in enumerate(zip(VGG_CONFIGS[letter],
                                                     _block_widths(base_width)), start=1):
        x = vgg_block(x, filters, num_convs, block, **conv_kwargs)
    name = name or f"vgg{depth}"
    if not include_top:
        return keras.Model(inputs, x, name=name)

    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(fc_units, activation="relu", name="fc1", **dense_kwargs)(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc1_dropout")(x)
    x = layers.Dense(fc_units, activation="relu", name="fc2", **dense_kwargs)(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc2_dropout")(x)
    predictions = layers.Dense(num_classes, activation=classifier_activation,
                               name="predictions", **dense_kwargs)(x)
    if not box_head:
        return keras.Model(inputs, predictions, name=name)
    boxes = layers.Dense(4 * num_classes, name="boxes", **dense_kwargs)(x)
    return keras.Model(inputs, {"predictions": predictions, "boxes": boxes}, name=name)


def vgg11(**kwargs) -> keras.Model:
    """VGG-11 (configuration A); keyword arguments as in ``vgg``."""
    return vgg("A", **kwargs)


def vgg13(**kwargs) -> keras.Model:
    """VGG-13 (configuration B); keyword arguments as in ``vgg``."""
    return vgg("B", **kwargs)


def vgg16(**kwargs) -> keras.Model:
    """VGG-16 (configuration D), same layers as ``keras.applications.VGG16(weights=None)``."""
    return vgg("D", **kwargs)


def vgg19(**kwargs) -> keras.Model:
    """VGG-19 (configuration E), same layers as ``keras.applications.VGG19(weights=None)``."""
    return vgg("E", **kwargs)


def preprocess(images, mean_rgb=None) -> np.ndarray:
    """The paper's only preprocessing, mean RGB subtraction, then a division by 255.

    Args:
        images: uint8 (or float in 0-255) images ``(..., 3)``.
        mean_rgb: the per-channel training-set mean (0-255); ``None`` uses 127.5.

    Returns:
        float32 images ``(images - mean_rgb) / 255`` (the division keeps Glorot-scaled
        weights in their intended range; the paper fed 0-255 values to std-0.01 weights).
    """
    mean = np.float32(127.5) if mean_rgb is None else np.asarray(mean_rgb, np.float32)
    return (np.asarray(images, np.float32) - mean) / np.float32(255.0)


def per_class_box_loss(y_true, y_pred):
    """Euclidean loss on the ground-truth class's box only (per-class regression).

    .. math::
        L_{box} = \\frac{1}{N} \\sum_{i=1}^{N} \\frac{1}{2}
        \\left\\lVert \\hat t_{i, c_i} - t_i \\right\\rVert_2^2

    where :math:`\\hat t_{i,c} \\in \\mathbb{R}^4` is the box ``(dx, dy, w, h)`` the network
    predicts for class :math:`c` on sample :math:`i`, :math:`c_i` the true class and
    :math:`t_i` the true box. The boxes of the other classes get no gradient. The factor 1/2 is
    Caffe's ``EuclideanLoss``, which the paper used. Samples with class ``-1`` (no object)
    contribute 0.

    Args:
        y_true: ``(N, 5)``: ``[class, dx, dy, w, h]`` (the class as a float).
        y_pred: ``(N, 4 * C)``: ``C`` boxes per sample, class-major (class 0's four numbers first).

    Returns:
        ``(N,)`` per-sample losses (Keras averages them over the batch: the :math:`1/N`).
    """
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    num_classes = y_pred.shape[-1] // 4
    labels = ops.cast(y_true[:, 0], "int32")
    targets = ops.cast(y_true[:, 1:5], y_pred.dtype)
    boxes = ops.reshape(y_pred, (-1, num_classes, 4))
    one_hot = ops.one_hot(ops.maximum(labels, 0), num_classes, dtype=y_pred.dtype)
    chosen = ops.sum(boxes * one_hot[:, :, None], axis=1)
    valid = ops.cast(labels >= 0, y_pred.dtype)
    return 0.5 * ops.sum(ops.square(chosen - targets), axis=-1) * valid
