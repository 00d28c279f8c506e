"""Siamese networks (notebook 15): two weight-sharing branches and a distance.

References: J. Bromley et al., "Signature Verification using a Siamese Time Delay Neural
Network", NIPS 1993; R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality Reduction by Learning an
Invariant Mapping", CVPR 2006 (the contrastive loss); E. Simo-Serra et al., "Discriminative
Learning of Deep Convolutional Feature Point Descriptors", ICCV 2015 (the patch descriptor).

- ``digit_branch``: the branch ``D`` for small digit images (a descriptor of any dimension; 2
  lets us plot the embedding directly, as Hadsell et al. did).
- ``L2Pooling2D``: the square root of the mean of squares over a window (Simo-Serra et al.).
- ``patch_descriptor``: Simo-Serra et al.'s three-layer descriptor network, scaled to 32x32
  patches (the same network is LIFT's DESC in notebook 17).
- ``PairDistance`` / ``siamese_network``: one branch applied to both inputs (the *same* layer
  objects, so the weights are shared by construction) and ``||D(x_1) - D(x_2)||``.
- ``descriptor_pair_network``: the same, returning both descriptors (for in-batch mining).
- ``embed``: the descriptors of many images, batched.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras.metric_learning.losses import DISTANCE_EPSILON, euclidean_distance

__all__ = [
    "descriptor_pair_network", "digit_branch", "embed", "L2Pooling2D", "PairDistance",
    "patch_descriptor", "siamese_network", "square_side",
]


def digit_branch(input_shape=(8, 8, 1), embedding_dim: int = 2, *, filters=(32, 64),
                 hidden_units: int = 128, name: str = "branch") -> keras.Model:
    """The branch ``D`` of a Siamese network for small grey digit images.

    Two 3x3 convolutions (the second followed by 2x2 max pooling when the image is larger than
    8 pixels), a hidden dense layer and a linear descriptor of ``embedding_dim`` numbers.

    Args:
        input_shape: ``(height, width, channels)`` of one image, e.g. ``(8, 8, 1)`` for
            scikit-learn's digits or ``(28, 28, 1)`` for MNIST.
        embedding_dim: descriptor size (2 to plot it as it is).
        filters: channels of the two convolutions.
        hidden_units: width of the hidden dense layer.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``(N, H, W, C)`` images to ``(N, embedding_dim)``.
    """
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        if input_shape[0] > 8:
            x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(embedding_dim, name="descriptor")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class L2Pooling2D(layers.Layer):
    """L2 pooling: ``sqrt(mean over the window of x^2)``, Simo-Serra et al.'s pooling.

    Args:
        pool_size: window (and stride) in pixels.
        epsilon: added under the square root (finite gradient on an all-zero window).
    """

    def __init__(self, pool_size=2, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        if int(pool_size) < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}.")
        self.pool_size = int(pool_size)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        mean_square = ops.average_pool(ops.square(inputs), self.pool_size, self.pool_size)
        return ops.sqrt(mean_square + self.epsilon)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        return (n, None if h is None else h // self.pool_size,
                None if w is None else w // self.pool_size, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "epsilon": self.epsilon}


def square_side(input_shape, what: str, *, multiple: int, minimum: int, why: str) -> int:
    """The side ``S`` of a square ``(S, S, channels)`` input whose side must be a multiple of
    ``multiple`` and at least ``minimum`` (``why`` says why); a ``ValueError`` naming the shape
    and the nearest sides that work otherwise."""
    if len(input_shape) != 3 or input_shape[0] is None or input_shape[0] != input_shape[1]:
        raise ValueError(f"input_shape must be (S, S, channels), a square {what}, got "
                         f"{input_shape!r}.")
    side = int(input_shape[0])
    if side < minimum or side % multiple:
        lower = max(minimum, side // multiple * multiple)
        nearest = f"{lower} or {lower + multiple}" if side > minimum else f"{lower}"
        raise ValueError(f"input_shape={tuple(input_shape)!r}: the side must be a multiple of "
                         f"{multiple} and at least {minimum} ({why}); try {nearest}.")
    return side


def patch_descriptor(input_shape=(32, 32, 1), descriptor_dim: int = 64, *, filters=(32, 64),
                     name: str = "desc") -> keras.Model:
    """Simo-Serra et al.'s patch descriptor network, scaled from 64x64 to 32x32 patches.

    The paper: 7x7 conv (32) - tanh - L2 pool - 6x6 conv (64) - tanh - L2 pool - 5x5 conv (128)
    - tanh - L2 pool, giving 128 numbers for a 64x64 patch. Here: 5x5 conv - tanh - L2 pool 2,
    5x5 conv - tanh - L2 pool 2, then a 1-pixel-output convolution over the remaining 8x8 map
    (the paper's last layer, too, sees the whole remaining map) - tanh, ``descriptor_dim``
    numbers. Input: a grey patch normalised to zero mean and unit standard deviation.

    Args:
        input_shape: ``(S, S, channels)``, a square patch whose side ``S`` is a multiple of 4.
        descriptor_dim: descriptor size.
        filters: channels of the first two convolutions.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``(N, S, S, channels)`` to ``(N, descriptor_dim)``.
    """
    patch_size = square_side(input_shape, "patch", multiple=4, minimum=16,
                             why="two 2x2 poolings")
    inputs = keras.Input(shape=tuple(input_shape), name="patch")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 5, padding="same", activation="tanh", name=f"conv{i + 1}")(x)
        x = L2Pooling2D(2, name=f"l2pool{i + 1}")(x)
    side = patch_size // 4
    x = layers.Conv2D(descriptor_dim, side, padding="valid", activation="tanh",
                      name=f"conv{len(filters) + 1}")(x)
    outputs = layers.Flatten(name="descriptor")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class PairDistance(layers.Layer):
    """``||a - b||_2`` per row, with the guarded square root of ``losses.euclidean_distance``."""

    def __init__(self, epsilon: float = DISTANCE_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, a, b):
        return euclidean_distance(a, b, epsilon=self.epsilon)

    def compute_output_shape(self, a_shape, b_shape):
        return tuple(a_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def siamese_network(branch: keras.Model, *, name: str = "siamese") -> keras.Model:
    """Two inputs, one branch ``D`` applied to both, and their distance ``||D(x_1) - D(x_2)||``.

    Calling the same ``branch`` model twice is what shares the weights: there is only one set.

    Args:
        branch: the descriptor network ``D`` (one input, a ``(N, D)`` output).
        name: model name.

    Returns:
        A ``keras.Model`` ``[x_1, x_2] -> distance`` of shape ``(N,)``.
    """
    if len(branch.inputs) != 1 or len(branch.outputs) != 1:
        raise ValueError(f"branch must have one input and one output, got "
                         f"{len(branch.inputs)} inputs and {len(branch.outputs)} outputs.")
    shape = tuple(branch.inputs[0].shape[1:])
    x1 = keras.Input(shape=shape, name="x1")
    x2 = keras.Input(shape=shape, name="x2")
    distance = PairDistance(name="distance")(branch(x1), branch(x2))
    return keras.Model([x1, x2], distance, name=name)


def descriptor_pair_network(branch: keras.Model, *, name: str = "descriptor_pairs") -> keras.Model:
    """Two inputs, one shared branch, the two descriptors stacked: ``(N, 2, D)``.

    For losses that need the descriptors themselves rather than one distance per pair, e.g.
    ``losses.hardest_negative_contrastive_loss``, which compares every pair of the batch.
    """
    if len(branch.inputs) != 1 or len(branch.outputs) != 1:
        raise ValueError(f"branch must have one input and one output, got "
                         f"{len(branch.inputs)} inputs and {len(branch.outputs)} outputs.")
    shape = tuple(branch.inputs[0].shape[1:])
    dim = int(branch.outputs[0].shape[-1])
    x1 = keras.Input(shape=shape, name="x1")
    x2 = keras.Input(shape=shape, name="x2")
    d1 = layers.Reshape((1, dim), name="descriptor_1")(branch(x1))
    d2 = layers.Reshape((1, dim), name="descriptor_2")(branch(x2))
    pairs = layers.Concatenate(axis=1, name="pair")([d1, d2])
    return keras.Model([x1, x2], pairs, name=name)


def embed(branch: keras.Model, images, batch_size: int = 512) -> np.ndarray:
    """``branch`` applied to ``images`` in batches, as a float32 NumPy array."""
    images = np.asarray(images, np.float32)
    if len(images) == 0:
        return np.zeros((0, int(branch.outputs[0].shape[-1])), np.float32)
    parts = [np.asarray(branch(images[i:i + batch_size], training=False))
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32)
