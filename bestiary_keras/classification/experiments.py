"""The experiments of notebook 02 on ResNets: depth as the slides count it, gradient norms at
initialisation, and the fixed-budget training loop of the plain-vs-residual comparison.

- ``weighted_depth`` / ``count_weighted_layers``: depth as the slides count it.
- ``conv_kernel_gradient_norms``: the gradient norm of every convolution kernel on one batch.
- ``train_for_steps``: exactly ``steps`` steps on batches fixed by the seed
  (``batching.step_indices``), identical for every net of the comparison, recorded per batch
  (``training.StepHistory(per_batch=True)``).
"""

from __future__ import annotations

import keras
from keras import layers

from bestiary_keras.batching import GatheredBatches, step_indices
from bestiary_keras.training import StepHistory, build_optimizer

__all__ = [
    "WEIGHTED_LAYER_TYPES",
    "conv_kernel_gradient_norms",
    "count_weighted_layers",
    "train_for_steps",
    "weighted_depth",
]

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


def train_for_steps(model, images, labels, *, steps, batch_size, seed=0, verbose=0,
                    training=None):
    """Trains a compiled model for exactly ``steps`` steps on batches fixed by ``seed``.

    Every model trained with the same arguments sees the same batches in the same order
    (``batching.step_indices``, gathered on the fly by ``batching.GatheredBatches``), so the
    comparison of plain and residual nets differs only by the shortcuts. One ``fit`` call of
    one epoch of ``steps`` batches; ``training.StepHistory(per_batch=True)`` records each
    batch's own loss and accuracy (not Keras' running means).

    Args:
        model: a compiled ``keras.Model``.
        images: training inputs (NumPy array).
        labels: training labels (NumPy array).
        steps: number of optimisation steps.
        batch_size: examples per step.
        seed: seed of the batch order (see ``batching.step_indices``).
        verbose: passed to ``fit`` (e.g. ``runtime.fit_verbose()`` for a progress bar).
        training: ``None`` (plain ``model.fit``) or the ``distributed.TrainingPlan`` that
            compiled ``model``: it then trains through ``training.fit``.

    Returns:
        The ``training.StepHistory``: ``history["loss"]`` has one value per step, the loss of
        that step's batch before its update (the loss the step's gradient was computed from).
    """
    build_optimizer(model)  # optimizer variables now, not while tracing the first step
    order = step_indices(len(images), batch_size, steps, seed)
    batches = GatheredBatches(images, labels, batch_size=batch_size, order=order)
    history = StepHistory(per_batch=True)
    options = {"epochs": 1, "steps_per_epoch": int(steps), "shuffle": False,
               "callbacks": [history], "verbose": verbose}
    if training is None:
        model.fit(batches.dataset(), **options)
    else:  # the plan's fit: model.fit, or its own loop on several workers
        training.fit(model, batches.dataset(), **options)
    return history
