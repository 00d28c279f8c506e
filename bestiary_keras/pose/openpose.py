"""OpenPose: the two-branch multi-stage network, its targets and its per-stage loss.

Cao, Simon, Wei, Sheikh, *Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields*,
CVPR 2017 (arXiv:1611.08050), Fig. 3. A feature trunk (the first 10 layers of VGG-19 in the
paper; here CPM's stride-4 trunk, ``cpm.feature_trunk``, shared by the chapter) gives ``F``;
stage 1 predicts part confidence maps ``S^1 = rho^1(F)`` and part affinity fields
``L^1 = phi^1(F)`` in two branches; every later stage takes ``F`` and both previous
predictions::

    S^t = rho^t(F, S^{t-1}, L^{t-1}),    L^t = phi^t(F, S^{t-1}, L^{t-1}),    t >= 2,

and every stage is supervised (intermediate supervision) with an L2 loss, masked by ``W(p)``
where the annotation is missing (the paper's Eq. 3-5, ``pose.losses.masked_l2``)::

    f_S^t = sum_j sum_p W(p) ||S_j^t(p) - S_j^*(p)||^2,
    f_L^t = sum_c sum_p W(p) ||L_c^t(p) - L_c^*(p)||^2,    f = sum_t (f_S^t + f_L^t).

Decoding (peaks, PAF line integral, matching, assembly) is in ``pose.decoding``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.batching import SeededBatches
from bestiary_keras.datasets.figures import check_keypoints
from bestiary_keras.pose.cpm import STRIDE, feature_trunk
from bestiary_keras.pose.heatmaps import confidence_maps
from bestiary_keras.pose.losses import MaskedL2, pack_targets
from bestiary_keras.pose.paf import check_limbs, part_affinity_fields

__all__ = [
    "OpenPoseBatches",
    "compile_openpose",
    "loss_masks",
    "openpose",
    "openpose_targets",
    "output_names",
    "stage_branch",
]


def stage_branch(x, out_channels, *, filters=48, dilations=(1, 1, 1), name="branch"):
    """One branch of one stage: a 3x3 convolution per entry of ``dilations`` (its dilation
    rate), a 1x1 convolution and a linear 1x1 output. The paper: 3 x 3x3 in stage 1 and
    5 x 7x7 in later stages, 128 filters; dilated 3x3s give later stages their large
    receptive field at a fraction of the cost (as in ``cpm.refinement_stage``)."""
    for k, rate in enumerate(dilations):
        x = layers.Conv2D(filters, 3, padding="same", dilation_rate=int(rate), activation="relu",
                          name=f"{name}_conv{k + 1}")(x)
    x = layers.Conv2D(filters, 1, activation="relu", name=f"{name}_conv{len(dilations) + 1}")(x)
    return layers.Conv2D(out_channels, 1, name=f"{name}_out")(x)


def output_names(stages: int) -> list[str]:
    """The model's outputs, in order: ``stage{t}_pafs`` and ``stage{t}_maps`` for t = 1..T."""
    return [f"stage{t}_{kind}" for t in range(1, stages + 1) for kind in ("pafs", "maps")]


