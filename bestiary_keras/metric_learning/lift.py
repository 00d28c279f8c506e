"""LIFT: Learned Invariant Feature Transform (notebook 17).

Reference: K. M. Yi, E. Trulls, V. Lepetit, P. Fua, "LIFT: Learned Invariant Feature
Transform", ECCV 2016.

Three networks and the differentiable layers that join them into one pipeline:

- ``detector_net`` (DET): a fully convolutional score map ``S`` over a patch (or a whole image);
  ``SoftArgmax`` turns the map into a differentiable keypoint location (the softmax-weighted
  mean of the pixel coordinates) and a score (the softmax-weighted mean of the map).
- ``CropAndRotate`` (the spatial transformer ``G(P, x, theta)``): a ``crop_size`` crop of ``P``
  centred at ``x`` and rotated by ``theta``, by bilinear sampling with
  ``keras.ops.image.map_coordinates``; differentiable in the image, the location and the angle.
- ``orientation_net`` (ORI): the crop's orientation as a unit vector ``(cos, sin)``.
- DESC: ``siamese.patch_descriptor`` (Simo-Serra et al.'s network, as in the paper).

Training follows the paper: DESC first (crops at the feature point, aligned with the known
rotation: the paper used the orientations of its SfM points), then ORI with DESC frozen, then
DET with ORI and DESC frozen, each stage on its part of the single global cost
``losses.lift_global_cost`` (``LiftCost`` here); ``desc_stage``, ``ori_stage``, ``det_stage``
build the three training models, which all output ``[d1 | d2 | d3 | s1..s4]``.

``lift_pipeline`` runs the trained networks on whole images (detection, orientation,
description) next to OpenCV's SIFT and evaluates both.
"""

from __future__ import annotations


import keras
from keras import layers, ops

from bestiary_keras.metric_learning import losses
from bestiary_keras.metric_learning.siamese import square_side

__all__ = [
    "crop_and_rotate", "crop_coordinates", "CropAndRotate", "desc_stage", "det_stage",
    "detector_net", "hardest_negative_descriptors", "LiftCost", "ori_stage", "orientation_net",
    "PackLiftOutputs", "SoftArgmax", "Standardize",
]


# --- the spatial transformer ----------------------------------------------------------------

def crop_coordinates(centres, angles, crop_size: int):
    """Sampling coordinates of rotated crops: ``(N, crop_size, crop_size)`` x and y.

    Crop pixel ``(i, j)`` samples the image at ``centre + R(theta) (j - s/2, i - s/2)`` with
    ``s = crop_size`` and ``R(theta) = [[cos, -sin], [sin, cos]]`` in image coordinates (x right,
    y down), so the centre lands on crop pixel ``(s/2, s/2)`` (the convention of
    ``patches.extract_patches``). A view rotated by ``alpha`` about the centre gives the same
    crop with ``theta + alpha``.

    Args:
        centres: ``(N, 2)`` as ``(x, y)`` in pixels.
        angles: ``(N,)`` radians, or ``(N, 2)`` as ``(cos, sin)``.
    """
    offsets = ops.cast(ops.arange(crop_size), "float32") - crop_size / 2
    dx = ops.reshape(offsets, (1, 1, crop_size))
    dy = ops.reshape(offsets, (1, crop_size, 1))
    if len(angles.shape) == 2:
        cos, sin = angles[:, 0], angles[:, 1]
    else:
        cos, sin = ops.cos(angles), ops.sin(angles)
    cos = ops.reshape(cos, (-1, 1, 1))
    sin = ops.reshape(sin, (-1, 1, 1))
    cx = ops.reshape(centres[:, 0], (-1, 1, 1))
    cy = ops.reshape(centres[:, 1], (-1, 1, 1))
    x = cx + cos * dx - sin * dy
    y = cy + sin * dx + cos * dy
    return x, y


