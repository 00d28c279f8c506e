"""Convolutional Pose Machines (Wei, Ramakrishna, Kanade, Sheikh, CVPR 2016), scaled down.

A CPM is a sequence of predictors ("stages") that each output one belief map per joint. Stage
1 sees only image features with a small receptive field; every later stage ``t`` sees the same
image features *and* the beliefs of stage ``t - 1``, through convolutions with a large
receptive field, so it can use the spatial context of the other joints (where the head and the
torso are) to fix parts that look alike locally, such as a left and a right wrist:

.. math:: b_t = g_t\\big(x'_z, \\psi(z, b_{t-1})\\big), \\qquad t = 2, \\dots, T

The paper's stages 2+ share a feature trunk (its Fig. 2(e) variant) and grow the receptive
field with 11x11 kernels; here one trunk (stride 4) feeds every stage and later stages use
dilated 3x3 convolutions (dilations 2 and 4: 4 + 8 cells = 48 image pixels per stage). Every
stage is supervised by the masked L2 loss of ``pose.losses`` (intermediate supervision, which
the paper credits with fighting vanishing gradients); ``stage_weights`` turns it off.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.batching import SeededBatches
from bestiary_keras.pose.heatmaps import confidence_maps, keypoints_from_maps, visibility_mask
from bestiary_keras.pose.losses import MaskedL2, pack_targets

__all__ = [
    "CPMBatches",
    "STRIDE",
    "compile_cpm",
    "cpm",
    "feature_trunk",
    "predict_keypoints",
    "refinement_stage",
    "stage_one",
]

STRIDE = 4
"""Image pixels per belief-map cell (two stride-2 steps in the trunk)."""


def _conv(x, filters, kernel, name, dilation=1, strides=1, activation="relu"):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same",
                         dilation_rate=dilation, activation=activation, name=name)(x)


def feature_trunk(images, filters=(32, 64)):
    """The shared image features ``x'``: a stride-4 map with a small receptive field.

    3x3 conv (stride 2), 3x3 conv, max pool, two 3x3 convs: 64x64 images give 16x16 features,
    each seeing a 27x27-pixel window.
    """
    x = layers.Rescaling(1.0 / 255.0, name="trunk_rescale")(images)
    x = _conv(x, filters[0], 3, "trunk_conv1", strides=2)
    x = _conv(x, filters[0], 3, "trunk_conv2")
    x = layers.MaxPooling2D(2, name="trunk_pool")(x)
    x = _conv(x, filters[1], 3, "trunk_conv3")
    return _conv(x, filters[1], 3, "trunk_conv4")


def stage_one(features, num_joints, filters=48):
    """Stage 1: beliefs from local image evidence only (one more 3x3 conv, then 1x1 convs)."""
    x = _conv(features, filters, 3, "stage1_conv")
    x = _conv(x, filters, 1, "stage1_conv1x1")
    return _conv(x, num_joints, 1, "stage_1", activation=None)


def refinement_stage(features, beliefs, num_joints, index, filters=48, dilations=(2, 4)):
    """Stage ``index`` >= 2: features and the previous beliefs, a large receptive field.

    Concatenates ``x'`` with ``b_{t-1}``, applies one dilated 3x3 convolution per entry of
    ``dilations`` (each adds ``2 * dilation`` cells of context), then two 1x1 convolutions.
    """
    x = layers.Concatenate(name=f"stage{index}_concat")([features, beliefs])
    for k, dilation in enumerate(dilations):
        x = _conv(x, filters, 3, f"stage{index}_conv{k + 1}", dilation=dilation)
    x = _conv(x, filters, 1, f"stage{index}_conv1x1")
    return _conv(x, num_joints, 1, f"stage_{index}", activation=None)


def cpm(input_shape=(64, 64, 3), num_joints: int = 14, *, stages: int = 3,
        trunk_filters=(32, 64), stage_filters: int = 48, dilations=(2, 4),
        name: str = "cpm") -> keras.Model:
    """A Convolutional Pose Machine with one belief-map output per stage.

    Args:
        input_shape: ``(H, W, 3)`` with H and W multiples of ``STRIDE`` (uint8-range pixels;
            the model rescales them).
        num_joints: belief maps per stage.
        stages: ``T`` >= 1.
        trunk_filters: widths of the trunk's two resolutions.
        stage_filters: width of every stage.
        dilations: dilation rates of a refinement stage's 3x3 convolutions.

    Returns:
        A ``keras.Model`` mapping images to a list of ``stages`` maps
        ``(N, H / 4, W / 4, num_joints)``, named ``stage_1`` ... ``stage_T``.
    """
    if len(input_shape) != 3 or input_shape[0] % STRIDE or input_shape[1] % STRIDE:
        raise ValueError(f"input_shape must be (H, W, C) with H and W multiples of {STRIDE}, got "
                         f"{input_shape!r}; e.g. (64, 64, 3).")
    if int(stages) != stages or stages < 1:
        raise ValueError(f"stages must be an int >= 1, got {stages!r}.")
    if num_joints < 1:
        raise ValueError(f"num_joints must be >= 1, got {num_joints!r}.")
    images = keras.Input(input_shape, name="image")
    features = feature_trunk(images, trunk_filters)
    beliefs = [stage_one(features, num_joints, stage_filters)]
    for t in range(2, int(stages) + 1):
        beliefs.append(refinement_stage(features, beliefs[-1], num_joints, t, stage_filters,
                                        dilations))
    return keras.Model(images, beliefs, name=name)


def compile_cpm(model, *, learning_rate=1e-3, stage_weights=None, steps=None, training=None):
    """Compiles ``model`` with the masked L2 loss on every stage.

    Args:
        stage_weights: one weight per stage; default all 1 (intermediate supervision).
            ``(0, ..., 0, 1)`` trains on the last stage's loss only (the ablation).
        steps: when given, the learning rate decays by 10x for the last quarter of the steps.
        training: ``None`` (``model.compile``) or a ``distributed.TrainingPlan``, which
            compiles through ``training.compile`` (its precision, XLA and devices; build the
            model under ``training.scope()``) and makes the optimizer's variables at once.

    Returns:
        The model to train: ``model``, or with a plan what ``training.compile`` returns
        (``model`` itself in float32; under mixed precision the same layers with float32
        outputs).
    """
    stages = len(model.outputs)
    weights = [1.0] * stages if stage_weights is None else [float(w) for w in stage_weights]
    if len(weights) != stages:
        raise ValueError(f"stage_weights has {len(weights)} entries, the model has {stages} "
                         "stages; give one weight per stage.")
    if steps is not None:
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(0.75 * steps)], [learning_rate, learning_rate / 10])
    if training is not None:
        return training.compile(model, optimizer=lambda: keras.optimizers.Adam(learning_rate),
                                loss=[MaskedL2() for _ in range(stages)], loss_weights=weights)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=[MaskedL2() for _ in range(stages)], loss_weights=weights)
    return model


class CPMBatches(SeededBatches):
    """Training batches for a CPM: images and, for each stage, the packed target maps.

    ``make_batch`` builds the confidence maps (``sigma`` image pixels) and the visibility mask
    of the batch's keypoints and returns ``(images float32, (packed,) * stages)``. There is no
    flip augmentation: every figure faces the camera, and a mirrored figure would turn its
    back to us (its right side on the image's right), which no test image does.
    """

    def __init__(self, images, keypoints, *, stages: int, sigma: float, batch_size: int,
                 steps: int, seed: int = 0, **kwargs):
        super().__init__(len(images), batch_size=batch_size, steps=steps, seed=seed, **kwargs)
        self.images = np.asarray(images)
        self.keypoints = np.asarray(keypoints, np.float32)
        self.stages, self.sigma = int(stages), float(sigma)
        height, width = self.images.shape[1:3]
        self.image_size, self.map_size = (height, width), (height // STRIDE, width // STRIDE)

    def targets(self, indices):
        """Packed ``(maps, mask)`` of the examples at ``indices`` (see ``pack_targets``)."""
        keypoints = self.keypoints[indices]
        maps = confidence_maps(keypoints, self.image_size, self.map_size, self.sigma)
        return pack_targets(maps, visibility_mask(keypoints))

    def make_batch(self, indices, rng):
        del rng  # no random augmentation (see the class docstring)
        packed = self.targets(indices)
        return self.images[indices].astype(np.float32), tuple(packed for _ in range(self.stages))


def predict_keypoints(model, images, *, batch_size: int = 64):
    """Every stage's keypoints for ``images``: a list of (N, J, 3) ``(x, y, score)`` arrays."""
    images = np.asarray(images, np.float32)
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keypoints_from_maps(maps, images.shape[1:3]) for maps in outputs]
