"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015): builders, localisation loss, the slide's training and testing tricks.

- ``build_vgg(config, ...)`` builds configurations A, B, D, E of the paper's Table 1 (VGG-11/13/16/19)
  from one table, ``VGG_CONFIGS``; ``vgg16()`` / ``vgg19()`` have exactly the layers, names and
  parameter counts of ``keras.applications.VGG16`` / ``VGG19``. ``base_width``, ``fc_units`` and
  ``input_shape`` give the narrow, small-input variants trained in notebook 01.
- ``box_head=True`` adds the paper's per-class bounding-box regression layer ("PCR", Sec. 4.2
  of the localisation appendix) next to the soft-max; ``per_class_box_loss`` is its Euclidean loss.
- ``transfer_weights`` copies layers by name: the paper's initialisation of a deep net from the
  shallow net A (``SHALLOW_INIT_LAYERS``).
- ``fully_convolutional`` turns the FC layers into convolutions (the paper's dense testing);
  ``dense_predict`` applies the result over several scales and flips and merges the boxes.

Localisation parameterisation (the slides' ``(dx, dy, w, h)``): for a box with centre
``(cx, cy)`` and size ``(bw, bh)`` seen through a square window of side ``S`` centred at
``(wx, wy)`` (the network input during training; each location's receptive window when the net
is applied densely), ``dx = (cx - wx) / S``, ``dy = (cy - wy) / S``, ``w = bw / S``,
``h = bh / S`` (``bestiary_keras.geometry.encode_window_boxes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras import geometry
from bestiary_keras.training import build_optimizer

__all__ = [
    "VGG_CONFIGS",
    "VGG_DEPTHS",
    "VGG_BLOCK_WIDTHS",
    "SHALLOW_INIT_LAYERS",
    "configuration_table",
    "vgg_block",
    "build_vgg",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "preprocess",
    "per_class_box_loss",
    "localisation_targets",
    "compile_localiser",
    "transfer_weights",
    "fully_convolutional",
    "DensePrediction",
    "dense_predict",
    "localisation_errors",
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

_TOTAL_STRIDE = 32  # five 2x2 max-poolings


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


def build_vgg(config="D", *, input_shape=(224, 224, 3), num_classes: int = 1000, base_width: int = 64,
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
    if include_top and (height is None or width is None or height % _TOTAL_STRIDE
                        or width % _TOTAL_STRIDE or min(height, width) < _TOTAL_STRIDE):
        def near(n):
            low = max(_TOTAL_STRIDE, (n or 0) // _TOTAL_STRIDE * _TOTAL_STRIDE)
            return f"{low} or {low + _TOTAL_STRIDE}" if n and n % _TOTAL_STRIDE else f"{low}"
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
    """VGG-11 (configuration A); keyword arguments as in ``build_vgg``."""
    return build_vgg("A", **kwargs)


def vgg13(**kwargs) -> keras.Model:
    """VGG-13 (configuration B); keyword arguments as in ``build_vgg``."""
    return build_vgg("B", **kwargs)


def vgg16(**kwargs) -> keras.Model:
    """VGG-16 (configuration D), same layers as ``keras.applications.VGG16(weights=None)``."""
    return build_vgg("D", **kwargs)


def vgg19(**kwargs) -> keras.Model:
    """VGG-19 (configuration E), same layers as ``keras.applications.VGG19(weights=None)``."""
    return build_vgg("E", **kwargs)


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


def localisation_targets(labels, boxes, image_size: int) -> dict:
    """Training targets for ``build_vgg(..., box_head=True)`` from single-object scenes.

    Args:
        labels: ``(N,)`` or ``(N, M)`` int class indices (the first object is used).
        boxes: ``(N, 4)`` or ``(N, M, 4)`` xyxy pixel boxes in the ``image_size`` input.
        image_size: side of the (square) network input, the window of the encoding.

    Returns:
        ``{"predictions": (N,) int32, "boxes": (N, 5) float32 [class, dx, dy, w, h]}``.
    """
    labels = np.asarray(labels)
    boxes = np.asarray(boxes, np.float32)
    if labels.ndim == 2:
        labels, boxes = labels[:, 0], boxes[:, 0]
    if boxes.shape != (len(labels), 4):
        raise ValueError(f"boxes has shape {boxes.shape}, expected ({len(labels)}, 4).")
    window = np.array([0, 0, image_size, image_size], np.float32)
    params = geometry.encode_window_boxes(boxes, window)
    return {
        "predictions": labels.astype(np.int32),
        "boxes": np.concatenate([labels[:, None].astype(np.float32), params], axis=1),
    }


def compile_localiser(model: keras.Model, *, learning_rate: float = 0.01, momentum: float = 0.9,
                      box_loss_weight: float = 1.0) -> keras.Model:
    """Compiles a ``build_vgg(..., box_head=True)`` model with the paper's optimiser.

    Mini-batch SGD with momentum 0.9; the loss is the soft-max cross-entropy (multinomial
    logistic regression) plus ``box_loss_weight`` times ``per_class_box_loss``; weight decay
    and dropout are part of the model (``build_vgg(weight_decay=..., dropout=...)``).

    Returns:
        The same model, compiled (metric: classification accuracy).
    """
    if learning_rate <= 0 or not 0 <= momentum < 1 or box_loss_weight < 0:
        raise ValueError(
            f"learning_rate={learning_rate!r} must be > 0, momentum={momentum!r} in [0, 1) and "
            f"box_loss_weight={box_loss_weight!r} >= 0."
        )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss={"predictions": "sparse_categorical_crossentropy", "boxes": per_class_box_loss},
        loss_weights={"predictions": 1.0, "boxes": box_loss_weight},
        metrics={"predictions": "accuracy"},
    )
    return build_optimizer(model)  # momentum buffers now, not while tracing the first step


def transfer_weights(source: keras.Model, target: keras.Model, layer_names=None) -> list[str]:
    """Copies the weights of the layers with the same name from ``source`` into ``target``.

    The paper's initialisation of the deep nets from net A is
    ``transfer_weights(net_a, net_d, SHALLOW_INIT_LAYERS)``.

    Args:
        source, target: Keras models.
        layer_names: names to copy; ``None`` copies every layer with weights whose name exists
            in both models with the same weight shapes.

    Returns:
        The names of the copied layers.

    Raises:
        ValueError: a named layer is missing from a model or its weight shapes differ.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    target_layers = {layer.name: layer for layer in target.layers}

    def shapes(layer):
        return [tuple(w.shape) for w in layer.weights]

    if layer_names is None:
        names = [n for n, layer in source_layers.items()
                 if layer.weights and n in target_layers
                 and shapes(layer) == shapes(target_layers[n])]
    else:
        names = list(layer_names)
        for n in names:
            for model, found in ((source, source_layers), (target, target_layers)):
                if n not in found:
                    raise ValueError(
                        f"layer_names: {n!r} is not a layer of model {model.name!r}; its layers "
                        f"with weights are {[k for k, v in found.items() if v.weights]}."
                    )
            if shapes(source_layers[n]) != shapes(target_layers[n]):
                raise ValueError(
                    f"layer {n!r}: weight shapes differ, {shapes(source_layers[n])} in "
                    f"{source.name!r} vs {shapes(target_layers[n])} in {target.name!r}. "
                    "Build both models with the same widths."
                )
    for n in names:
        target_layers[n].set_weights(source_layers[n].get_weights())
    return names


def fully_convolutional(model: keras.Model) -> keras.Model:
    """The paper's test-time network: FC layers become convolutions, any input size works.

    The first FC layer after ``Flatten`` becomes a convolution whose kernel is the size of the
    final feature map (7x7 in VGG-16 at 224), the following FC layers 1x1 convolutions; their
    weights are the FC weights reshaped (``Flatten`` is row-major over height, width,
    channels, so ``kernel.reshape(h, w, c, units)`` is exact). Dropout is dropped (inference).
    On an input of the training size the outputs equal the original model's, with spatial
    size 1x1; on a larger input they are maps of class posteriors (and boxes) with one
    location per 32-pixel step of the input window.

    Args:
        model: a functional model whose FC part is ``Flatten`` followed by ``Dense`` layers
            (e.g. from ``build_vgg``).

    Returns:
        A new ``keras.Model`` with input ``(None, None, channels)`` and the same output
        structure (a dict stays a dict), outputs of shape ``(batch, rows, cols, units)``.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "inputs") or len(model.inputs) != 1:
        raise ValueError(f"model={model!r}: expected a functional keras.Model with one input.")
    old_input = model.inputs[0]
    if len(old_input.shape) != 4:
        raise ValueError(f"model input has shape {old_input.shape}; expected (batch, h, w, c).")
    inputs = keras.Input(shape=(None, None, old_input.shape[-1]), name="input_layer")
    tensors = {id(old_input): inputs}
    flatten_hw = None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        old_in = layer.input
        if isinstance(old_in, (list, tuple)) and len(old_in) == 1:
            old_in = old_in[0]
        new_in = keras.tree.map_structure(lambda t: tensors[id(t)], old_in)
        if isinstance(layer, (layers.Dropout,)):
            new_out = new_in
        elif isinstance(layer, layers.Flatten):
            if len(old_in.shape) != 4:
                raise ValueError(f"layer {layer.name!r}: only Flatten of (b, h, w, c) is supported.")
            flatten_hw = tuple(old_in.shape[1:3])
            new_out = new_in
        elif isinstance(layer, layers.Dense):
            units = layer.units
            in_features = old_in.shape[-1]
            channels = new_in.shape[-1]
            if in_features == channels:
                kernel_size = (1, 1)
            elif flatten_hw is not None and flatten_hw[0] * flatten_hw[1] * channels == in_features:
                kernel_size = flatten_hw
            else:
                raise ValueError(
                    f"layer {layer.name!r}: cannot turn a Dense on {in_features} features into a "
                    f"convolution over {channels} channels."
                )
            conv = layers.Conv2D(units, kernel_size, padding="valid",
                                 activation=layer.activation, use_bias=layer.use_bias,
                                 name=layer.name)
            new_out = conv(new_in)
            weights = layer.get_weights()
            weights[0] = weights[0].reshape(*kernel_size, channels, units)
            conv.set_weights(weights)
        else:
            clone = layer.__class__.from_config(layer.get_config())
            new_out = clone(new_in)
            clone.set_weights(layer.get_weights())
        old_out = layer.output
        for o, n in zip(keras.tree.flatten(old_out), keras.tree.flatten(new_out)):
            tensors[id(o)] = n
    outputs = keras.tree.map_structure(lambda t: tensors[id(t)], model.output)
    return keras.Model(inputs, outputs, name=f"{model.name}_fully_convolutional")


@dataclass
class DensePrediction:
    """Output of ``dense_predict`` for ``N`` images and ``C`` classes.

    Attributes:
        labels: ``(N,)`` predicted class (argmax of ``scores``).
        scores: ``(N, C)`` class posteriors averaged over locations, then flips, then scales.
        boxes: ``(N, 4)`` merged xyxy box of the predicted class, in input-image pixels.
        box_scores: ``(N,)`` the classifier's score of the predicted class (``scores[labels]``).
        score_maps: ``{scale: (N, rows, cols, C)}`` the posterior maps (unflipped pass).
    """

    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    score_maps: dict


def _resize(images, size: int) -> np.ndarray:
    import cv2

    if images.shape[1] == size and images.shape[2] == size:
        return images.astype(np.float32)
    interpolation = cv2.INTER_AREA if size < images.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interpolation)
                     for im in images]).astype(np.float32)


def dense_predict(fcn: keras.Model, images, *, window: int, scales=(64,), flip: bool = True,
                  merge_iou: float = 0.5, mean_rgb=None, batch_size: int = 64) -> DensePrediction:
    """Dense evaluation (the paper's Sec. 3.2) with per-class boxes merged as in OverFeat.

    For every test scale ``Q`` the (square) images are rescaled to ``Q x Q`` and the fully
    convolutional net ``fcn`` is applied once: location ``(i, j)`` of its output map sees the
    window ``[32 j, 32 i, 32 j + window, 32 i + window]`` of the rescaled image. With
    ``flip`` the mirrored images are processed too. Classification, as in the paper: the class
    score map is averaged over its locations, then over the two flips, then over the scales
    (each scale weighs the same whatever its number of locations); the predicted class is the
    argmax.
    Localisation: every location predicts a box for the predicted class relative to its window
    (decoded with ``geometry.decode_window_boxes``, un-flipped, divided by the scale); the box
    with the highest posterior for that class is merged with every box that overlaps it with
    IoU >= ``merge_iou`` by a posterior-weighted average.

    Args:
        fcn: output of ``fully_convolutional`` on a ``build_vgg(..., box_head=True)`` model.
        images: ``(N, H, W, 3)`` uint8 square images.
        window: the training input size (the window seen by one output location).
        scales: test sizes ``Q`` (each a multiple of 32 and >= ``window``).
        flip: also evaluate the horizontally flipped images.
        merge_iou: IoU with the best box above which boxes are averaged into it.
        mean_rgb: as in ``preprocess``.
        batch_size: images per forward pass.

    Returns:
        A ``DensePrediction``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be (N, S, S, 3) square images, got shape {images.shape}.")
    for q in scales:
        if q % _TOTAL_STRIDE or q < window:
            raise ValueError(f"scales: {q} must be a multiple of 32 and >= window={window}.")
    size = images.shape[1]
    all_probs, all_boxes, score_maps, scale_scores = [], [], {}, []
    for q in scales:
        flip_scores = []
        rescaled = preprocess(_resize(images, q), mean_rgb)
        passes = (False, True) if flip else (False,)
        batch = np.concatenate([rescaled[:, :, ::-1] if f else rescaled for f in passes])
        # Direct calls (no ``predict``): one eager pass per chunk, no retracing per input size.
        outputs = [fcn(batch[i:i + batch_size], training=False)
                   for i in range(0, len(batch), batch_size)]
        all_pred = np.concatenate([keras.ops.convert_to_numpy(o["predictions"]) for o in outputs])
        all_box = np.concatenate([keras.ops.convert_to_numpy(o["boxes"]) for o in outputs])
        rows, cols, num_classes = all_pred.shape[1:]
        ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        x0 = (_TOTAL_STRIDE * jj).astype(np.float32)
        y0 = (_TOTAL_STRIDE * ii).astype(np.float32)
        windows = np.stack([x0, y0, x0 + window, y0 + window], axis=-1)  # (rows, cols, 4)
        n = len(images)
        for k, flipped in enumerate(passes):
            probs = all_pred[k * n:(k + 1) * n]
            params = all_box[k * n:(k + 1) * n]
            if not flipped:
                score_maps[q] = probs
            boxes = geometry.decode_window_boxes(
                params.reshape(n, rows, cols, num_classes, 4), windows[:, :, None, :])
            if flipped:
                boxes = np.stack([q - boxes[..., 2], boxes[..., 1],
                                  q - boxes[..., 0], boxes[..., 3]], axis=-1)
            boxes = boxes * np.float32(size / q)
            flip_scores.append(probs.mean(axis=(1, 2)))
            all_probs.append(probs.reshape(n, rows * cols, num_classes))
            all_boxes.append(boxes.reshape(n, rows * cols, num_classes, 4))
        scale_scores.append(np.mean(flip_scores, axis=0))
    probs = np.concatenate(all_probs, axis=1)       # (N, L, C)
    boxes = np.concatenate(all_boxes, axis=1)       # (N, L, C, 4)
    scores = np.mean(scale_scores, axis=0)
    labels = scores.argmax(axis=1)
    index = np.arange(len(images))
    cand = boxes[index, :, labels]                  # (N, L, 4)
    weight = probs[index, :, labels]                # (N, L)
    best = cand[index, weight.argmax(axis=1)]       # (N, 4)
    overlap = geometry.elementwise_iou(cand, best[:, None, :]) >= merge_iou
    w = weight * overlap                            # the best box always overlaps itself
    merged = (w[..., None] * cand).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)[:, None]
    merged = geometry.clip_boxes(merged, size, size)
    return DensePrediction(labels=labels, scores=scores, boxes=merged,
                           box_scores=scores[index, labels], score_maps=score_maps)


def localisation_errors(pred_labels, pred_boxes, true_labels, true_boxes,
                        iou_threshold: float = 0.5) -> tuple[float, float]:
    """Top-1 classification error and localisation error (the ILSVRC rule).

    A localisation is correct when the class is right AND the box has IoU >= ``iou_threshold``
    with the ground-truth box.

    Returns:
        ``(classification_error, localisation_error)``, fractions in ``[0, 1]``.
    """
    pred_labels = np.asarray(pred_labels).reshape(-1)
    true_labels = np.asarray(true_labels).reshape(-1)
    if pred_labels.shape != true_labels.shape or len(true_labels) == 0:
        raise ValueError(f"pred_labels {pred_labels.shape} and true_labels {true_labels.shape} "
                         "must have the same non-zero length.")
    right_class = pred_labels == true_labels
    iou = geometry.elementwise_iou(np.asarray(pred_boxes).reshape(-1, 4),
                                   np.asarray(true_boxes).reshape(-1, 4))
    return float(1 - right_class.mean()), float(1 - (right_class & (iou >= iou_threshold)).mean())