def crop_and_rotate(images, centres, angles, crop_size: int, image_index=None):
    """``G(P, x, theta)``: bilinear rotated crops, differentiable (see ``CropAndRotate``).

    Args:
        images: ``(B, H, W, 1)``.
        centres: ``(N, 2)`` crop centres ``(x, y)``.
        angles: ``(N,)`` radians or ``(N, 2)`` ``(cos, sin)``.
        crop_size: side of the crop.
        image_index: ``(N,)`` which image each crop comes from (default: crop ``n`` from image
            ``n``, ``N = B``).

    Returns:
        ``(N, crop_size, crop_size, 1)``; pixels outside the image are 0.
    """
    x, y = crop_coordinates(ops.cast(centres, "float32"), ops.cast(angles, "float32"), crop_size)
    n = ops.shape(x)[0]
    if image_index is None:
        index = ops.cast(ops.arange(n), "float32")
    else:
        index = ops.cast(image_index, "float32")
    b = ops.broadcast_to(ops.reshape(index, (-1, 1, 1)), ops.shape(x))
    coordinates = ops.stack([ops.stop_gradient(b), y, x], axis=0)
    crops = ops.image.map_coordinates(images[..., 0], coordinates, order=1,
                                      fill_mode="constant", fill_value=0.0)
    return crops[..., None]


@keras.saving.register_keras_serializable(package="bestiary_keras")
class CropAndRotate(layers.Layer):
    """The spatial transformer ``G(P, x, theta)`` of LIFT as a layer.

    ``layer(images, centres=None, angles=None)``: ``centres`` ``(B, 2)`` as ``(x, y)`` (default:
    the middle of each image, ``(W/2, H/2)``), ``angles`` ``(B,)`` radians or ``(B, 2)``
    ``(cos, sin)`` such as ORI's output (default: no rotation).

    Args:
        crop_size: side of the output crop.
    """

    def __init__(self, crop_size: int = 32, **kwargs):
        super().__init__(**kwargs)
        if int(crop_size) < 2:
            raise ValueError(f"crop_size must be >= 2, got {crop_size}.")
        self.crop_size = int(crop_size)

    def call(self, images, centres=None, angles=None):
        shape = ops.shape(images)
        if centres is None:
            middle = ops.stack([ops.cast(shape[2], "float32") / 2,
                                ops.cast(shape[1], "float32") / 2])
            centres = ops.ones((shape[0], 1), "float32") * middle[None, :]
        if angles is None:
            angles = ops.zeros((shape[0],), "float32")
        return crop_and_rotate(images, centres, angles, self.crop_size)

    def compute_output_shape(self, images_shape, centres_shape=None, angles_shape=None):
        return (images_shape[0], self.crop_size, self.crop_size, 1)

    def get_config(self):
        return {**super().get_config(), "crop_size": self.crop_size}