def openpose(input_shape=(64, 64, 3), num_joints: int = 14, num_limbs: int = 13, *,
             stages: int = 3, trunk_filters=(32, 64), filters: int = 48,
             first_dilations=(1, 1, 1), refine_dilations=(1, 2, 4),
             name: str = "openpose") -> keras.Model:
    """The two-branch multi-stage OpenPose network (Fig. 3 of the paper), scaled down.

    Args:
        input_shape: ``(H, W, 3)`` uint8-range images (rescaled inside), H and W multiples of
            the trunk's stride (``cpm.STRIDE`` = 4).
        num_joints: ``J``, part confidence maps.
        num_limbs: ``C``, part affinity fields (``2 C`` channels).
        stages: ``T`` (the paper: 6).
        trunk_filters: widths of the shared trunk (``cpm.feature_trunk``, stride 4; the paper:
            VGG-19's first 10 layers, stride 8).
        filters: width of every stage's convolutions (the paper: 128).
        first_dilations: stage 1's 3x3 convolutions (one per entry, its dilation rate).
        refine_dilations: the same for stages ``t >= 2``.
        name: model name.

    Returns:
        A ``keras.Model`` with a dict of outputs ``output_names(stages)``: ``stage{t}_pafs``
        ``(N, H / 4, W / 4, 2 C)`` and ``stage{t}_maps`` ``(N, H / 4, W / 4, J)``.
    """
    for arg, value in (("num_joints", num_joints), ("num_limbs", num_limbs), ("stages", stages),
                       ("filters", filters)):
        if int(value) != value or value < 1:
            raise ValueError(f"{arg} must be a whole number >= 1, got {value!r}.")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}.")
    if input_shape[0] % STRIDE or input_shape[1] % STRIDE:
        raise ValueError(
            f"input_shape {tuple(input_shape[:2])} is not divisible by the trunk's stride "
            f"{STRIDE}: use a multiple of {STRIDE}, e.g. {(input_shape[0] // STRIDE + 1) * STRIDE}."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    features = feature_trunk(inputs, trunk_filters)
    outputs = {}
    pafs = stage_branch(features, 2 * num_limbs, filters=filters, dilations=first_dilations,
                        name="stage1_L")
    maps = stage_branch(features, num_joints, filters=filters, dilations=first_dilations,
                        name="stage1_S")
    outputs["stage1_pafs"], outputs["stage1_maps"] = pafs, maps
    for t in range(2, int(stages) + 1):
        x = layers.Concatenate(name=f"stage{t}_input")([features, maps, pafs])
        pafs = stage_branch(x, 2 * num_limbs, filters=filters, dilations=refine_dilations,
                            name=f"stage{t}_L")
        maps = stage_branch(x, num_joints, filters=filters, dilations=refine_dilations,
                            name=f"stage{t}_S")
        outputs[f"stage{t}_pafs"], outputs[f"stage{t}_maps"] = pafs, maps
    # layers named like the outputs, so that Keras matches losses and targets by name
    outputs = {key: layers.Identity(name=key)(value) for key, value in outputs.items()}
    return keras.Model(inputs, outputs, name=name)


def loss_masks(keypoints, person_masks, limbs, map_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``W(p)`` per channel: 0 on the pixels of a person whose joint (or limb end) is not labelled.

    A joint outside the image is unlabelled (``v = 0``): its target has no peak, although part
    of the person (and of the limb leading to it) is visible. Instead of punishing the network
    for a response there, the loss ignores that person's region (its mask, on the maps' grid)
    in that joint's channel, and in the channels of the limbs that end at the joint. Everything
    else is supervised (``W = 1``): every person of the generated images is annotated.

    Args:
        keypoints: ``(N, P, J, 3)``.
        person_masks: ``(N, P, H, W)`` bool, the visible pixels of each person.
        limbs: ``(C, 2)``.
        map_size: side of the maps (must divide the image side).

    Returns:
        float32 ``(N, h, w, J)`` and ``(N, h, w, 2 C)`` masks.
    """
    keypoints = check_keypoints(keypoints, num_joints=None)
    person_masks = np.asarray(person_masks, bool)
    n, p, height, width = person_masks.shape
    if keypoints.shape[:2] != (n, p) or height % map_size or width % map_size:
        raise ValueError(
            f"person_masks {person_masks.shape} must match keypoints {keypoints.shape} (N, P) "
            f"and map_size={map_size} must divide the image size {height}x{width}."
        )
    limbs = check_limbs(limbs, keypoints.shape[2])
    cells = person_masks.reshape(n, p, map_size, height // map_size, map_size,
                                 width // map_size).any((3, 5))          # (N, P, h, w)
    present = (keypoints[..., 2] > 0).any(-1)                            # (N, P)
    missing = present[..., None] & (keypoints[..., 2] == 0)              # (N, P, J)
    limb_missing = missing[..., limbs[:, 0]] | missing[..., limbs[:, 1]]  # (N, P, C)
    joint_off = np.einsum("npj,nphw->nhwj", missing.astype(np.float32), cells.astype(np.float32))
    limb_off = np.einsum("npc,nphw->nhwc", limb_missing.astype(np.float32),
                         cells.astype(np.float32))
    map_mask = (joint_off == 0).astype(np.float32)
    paf_mask = np.repeat((limb_off == 0).astype(np.float32), 2, axis=-1)
    return map_mask, paf_mask


def openpose_targets(keypoints, person_masks, limbs, *, image_size: int, map_size: int,
                     sigma: float, limb_width: float = 1.0, masked: bool = True):
    """Packed ``y_true`` of both branches (``pose.losses.pack_targets``: maps, then ``W``).

    Returns:
        ``(maps_true, pafs_true)``: float32 ``(N, h, w, 2 J)`` and ``(N, h, w, 4 C)``.
    """
    maps = confidence_maps(keypoints, image_size, map_size, sigma, num_joints=None)
    pafs = part_affinity_fields(keypoints, limbs, image_size, map_size, limb_width)
    if masked:
        map_mask, paf_mask = loss_masks(keypoints, person_masks, limbs, map_size)
    else:
        map_mask, paf_mask = np.ones_like(maps), np.ones_like(pafs)
    return pack_targets(maps, map_mask), pack_targets(pafs, paf_mask)


def compile_openpose(model, learning_rate=1e-3, *, steps: int | None = None, training=None,
                     **compile_kwargs):
    """Compiles with Adam and one ``MaskedL2`` per stage and branch (their sum is the paper's f).

    Args:
        learning_rate: Adam's step size.
        steps: when given, the learning rate drops 10x for the last quarter of the steps.
        training: ``None`` (``model.compile``) or a ``distributed.TrainingPlan``, which
            compiles through ``training.compile`` (its precision, XLA and devices; build the
            model under ``training.scope()``) and makes the optimizer's variables at once.
        compile_kwargs: more arguments for ``compile`` (``metrics``, ``run_eagerly``, ...).

    Returns:
        The model to train: ``model``, or with a plan what ``training.compile`` returns
        (``model`` itself in float32; under mixed precision the same layers with float32
        outputs).
    """
    if steps is not None:
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(0.75 * steps)], [learning_rate, learning_rate / 10])
    loss = {key: MaskedL2(name=f"{key}_l2") for key in model.output_names}
    if training is not None:
        return training.compile(model, optimizer=lambda: keras.optimizers.Adam(learning_rate),
                                loss=loss, **compile_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, **compile_kwargs)
    return model


class OpenPoseBatches(SeededBatches):
    """Training batches: images and the packed targets of every stage (the same per stage).

    Args:
        images: ``(N, H, W, 3)`` uint8.
        maps_true, pafs_true: ``openpose_targets``' outputs.
        stages: the model's number of stages.
        batch_size, steps, seed: as in ``SeededBatches``.
    """

    def __init__(self, images, maps_true, pafs_true, *, stages: int, batch_size: int,
                 steps: int, seed: int = 0, **kwargs):
        super().__init__(len(images), batch_size=batch_size, steps=steps, seed=seed, **kwargs)
        if not len(images) == len(maps_true) == len(pafs_true):
            raise ValueError(
                f"images ({len(images)}), maps_true ({len(maps_true)}) and pafs_true "
                f"({len(pafs_true)}) must have the same length."
            )
        self.images, self.maps_true, self.pafs_true = images, maps_true, pafs_true
        self.names = output_names(stages)

    def make_batch(self, indices, rng):
        maps, pafs = self.maps_true[indices], self.pafs_true[indices]
        targets = {key: (pafs if key.endswith("pafs") else maps) for key in self.names}
        return self.images[indices].astype(np.float32), targets

