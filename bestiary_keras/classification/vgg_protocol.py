"""VGG's training and testing protocol (Simonyan & Zisserman, ICLR 2015), notebook 01.

- ``transfer_weights`` copies layers by name: the paper's initialisation of a deep net from the
  shallow net A (``vgg.SHALLOW_INIT_LAYERS``).
- ``localisation_targets`` and ``compile_localiser``: the targets and the optimiser of the
  classification + per-class box model (``vgg.vgg(..., box_head=True)``).
- ``fully_convolutional`` turns the FC layers into convolutions (the paper's dense testing);
  ``dense_predict`` applies the result over several scales and flips and merges the boxes.
- ``rescore_and_merge``: the localisation's last step, every candidate box rescored by a
  classification network on the box's crop, then merged.
- ``localisation_errors``: top-1 and localisation errors (the ILSVRC rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from bestiary_keras import geometry
from bestiary_keras.classification.vgg import TOTAL_STRIDE, per_class_box_loss, preprocess
from bestiary_keras.training import build_optimizer

__all__ = [
    "compile_localiser",
    "DensePrediction",
    "dense_predict",
    "fully_convolutional",
    "localisation_errors",
    "localisation_targets",
    "crop_boxes",
    "rescore_and_merge",
    "transfer_weights",
]


def localisation_targets(labels, boxes, image_size: int) -> dict:
    """Training targets for ``vgg.vgg(..., box_head=True)`` from single-object scenes.

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
                      box_loss_weight: float = 1.0, training=None) -> keras.Model:
    """Compiles a ``vgg.vgg(..., box_head=True)`` model with the paper's optimiser.

    Mini-batch SGD with momentum 0.9; the loss is the soft-max cross-entropy (multinomial
    logistic regression) plus ``box_loss_weight`` times ``per_class_box_loss``; weight decay
    and dropout are part of the model (``vgg.vgg(weight_decay=..., dropout=...)``).

    Args:
        training: ``None`` (plain ``model.compile``) or a ``distributed.TrainingPlan``: the
            model is then compiled by ``training.compile`` (its devices and precision; the
            optimizer is made in the plan's scope).

    Returns:
        The model to train: ``model`` itself, compiled (metric: classification accuracy), or,
        under a mixed-precision plan, ``training.compile``'s wrapper around its layers.
    """
    if learning_rate <= 0 or not 0 <= momentum < 1 or box_loss_weight < 0:
        raise ValueError(
            f"learning_rate={learning_rate!r} must be > 0, momentum={momentum!r} in [0, 1) and "
            f"box_loss_weight={box_loss_weight!r} >= 0."
        )
    losses = {
        "loss": {"predictions": "sparse_categorical_crossentropy", "boxes": per_class_box_loss},
        "loss_weights": {"predictions": 1.0, "boxes": box_loss_weight},
        "metrics": {"predictions": "accuracy"},
    }
    if training is not None:  # builds the optimizer's variables too
        return training.compile(
            model, optimizer=lambda: keras.optimizers.SGD(learning_rate, momentum=momentum),
            **losses)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum), **losses)
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
            (e.g. from ``vgg.vgg``).

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
        candidates: ``(N, L, 4)`` every location's box for the predicted class (all scales
            and flips), in input-image pixels (not clipped): the input of ``rescore_and_merge``.
        candidate_scores: ``(N, L)`` each location's posterior for the predicted class (the
            weights of the merge above).
    """

    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    score_maps: dict
    candidates: np.ndarray | None = None
    candidate_scores: np.ndarray | None = None


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
        fcn: output of ``fully_convolutional`` on a ``vgg.vgg(..., box_head=True)`` model.
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
        if q % TOTAL_STRIDE or q < window:
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
        x0 = (TOTAL_STRIDE * jj).astype(np.float32)
        y0 = (TOTAL_STRIDE * ii).astype(np.float32)
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
    merged = geometry.clip_boxes(merged, size)
    return DensePrediction(labels=labels, scores=scores, boxes=merged,
                           box_scores=scores[index, labels], score_maps=score_maps,
                           candidates=cand, candidate_scores=weight)


def _merge(candidates, weights, merge_iou):
    """The greedy merge: the best-weighted box averaged with the boxes overlapping it by IoU >=
    ``merge_iou``, weighted by their weights. ``(N, L, 4)``, ``(N, L)`` -> ``(N, 4)``, index."""
    index = np.arange(len(candidates))
    top = weights.argmax(axis=1)
    best = candidates[index, top]
    overlap = geometry.elementwise_iou(candidates, best[:, None, :]) >= merge_iou
    w = weights * overlap
    w[index, top] = np.maximum(w[index, top], 1e-12)  # the best box counts even at weight 0
    merged = (w[..., None] * candidates).sum(axis=1) / w.sum(axis=1)[:, None]
    return merged, top


def crop_boxes(images, boxes, size: int, *, context: float = 1.0):
    """Every box of every image cut out and resized to ``size x size`` (R-CNN's "warp").

    Args:
        images: ``(N, H, W, C)``.
        boxes: ``(N, K, 4)`` xyxy pixel boxes.
        size: side of the output crops (the classifier's input size).
        context: the crop is the square of side ``context`` times the box's longer side,
            centred on the box (``1.0`` with a square box: the box itself); it is clipped by the
            image and then resized, so near the border its aspect ratio changes. With
            ``context < 0`` (not allowed) nothing would be seen.

    Returns:
        ``(N, K, size, size, C)`` float32 crops in the images' value range.
    """
    import cv2

    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim != 3 or boxes.shape[:1] != images.shape[:1] or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, K, 4) with N = {len(images)}, got {boxes.shape}.")
    if context <= 0:
        raise ValueError(f"context={context!r} must be > 0 (1.0 crops the box itself).")
    height, width = images.shape[1:3]
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    if context == 1.0:
        half_w = (boxes[..., 2] - boxes[..., 0]) / 2
        half_h = (boxes[..., 3] - boxes[..., 1]) / 2
    else:
        half_w = half_h = context * np.maximum(boxes[..., 2] - boxes[..., 0],
                                               boxes[..., 3] - boxes[..., 1]) / 2
    x0 = np.clip(np.floor(cx - half_w + 1e-4), 0, width - 1).astype(int)
    y0 = np.clip(np.floor(cy - half_h + 1e-4), 0, height - 1).astype(int)
    x1 = np.maximum(np.clip(np.ceil(cx + half_w - 1e-4), 0, width).astype(int), x0 + 1)
    y1 = np.maximum(np.clip(np.ceil(cy + half_h - 1e-4), 0, height).astype(int), y0 + 1)
    out = np.empty(boxes.shape[:2] + (size, size, images.shape[-1]), np.float32)
    for n in range(len(images)):
        image = images[n].astype(np.float32)
        for k in range(boxes.shape[1]):
            patch = image[y0[n, k]:y1[n, k], x0[n, k]:x1[n, k]]
            shrink = patch.shape[0] >= size and patch.shape[1] >= size
            resized = cv2.resize(patch, (size, size),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            out[n, k] = resized.reshape(size, size, -1)
    return out


def rescore_and_merge(classify, images, candidates, labels, *, window: int, context: float = 1.0,
                      merge_iou: float = 0.5, batch_size: int = 256):
    """The localisation's last step: candidate boxes rescored by a classification network.

    The slide's localisation pipeline (VGG's Sec. A.1, after OverFeat): the localisation net
    predicts boxes densely, then the boxes are rated by the class scores of a classification
    network. Here every candidate box (e.g. ``DensePrediction.candidates``) is cut out
    (``crop_boxes`` with ``context``), resized to the classifier's ``window`` and classified;
    its new score is the classifier's posterior for the image's predicted class ``labels``.
    The boxes are then merged as in ``dense_predict``, with the new scores as weights: the
    best-rescored box averaged with every box that overlaps it by IoU >= ``merge_iou``.

    Args:
        classify: ``classify(crops) -> (M, C)`` class posteriors for ``(M, window, window, 3)``
            float crops in the images' value range (it preprocesses them itself).
        images: ``(N, H, W, 3)`` images.
        candidates: ``(N, L, 4)`` xyxy pixel boxes.
        labels: ``(N,)`` the predicted class of each image (the class whose box is scored).
        window: the classifier's input side.

    Returns:
        ``(boxes, box_scores, scores)``: ``(N, 4)`` merged boxes, ``(N,)`` the best box's new
        score, ``(N, L)`` the new score of every candidate.
    """
    images = np.asarray(images)
    candidates = np.asarray(candidates, np.float32)
    labels = np.asarray(labels).reshape(-1)
    if candidates.ndim != 3 or len(candidates) != len(images) or len(labels) != len(images):
        raise ValueError(f"candidates {candidates.shape} and labels {labels.shape} must be "
                         f"(N, L, 4) and (N,) with N = {len(images)} images.")
    n, num = candidates.shape[:2]
    scores = np.empty((n, num), np.float32)
    per_chunk = max(1, batch_size // num)
    for start in range(0, n, per_chunk):
        crops = crop_boxes(images[start:start + per_chunk], candidates[start:start + per_chunk],
                           window, context=context)
        probs = np.asarray(classify(crops.reshape((-1,) + crops.shape[2:])))
        probs = probs.reshape(len(crops), num, -1)
        scores[start:start + per_chunk] = np.take_along_axis(
            probs, labels[start:start + per_chunk, None, None], axis=2)[..., 0]
    merged, top = _merge(candidates, scores.astype(np.float64), merge_iou)
    merged = geometry.clip_boxes(merged.astype(np.float32), images.shape[1:3])
    return merged, scores[np.arange(n), top], scores


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