@keras.saving.register_keras_serializable(package="bestiary_keras")
class Standardize(layers.Layer):
    """Per-crop zero mean and unit standard deviation (``patches.normalize_patches`` in the
    graph): ORI and DESC see crops normalised like the patches of notebook 15."""

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=(1, 2, 3), keepdims=True))
        return (x - mean) / (std + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


# --- DET --------------------------------------------------------------------------------------

def detector_net(input_shape=(None, None, 1), *, filters=(8,), kernel_size: int = 5,
                 name: str = "det") -> keras.Model:
    """DET: a fully convolutional score map, the size of its input.

    The paper uses one convolution with a 25x25 kernel and a piecewise-linear activation;
    here, 5x5 convolutions (ReLU, ``filters`` channels) and a linear 1-channel output, ``same``
    padding, so the same network scores a 64x64 training patch or a whole test image. It works
    at full resolution, so keep it small: it is the most expensive network per pixel.

    Args:
        input_shape: ``(height, width, channels)``; ``None`` sides (the default) take patches
            and whole images alike.
        filters: widths of the hidden convolutions (may be empty: one linear filter).
        kernel_size: odd side of every convolution kernel.
        name: model name.

    Returns:
        A ``keras.Model`` ``(N, H, W, 1) -> (N, H, W)``.
    """
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number (so that the score map "
                         f"stays centred on its pixels), got kernel_size={kernel_size}.")
    if any(int(f) < 1 for f in filters):
        raise ValueError(f"filters must be positive widths, got filters={tuple(filters)}.")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, kernel_size, padding="same", activation="relu",
                          name=f"conv{i + 1}")(x)
    x = layers.Conv2D(1, kernel_size, padding="same", name="score")(x)
    outputs = ops.squeeze(x, axis=-1)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class SoftArgmax(layers.Layer):
    """Differentiable keypoint location and score from a score map.

    Over the central window of the map (``margin`` pixels dropped on each side, so that a crop
    around the location stays inside the patch), ``w = softmax(beta * S)``; the location is
    ``sum w * (x, y)`` and the score ``sum w * S`` (a soft maximum of the map).

    Args:
        margin: pixels left out at each border.
        beta: softmax sharpness.

    Returns:
        ``(locations (N, 2) as (x, y) in pixels of the whole map, scores (N,))``.
    """

    def __init__(self, margin: int = 16, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if int(margin) < 0:
            raise ValueError(f"margin must be >= 0 pixels, got margin={margin}.")
        if float(beta) <= 0:
            raise ValueError(f"beta must be positive (larger is closer to a hard argmax), got "
                             f"beta={beta}.")
        self.margin = int(margin)
        self.beta = float(beta)

    def call(self, score_map):
        m = self.margin
        s = score_map[:, m:-m, m:-m] if m > 0 else score_map
        h, w = ops.shape(s)[1], ops.shape(s)[2]
        flat = ops.reshape(s, (ops.shape(s)[0], -1))
        weights = ops.softmax(self.beta * flat, axis=-1)
        ys = ops.cast(ops.arange(h), "float32") + m
        xs = ops.cast(ops.arange(w), "float32") + m
        grid_x = ops.reshape(ops.broadcast_to(xs[None, :], (h, w)), (-1,))
        grid_y = ops.reshape(ops.broadcast_to(ys[:, None], (h, w)), (-1,))
        # the location in float32, also when the map is float16 (mixed policy)
        x = ops.sum(ops.cast(weights, "float32") * grid_x, axis=-1)
        y = ops.sum(ops.cast(weights, "float32") * grid_y, axis=-1)
        score = ops.sum(weights * flat, axis=-1)
        return ops.stack([x, y], axis=-1), score

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "beta": self.beta}


# --- ORI ----------------------------------------------------------------------------------

