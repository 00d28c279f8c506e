"""Triplet descriptors for object recognition and 3D pose (notebook 16).

Reference: P. Wohlhart, V. Lepetit, "Learning Descriptors for Object Recognition and 3D Pose
Estimation", CVPR 2015.

A descriptor network maps an image of an object to a few numbers, trained so that the
Euclidean distance between descriptors reflects *object identity and pose*: nearest-neighbour
search among descriptors of templates (renderings on a grid of poses) then gives both the
object and its pose. The training signal is the triplet term ``c(x_i, x_j, x_k)`` and the pair
term of ``losses.wohlhart_lepetit_loss``.

- ``wohlhart_lepetit_net``: the paper's small network (two convolutions with 16 and 7 filters,
  max pooling, a 256-unit layer, a linear descriptor), here for 32x32 grey images.
- ``triplet_network``: one shared branch applied to the four images of a sample (anchor, close
  pose, negative, same pose under other conditions), descriptors stacked ``(N, 4, D)``;
  ``TripletPoseLoss`` is the loss on that output.
- ``make_pose_pool``: the object layers of each object on a fine grid of poses (the training
  data); ``sample_triplets`` draws ``(i, j, k, i')`` from it and ``TripletBatches`` puts the
  four images of each sample on new backgrounds with noise and clutter for every batch.
- ``make_templates`` / ``make_test_views``: the template database and the test queries.
- ``pose_retrieval``: object accuracy and pose-error fractions of nearest-neighbour retrieval;
  ``EvaluateAtStep`` scores a model during training (for the descriptor-dimension sweep).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from bestiary_keras.batching import SeededBatches
from bestiary_keras.metric_learning import evaluation, losses, render

__all__ = [
    "BACKGROUND_TEST_PHOTOS", "BACKGROUND_TRAIN_PHOTOS", "EvaluateAtStep", "LIGHT_JITTER",
    "make_pose_pool", "make_templates", "make_test_views", "normalized_pixels", "pose_retrieval",
    "PoseViews", "sample_triplets", "TEST_CONDITIONS", "TRIPLET_INPUTS", "triplet_network",
    "TripletBatches", "TripletPoseLoss", "wohlhart_lepetit_net", "ZOOM_JITTER",
]

BACKGROUND_TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "brick", "grass",
                           "immunohistochemistry")
"""Photos behind the training renderings."""

BACKGROUND_TEST_PHOTOS = ("rocket", "coins", "gravel", "moon", "hubble_deep_field")
"""Photos behind the test views (never seen in training)."""


def wohlhart_lepetit_net(input_shape=(32, 32, 1), descriptor_dim: int = 3, *,
                         filters=(16, 7), hidden_units: int = 256, batch_norm: bool = False,
                         name: str = "descriptor_net") -> keras.Model:
    """Wohlhart and Lepetit's descriptor network, for small grey images.

    conv 5x5 (16) - ReLU - max pool 2 - conv 5x5 (7) - ReLU - max pool 2 - dense 256 - ReLU -
    dense ``descriptor_dim`` (linear), convolutions without padding: a 32x32 image becomes
    28x28, 14x14, 10x10, then 5x5x7 = 175 numbers before the dense layers. (The paper: 64x64
    RGB-D input, an 8x8 first kernel, a 16-dimensional descriptor.)

    Args:
        input_shape: ``(height, width, channels)``.
        descriptor_dim: size of the descriptor (3 lets us plot it).
        filters: channels of the two convolutions.
        hidden_units: width of the hidden dense layer.
        batch_norm: batch normalisation after each convolution (not in the paper; it makes
            the short training budgets here converge faster).
        name: model name.

    Returns:
        A ``keras.Model`` mapping images to ``(N, descriptor_dim)``.
    """
    if descriptor_dim < 1:
        raise ValueError(f"descriptor_dim must be >= 1, got {descriptor_dim}.")
    if len(input_shape) != 3 or min(input_shape[:2]) < 20:
        raise ValueError(f"input_shape must be (height, width, channels) of at least 20x20 "
                         f"(two 5x5 convolutions without padding and two 2x2 poolings), got "
                         f"{input_shape!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 5, padding="valid", use_bias=not batch_norm,
                          name=f"conv{i + 1}")(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(descriptor_dim, name="descriptor")(x)
    return keras.Model(inputs, outputs, name=name)


TRIPLET_INPUTS = ("anchor", "positive", "negative", "same_pose")
"""The four images of a training sample: ``x_i``, ``x_j`` (same object, close pose), ``x_k``
(another object, or the same object at a distant pose), ``x_i'`` (same object and pose, other
background, noise and lighting)."""


def triplet_network(branch: keras.Model, *, name: str = "triplet_network") -> keras.Model:
    """The shared branch applied to the four images of a sample, descriptors ``(N, 4, D)``."""
    if len(branch.inputs) != 1 or len(branch.outputs) != 1:
        raise ValueError(f"branch must have one input and one output, got "
                         f"{len(branch.inputs)} inputs and {len(branch.outputs)} outputs.")
    shape = tuple(branch.inputs[0].shape[1:])
    dim = int(branch.outputs[0].shape[-1])
    inputs = [keras.Input(shape=shape, name=n) for n in TRIPLET_INPUTS]
    stacked = [layers.Reshape((1, dim), name=f"{n}_descriptor")(branch(x))
               for n, x in zip(TRIPLET_INPUTS, inputs)]
    outputs = layers.Concatenate(axis=1, name="descriptors")(stacked)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class TripletPoseLoss(keras.losses.Loss):
    """``losses.wohlhart_lepetit_loss`` on the ``(N, 4, D)`` output of ``triplet_network``.

    ``y_true`` is not used (the roles are fixed by the input order); pass zeros.

    Args:
        margin: ``m`` of the triplet term.
        pair_weight: weight of the pair term.
    """

    def __init__(self, margin: float = 0.01, pair_weight: float = 1.0,
                 name: str = "wohlhart_lepetit_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be positive, got margin={margin}.")
        self.margin = float(margin)
        self.pair_weight = float(pair_weight)

    def call(self, y_true, y_pred):
        del y_true
        return losses.wohlhart_lepetit_loss(y_pred[:, 0], y_pred[:, 1], y_pred[:, 2],
                                            y_pred[:, 3], self.margin, self.pair_weight)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "pair_weight": self.pair_weight}


@dataclass
class PoseViews:
    """Views with their ground truth.

    Attributes:
        images: float32 ``(N, S, S, 1)`` in [0, 1] (``None`` for a pool of layers).
        object: int ``(N,)`` index into ``names``.
        azimuth: float ``(N,)`` degrees.
        variant: int ``(N,)`` lighting and scale variant (0 = the templates' standard one).
        names: the object names.
        shading, coverage: the object layers ``(N, S, S)`` (see ``render.render_layers``).
    """

    images: np.ndarray | None
    object: np.ndarray
    azimuth: np.ndarray
    variant: np.ndarray
    names: tuple
    shading: np.ndarray | None = None
    coverage: np.ndarray | None = None

    def __len__(self):
        return len(self.object)


TEST_CONDITIONS = dict(noise=0.04, clutter=1, shift=2)
"""Imaging conditions of the cluttered views (``render.compose`` arguments), besides the photo
background: used for test views and for most training views."""

LIGHT_JITTER = 0.25
ZOOM_JITTER = 0.08


def _jittered(rng, n, variant):
    lights = np.tile([[-0.4, 0.6]], (n, 1))
    zooms = np.ones(n)
    jitter = variant > 0
    lights[jitter] += rng.uniform(-LIGHT_JITTER, LIGHT_JITTER, (int(jitter.sum()), 2))
    zooms[jitter] += rng.uniform(-ZOOM_JITTER, ZOOM_JITTER, int(jitter.sum()))
    return lights, zooms


def make_pose_pool(names, rng: np.random.Generator, *, pose_step_deg: float = 5.0,
                   variants: int = 2, size: int = 32, elevation_deg: float = 30.0) -> PoseViews:
    """Training layers: every object on a grid of azimuths, in several lighting variants.

    Variant 0 is lit and scaled like the templates; variants 1.. have a random light direction
    and object scale. Backgrounds, noise and clutter are added per batch (``TripletBatches``).
    """
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}.")
    azimuths = np.arange(0.0, 360.0, pose_step_deg)
    obj, az, var = np.meshgrid(np.arange(len(names)), azimuths, np.arange(variants),
                               indexing="ij")
    obj, az, var = obj.ravel(), az.ravel(), var.ravel()
    lights, zooms = _jittered(rng, len(obj), var)
    shading, coverage = render.render_layers([names[o] for o in obj], az, size=size,
                                             elevation_deg=elevation_deg, lights=lights,
                                             zooms=zooms)
    return PoseViews(None, obj, az, var, tuple(names), shading, coverage)


def make_templates(names, *, step_deg: float = 10.0, size: int = 32,
                   elevation_deg: float = 30.0) -> PoseViews:
    """The template database: every object every ``step_deg`` degrees, black background."""
    azimuths = np.arange(0.0, 360.0, step_deg)
    obj = np.repeat(np.arange(len(names)), len(azimuths))
    az = np.tile(azimuths, len(names))
    shading, coverage = render.render_layers([names[o] for o in obj], az, size=size,
                                             elevation_deg=elevation_deg)
    images = render.compose(shading, coverage, np.random.default_rng(0))
    return PoseViews(images, obj, az, np.zeros(len(obj), int), tuple(names), shading, coverage)


def make_test_views(names, num: int, rng: np.random.Generator, *, size: int = 32,
                    elevation_deg: float = 30.0, photos=BACKGROUND_TEST_PHOTOS) -> PoseViews:
    """Test queries: random objects at random azimuths, random light and scale, on photos
    never seen in training, with noise, clutter and a shift (``TEST_CONDITIONS``)."""
    obj = rng.integers(0, len(names), num)
    az = rng.uniform(0.0, 360.0, num)
    var = np.ones(num, int)
    lights, zooms = _jittered(rng, num, var)
    shading, coverage = render.render_layers([names[o] for o in obj], az, size=size,
                                             elevation_deg=elevation_deg, lights=lights,
                                             zooms=zooms)
    backgrounds = render.photo_backgrounds(rng, num, size, photos)
    images = render.compose(shading, coverage, rng, backgrounds=backgrounds, **TEST_CONDITIONS)
    return PoseViews(images, obj, az, var, tuple(names), shading, coverage)


def sample_triplets(pool: PoseViews, num: int, rng: np.random.Generator, *,
                    positive_max_deg: float = 10.0, other_object_fraction: float = 0.5):
    """Indices ``(i, j, k, i')`` of training samples drawn from a pose pool.

    - ``i``: any pool entry;
    - ``j``: the same object at a pose ``0 < |delta| <= positive_max_deg`` away (any variant);
    - ``k``: with probability ``other_object_fraction`` another object at any pose, else the
      same object at least ``2 * positive_max_deg`` away;
    - ``i'``: the same object and pose (any variant; it gets its own background, noise and
      clutter when the batch is composed).

    Returns:
        int array ``(num, 4)``.
    """
    if len(np.unique(pool.object)) < 2 and other_object_fraction > 0:
        raise ValueError("other_object_fraction > 0 needs a pool with two objects or more.")
    obj, az, var = pool.object, pool.azimuth, pool.variant
    poses = np.unique(az)
    step = np.min(np.diff(poses)) if len(poses) > 1 else 360.0
    if positive_max_deg < step:
        raise ValueError(f"positive_max_deg={positive_max_deg} is below the pool's pose step "
                         f"{step}: no close pose exists; use at least {step}.")
    key = {(o, round(a, 6), v): n for n, (o, a, v) in enumerate(zip(obj, az, var))}
    variants = np.unique(var)
    out = np.empty((num, 4), np.int64)
    anchors = rng.integers(0, len(pool), num)
    for n, i in enumerate(anchors):
        o, a = obj[i], az[i]
        d = render.angle_difference(poses, a)
        close = poses[(d > 0) & (d <= positive_max_deg + 1e-9)]
        j = key[(o, round(float(rng.choice(close)), 6), int(rng.choice(variants)))]
        if rng.random() < other_object_fraction:
            k = int(rng.choice(np.flatnonzero(obj != o)))
        else:
            far = poses[d >= 2 * positive_max_deg - 1e-9]
            k = key[(o, round(float(rng.choice(far)), 6), int(rng.choice(variants)))]
        same = key[(o, round(float(a), 6), int(rng.choice(variants)))]
        out[n] = (i, j, k, same)
    return out


class TripletBatches(SeededBatches):
    """Training batches for ``triplet_network``, composed anew for every step.

    Each of the four images of a sample is its pool layer on a random training-photo
    background with noise, clutter and a shift (``TEST_CONDITIONS``), except that a fraction
    ``clean_fraction`` of them is composed like the templates (flat background, no noise), so
    that the pair term ties template-like and cluttered views of the same pose together.
    A ``batching.SeededBatches``: the samples and the composition of global step ``g`` are
    drawn from the step's generator ``numpy.random.default_rng((seed, g))`` alone, so the run
    is reproducible. (``fit(batches)`` starts at global step ``steps``, see ``SeededBatches``;
    before this class was a ``SeededBatches``, ``fit`` drew batch ``b`` from ``(seed, b)``.)

    Args:
        pool: from ``make_pose_pool``.
        backgrounds: ``(M, S, S)`` training backgrounds (``render.photo_backgrounds``).
        steps: number of batches; batch_size: samples per batch; seed: the seed.
        positive_max_deg, other_object_fraction: see ``sample_triplets``.
        clean_fraction: share of template-like images.
        **kwargs: passed to ``keras.utils.PyDataset``.
    """

    def __init__(self, pool: PoseViews, backgrounds, steps: int, batch_size: int = 64,
                 seed: int = 0, positive_max_deg: float = 10.0,
                 other_object_fraction: float = 0.5, clean_fraction: float = 0.25, **kwargs):
        super().__init__(len(pool), batch_size=batch_size, steps=steps, seed=seed, **kwargs)
        self.pool, self.backgrounds = pool, np.asarray(backgrounds, np.float32)
        self.positive_max_deg = positive_max_deg
        self.other_object_fraction = other_object_fraction
        self.clean_fraction = clean_fraction

    def compose(self, rng: np.random.Generator):
        """The four input arrays and the sample indices ``(B, 4)`` drawn from ``rng``."""
        idx = sample_triplets(self.pool, self.batch_size, rng,
                              positive_max_deg=self.positive_max_deg,
                              other_object_fraction=self.other_object_fraction)
        flat = idx.T.ravel()
        images = render.compose(self.pool.shading[flat], self.pool.coverage[flat], rng,
                                backgrounds=self.backgrounds, **TEST_CONDITIONS)
        clean = rng.random(len(flat)) < self.clean_fraction
        if clean.any():
            images[clean] = render.compose(self.pool.shading[flat[clean]],
                                           self.pool.coverage[flat[clean]], rng)
        return tuple(np.split(images, 4)), idx

    def batch(self, index: int):
        """The four input arrays and the sample indices ``(B, 4)`` of batch ``index``."""
        return self.compose(self.rng(index))

    def make_batch(self, indices, rng):
        # The samples are drawn by ``sample_triplets`` (anchors at random, partners by pose),
        # not taken from ``indices``: only the step's generator is used.
        inputs, _ = self.compose(rng)
        return inputs, np.zeros((self.batch_size,), np.float32)


class EvaluateAtStep(keras.callbacks.Callback):
    """Calls ``evaluate()`` once, after training step ``step``, and keeps its result.

    Used to score the main model at the budget of the dimension sweep without training it
    twice (``self.result`` stays ``None`` if training stops earlier).
    """

    def __init__(self, step: int, evaluate):
        super().__init__()
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}.")
        self.step, self.evaluate, self.result, self._count = int(step), evaluate, None, 0

    def on_train_batch_end(self, batch, logs=None):
        self._count += 1
        if self._count == self.step:
            self.result = self.evaluate()


def pose_retrieval(query_desc, queries: PoseViews, template_desc, templates: PoseViews,
                   thresholds_deg=(10, 20, 40)) -> dict:
    """Nearest-neighbour recognition and pose estimation among templates.

    A query takes the object and the azimuth of its nearest template. Pose errors count only
    for correctly recognised queries (a wrong object is a failure at every threshold), as in
    Wohlhart and Lepetit's evaluation.

    Returns:
        ``{"class_accuracy": ..., "pose_<t>": fraction of queries with the right object and a
        pose error below t degrees, ..., "median_pose_error": over correctly recognised
        queries, "nearest": template index of each query}``.
    """
    nearest = evaluation.nearest_neighbors(query_desc, template_desc)
    right = templates.object[nearest] == queries.object
    error = render.angle_difference(templates.azimuth[nearest], queries.azimuth)
    out = {"class_accuracy": float(right.mean())}
    for t in thresholds_deg:
        out[f"pose_{t}"] = float(np.mean(right & (error < t)))
    out["median_pose_error"] = float(np.median(error[right])) if right.any() else 180.0
    out["nearest"] = nearest
    return out


def normalized_pixels(images) -> np.ndarray:
    """Raw-pixel descriptors: each image flattened, zero mean and unit norm (the baseline)."""
    x = np.asarray(images, np.float32).reshape(len(images), -1)
    x = x - x.mean(1, keepdims=True)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