def orientation_net(input_shape=(32, 32, 1), *, filters=(16, 32), hidden_units: int = 64,
                    name: str = "ori") -> keras.Model:
    """ORI: the orientation of a crop as a unit vector ``(cos theta, sin theta)``.

    Two 5x5 convolutions with max pooling, a hidden layer, two linear outputs normalised to
    unit length (the paper predicts the two numbers and takes ``atan2``).

    Args:
        input_shape: ``(c, c, channels)``, a square crop whose side ``c`` is divisible by
            ``2 ** len(filters)`` (one 2x2 pooling per convolution).
        filters: widths of the convolutions.
        hidden_units: width of the hidden dense layer.
        name: model name.

    Returns:
        A ``keras.Model`` ``(N, c, c, channels) -> (N, 2)`` with unit rows.
    """
    step = 2 ** len(filters)
    square_side(input_shape, "crop", multiple=step, minimum=step,
                why=f"one 2x2 pooling per convolution in filters={tuple(filters)}")
    inputs = keras.Input(shape=tuple(input_shape), name="crop")
    x = inputs
    for i, width in enumerate(filters):
        x = layers.Conv2D(width, 5, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(hidden_units, activation="relu", name="hidden")(x)
    x = layers.Dense(2, name="cos_sin")(x)
    outputs = layers.UnitNormalization(name="unit")(x)
    return keras.Model(inputs, outputs, name=name)


# --- the three training stages --------------------------------------------------------------

@keras.saving.register_keras_serializable(package="bestiary_keras")
class PackLiftOutputs(layers.Layer):
    """``[d1 | d2 | d3 | s1..s4]``, with zeros for ``d3`` or the scores where a stage has none."""

    def call(self, d1, d2, d3=None, scores=None):
        if d3 is None:
            d3 = ops.zeros_like(d1)
        if scores is None:
            scores = ops.zeros_like(d1[:, :1]) * ops.zeros((1, 4), d1.dtype)
        return ops.concatenate([d1, d2, d3, scores], axis=-1)

    def compute_output_shape(self, d1_shape, d2_shape, d3_shape=None, scores_shape=None):
        return (d1_shape[0], 3 * d1_shape[1] + 4)


def _check_sizes(patch_size, crop_size):
    if int(crop_size) < 2 or int(crop_size) > int(patch_size):
        raise ValueError(f"crop_size must be between 2 and patch_size={patch_size} (G crops "
                         f"inside the patch), got crop_size={crop_size}.")


def desc_stage(desc: keras.Model, *, patch_size: int = 64, crop_size: int = 32,
               name: str = "desc_stage") -> keras.Model:
    """Stage 1, DESC: crops at the patch centres; ``P2``'s crop rotated by the known angle.

    Inputs ``P1, P2, P3`` ``(N, S, S, 1)`` and ``angle_2`` ``(N,)`` (radians, the rotation of
    view 2 at the point). Output ``[d1 | d2 | d3 | 0 0 0 0]``.

    Args:
        desc: the descriptor network ``(N, c, c, 1) -> (N, D)`` (trained by this stage).
        patch_size: side ``S`` of the quadruplet patches.
        crop_size: side ``c`` of the crops ``G`` takes (at most ``S``).
        name: model name.

    Returns:
        The training model (compile it with ``LiftCost(D, ("pair", "negative"))``).
    """
    _check_sizes(patch_size, crop_size)
    p = [keras.Input((patch_size, patch_size, 1), name=f"P{k}") for k in (1, 2, 3)]
    angle = keras.Input((), name="angle_2")
    crop = CropAndRotate(crop_size, name="G")
    norm = Standardize(name="standardize")
    d1 = desc(norm(crop(p[0])))
    d2 = desc(norm(crop(p[1], angles=angle)))
    d3 = desc(norm(crop(p[2])))
    out = PackLiftOutputs(name="packed")(d1, d2, d3)
    return keras.Model([*p, angle], out, name=name)


def ori_stage(ori: keras.Model, desc: keras.Model, *, patch_size: int = 64, crop_size: int = 32,
              name: str = "ori_stage") -> keras.Model:
    """Stage 2, ORI (DESC frozen by the caller): the crops of ``P1`` and ``P2`` at their centre,
    each rotated by ORI's own estimate; the pair term makes the two rotated crops describe
    alike (the only term that involves the orientation).

    Inputs ``P1, P2``; output ``[d1 | d2 | 0 | 0 0 0 0]``.

    Args:
        ori: the orientation network (trained by this stage).
        desc: the descriptor network (set ``desc.trainable = False`` before compiling).
        patch_size, crop_size, name: as in ``desc_stage``.

    Returns:
        The training model (compile it with ``LiftCost(D, ("pair",))``).
    """
    _check_sizes(patch_size, crop_size)
    p = [keras.Input((patch_size, patch_size, 1), name=f"P{k}") for k in (1, 2)]
    crop = CropAndRotate(crop_size, name="G")
    norm = Standardize(name="standardize")
    described = []
    for patch in p:
        upright = norm(crop(patch))
        described.append(desc(norm(crop(patch, angles=ori(upright)))))
    out = PackLiftOutputs(name="packed")(*described)
    return keras.Model(p, out, name=name)


def det_stage(det: keras.Model, ori: keras.Model, desc: keras.Model, *, patch_size: int = 64,
              crop_size: int = 32, beta: float = 1.0, name: str = "det_stage") -> keras.Model:
    """Stage 3, DET (ORI and DESC frozen by the caller): the whole pipeline
    ``h(G(P, x, ori(G(P, x))))`` with ``x = softargmax(S(P))`` on ``P1`` and ``P2`` (the pair
    term), and the detector scores of ``P1..P4`` (the classification term).

    Inputs ``P1..P4``; output ``[d1 | d2 | 0 | s1 s2 s3 s4]``.

    Args:
        det: the detector network (trained by this stage).
        ori, desc: frozen by the caller (``trainable = False``) before compiling.
        patch_size, crop_size, name: as in ``desc_stage``; the softargmax leaves a margin of
            ``crop_size // 2`` so that the crop stays inside the patch.
        beta: softargmax sharpness.

    Returns:
        The training model (compile it with ``LiftCost(D, ("pair", "class"))``).
    """
    _check_sizes(patch_size, crop_size)
    p = [keras.Input((patch_size, patch_size, 1), name=f"P{k}") for k in (1, 2, 3, 4)]
    crop = CropAndRotate(crop_size, name="G")
    norm = Standardize(name="standardize")
    soft = SoftArgmax(margin=crop_size // 2, beta=beta, name="softargmax")
    described, scores = [], []
    for k, patch in enumerate(p):
        location, score = soft(det(patch))
        scores.append(layers.Reshape((1,), name=f"score{k + 1}")(score))
        if k < 2:
            upright = norm(crop(patch, location))
            described.append(desc(norm(crop(patch, location, ori(upright)))))
    all_scores = layers.Concatenate(name="scores")(scores)
    out = PackLiftOutputs(name="packed")(described[0], described[1], None, all_scores)
    return keras.Model(p, out, name=name)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class LiftCost(keras.losses.Loss):
    """``losses.lift_global_cost`` on the packed output ``[d1 | d2 | d3 | s1..s4]`` of the stage
    models.

    ``y_true`` is unused unless ``mine_negatives``; then it holds the scene-point id of each
    quadruplet, and the negative of row ``i`` is the closer of ``d3_i`` and the hardest
    in-batch ``d2_j`` of another point (HardNet-style mining, as in
    ``losses.hardest_negative_contrastive_loss``; LIFT's paper uses Simo-Serra et al.'s, for
    which see ``losses.mined_contrastive_loss``).

    Args:
        descriptor_dim: ``D``.
        terms: the terms this stage trains (``("pair", "negative")`` for DESC, ``("pair",)`` for
            ORI, ``("pair", "class")`` for DET).
        margin, gamma: see ``losses.lift_global_cost``.
        mine_negatives: pick the hardest negative in the batch (needs point ids as ``y_true``).
        squared: the slide's squared-norm form (``losses.lift_global_cost``; its margin is 1).
    """

    def __init__(self, descriptor_dim: int, terms=("pair", "negative", "class"),
                 margin: float = 4.0, gamma: float = 1.0, mine_negatives: bool = False,
                 squared: bool = False, name: str = "lift_cost", **kwargs):
        super().__init__(name=name, **kwargs)
        self.descriptor_dim = int(descriptor_dim)
        self.terms = tuple(terms)
        self.margin, self.gamma = float(margin), float(gamma)
        self.mine_negatives = bool(mine_negatives)
        self.squared = bool(squared)

    def call(self, y_true, y_pred):
        d = self.descriptor_dim
        d1, d2, d3 = y_pred[:, :d], y_pred[:, d:2 * d], y_pred[:, 2 * d:3 * d]
        if self.mine_negatives:
            d3 = hardest_negative_descriptors(d1, d2, d3, y_true)
        return losses.lift_global_cost(d1, d2, d3, y_pred[:, 3 * d:3 * d + 4],
                                       margin=self.margin, gamma=self.gamma, terms=self.terms,
                                       squared=self.squared)

    def get_config(self):
        return {**super().get_config(), "descriptor_dim": self.descriptor_dim,
                "terms": list(self.terms), "margin": self.margin, "gamma": self.gamma,
                "mine_negatives": self.mine_negatives, "squared": self.squared}


def hardest_negative_descriptors(desc_1, desc_2, desc_3, point_ids):
    """For each row ``i``, whichever is closer to ``desc_1[i]``: ``desc_3[i]`` or the hardest
    ``desc_2[j]`` of another scene point in the batch. Returns ``(B, D)``."""
    distances = losses.euclidean_distance(desc_1[:, None, :], desc_2[None, :, :])  # (B, B)
    ids = ops.reshape(point_ids, (-1,))
    same = ops.equal(ids[:, None], ids[None, :])
    masked = ops.where(same, ops.max(distances) + 1.0, distances)
    j = ops.argmin(masked, axis=1)
    mined = ops.take(desc_2, j, axis=0)
    use_mined = ops.min(masked, axis=1) < losses.euclidean_distance(desc_1, desc_3)
    return ops.where(use_mined[:, None], mined, desc_3)
