"""Zhou et al. (2017): the disparity network, the pose/explainability network, the trainer.

* ``disp_net``: an encoder-decoder with skip connections that predicts disparity at 4 scales
  (full, 1/2, 1/4, 1/8), each ``alpha * sigmoid(x) + beta`` (the paper: ``10 sigmoid + 0.01``),
  here set by a depth range: depth = 1 / disparity lies in ``[min_depth, max_depth]``.
* ``pose_exp_net``: the target and the source frames stacked on the channels; strided
  convolutions, a 1x1 convolution to ``6 * num_sources`` numbers, a global average, times
  0.01 (the paper's scaling): ``[t_x, t_y, t_z, r_x, r_y, r_z]`` per source. Optionally an
  up-convolutional decoder predicts the explainability masks ``E_s`` at the same 4 scales.
* ``ViewSynthesis``: a ``keras.Model`` whose ``train_step`` is the paper's objective: synthesise
  the target from each source with the inverse warp at every scale, photometric error
  (weighted by ``E_s``), edge-aware smoothness, and the explainability regulariser.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from bestiary_keras.depth import geometry, losses
from bestiary_keras.training import as_float32

__all__ = ["NUM_SCALES", "ViewSynthesis", "disp_net", "image_pyramid", "pose_exp_net"]

NUM_SCALES = 4


def _check_input(input_shape, name):
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] % 16 or shape[1] % 16:
        raise ValueError(f"{name}: input_shape must be (height, width, channels) with height and "
                         f"width multiples of 16 (four halvings), got {input_shape!r}; e.g. "
                         f"(48, 64, 3).")
    return shape


def _conv(x, filters, kernel, strides, name):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu",
                         name=name)(x)


def disp_net(input_shape=(48, 64, 3), *, filters=(16, 32, 64, 128), min_depth: float = 0.5,
             max_depth: float = 40.0, name: str = "disp_net") -> keras.Model:
    """Single-view disparity network with multi-scale outputs (the paper's DispNet, smaller).

    Args:
        input_shape: ``(H, W, 3)``, H and W multiples of 16; images in [0, 1].
        filters: channels of the 4 encoder stages (each halves the resolution).
        min_depth, max_depth: the sigmoid is scaled so that depth = 1 / disparity stays in
            this range.

    Returns:
        A model mapping an image to 4 disparity maps ``(B, H/2^s, W/2^s, 1)``, finest first.
    """
    shape = _check_input(input_shape, "disp_net")
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}.")
    if len(filters) != NUM_SCALES:
        raise ValueError(f"filters must have {NUM_SCALES} entries, got {filters!r}.")
    alpha, beta = 1.0 / min_depth - 1.0 / max_depth, 1.0 / max_depth
    image = keras.Input(shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0, name="centre")(image)
    skips = []
    for i, f in enumerate(filters):  # encoder: 1/2, 1/4, 1/8, 1/16
        x = _conv(x, f, 5 if i == 0 else 3, 2, f"enc{i + 1}a")
        x = _conv(x, f, 3, 1, f"enc{i + 1}b")
        skips.append(x)
    disparities, previous = [], None
    for level in range(NUM_SCALES - 1, -1, -1):  # decoder: 1/8, 1/4, 1/2, 1
        f = filters[max(level - 1, 0)]
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}")(x)
        parts = [x] + ([skips[level - 1]] if level > 0 else [])
        if previous is not None:
            parts.append(layers.UpSampling2D(2, interpolation="bilinear",
                                             name=f"up_disp{level}")(previous))
        x = layers.Concatenate(name=f"concat{level}")(parts) if len(parts) > 1 else x
        x = _conv(x, f, 3, 1, f"dec{level}")
        logits = layers.Conv2D(1, 3, padding="same", activation="sigmoid",
                               name=f"sigmoid{level}")(x)
        previous = layers.Rescaling(alpha, offset=beta, name=f"disp{level}")(logits)
        disparities.append(previous)
    return keras.Model(image, disparities[::-1], name=name)


def pose_exp_net(input_shape=(48, 64, 3), *, num_sources: int = 2, explainability: bool = True,
                 filters=(16, 32, 64, 128, 128), name: str = "pose_exp_net") -> keras.Model:
    """Pose network (6-DoF motion to each source) with the optional explainability decoder.

    Args:
        input_shape: shape of **one** frame ``(H, W, 3)``; the model takes the target and the
            sources stacked on the channels, ``(H, W, 3 * (1 + num_sources))``.
        num_sources: source frames per snippet (2 for 3-frame snippets).
        explainability: add the mask decoder.
        filters: channels of the strided encoder stages.

    Returns:
        A model with outputs ``pose (B, num_sources, 6)`` and, with explainability, 4 masks
        ``(B, H/2^s, W/2^s, num_sources)`` in (0, 1), finest first.
    """
    h, w, c = _check_input(input_shape, "pose_exp_net")
    if int(num_sources) < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources!r}.")
    stacked = keras.Input((h, w, c * (1 + num_sources)), name="snippet")
    x = layers.Rescaling(2.0, offset=-1.0, name="centre")(stacked)
    features = []
    for i, f in enumerate(filters):
        x = _conv(x, f, 7 if i == 0 else (5 if i == 1 else 3), 2, f"conv{i + 1}")
        features.append(x)
    pose = layers.Conv2D(6 * num_sources, 1, name="pose_conv")(x)
    pose = layers.GlobalAveragePooling2D(name="pose_avg")(pose)
    pose = layers.Rescaling(0.01, name="pose_scale")(pose)  # the paper's 0.01
    pose = layers.Reshape((num_sources, 6), name="pose")(pose)
    if not explainability:
        return keras.Model(stacked, pose, name=name)
    masks = []
    y = features[3]  # 1/16
    for level in range(NUM_SCALES - 1, -1, -1):
        y = layers.Conv2DTranspose(filters[level], 3, strides=2, padding="same",
                                   activation="relu", name=f"upconv{level}")(y)
        if level > 0:
            y = layers.Concatenate(name=f"mask_concat{level}")([y, features[level - 1]])
        masks.append(layers.Conv2D(num_sources, 3, padding="same", activation="sigmoid",
                                   name=f"mask{level}")(y))
    return keras.Model(stacked, [pose] + masks[::-1], name=name)


def _as_float(images):
    """uint8 images -> float32 in [0, 1]; float images are taken as already in [0, 1]."""
    images = ops.convert_to_tensor(images)
    if "uint8" in str(images.dtype):
        return ops.cast(images, "float32") / 255.0
    return ops.cast(images, "float32")


def image_pyramid(images, num_scales: int = NUM_SCALES):
    """``images`` and its 2x, 4x, ... average-pooled copies (the targets of each scale)."""
    out = [images]
    for _ in range(num_scales - 1):
        out.append(ops.average_pool(out[-1], 2, strides=2, padding="valid"))
    return out


@keras.saving.register_keras_serializable(package="bestiary_keras")
class ViewSynthesis(keras.Model):
    """The paper's training objective around a disparity network and a pose network.

    ``fit`` takes batches of snippets ``(B, 3, H, W, 3)`` (uint8 or float in [0, 1]), the
    target in the middle; the loss is

    ``L = sum_s [ L_vs^s + lambda_s / 2^s L_smooth^s + lambda_e L_reg(E^s) ]``

    with ``L_vs`` the photometric error of the target synthesised from each source (weighted by
    the explainability mask ``E`` when the pose network has one).

    Args:
        disparity: a ``disp_net`` model.
        pose: a ``pose_exp_net`` model (with or without masks).
        intrinsics: ``K`` of the full-resolution frames.
        smooth_weight: ``lambda_s``.
        explain_weight: ``lambda_e`` (the paper: 0.2), used only with masks.
        ssim_weight: weight of the SSIM term in the photometric error (0 = the paper's L1).
        mask_out_of_view: average the photometric error only over pixels whose ``p_s`` falls
            inside the source. False (the paper's objective, a mean over all pixels) compares
            such pixels with black, so a warp that leaves the view costs; the explainability
            mask is the paper's way to discount them. With True, leaving the view is free, and
            training can settle on near-constant depth: on ``ci`` seed 3 of notebook 14 the
            disparity saturated (abs-rel 0.320, exactly the constant-depth baseline) where the
            paper's objective reached 0.190.
    """

    def __init__(self, disparity, pose, intrinsics, *, smooth_weight: float = 0.05,
                 explain_weight: float = 0.2, ssim_weight: float = 0.0,
                 mask_out_of_view: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.disparity, self.pose = disparity, pose
        self.intrinsics = geometry.check_intrinsics(intrinsics)
        self.scaled_intrinsics = [geometry.scale_intrinsics(self.intrinsics, 0.5 ** s)
                                  for s in range(NUM_SCALES)]
        self.smooth_weight, self.explain_weight = float(smooth_weight), float(explain_weight)
        self.ssim_weight = float(ssim_weight)
        self.mask_out_of_view = bool(mask_out_of_view)
        self.explainability = isinstance(pose.output, (list, tuple))
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "photometric", "smoothness", "explainability")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, snippets, training=False):
        """Disparities of the target (4 scales), the poses ``(B, 2, 6)`` and the masks (or [])."""
        snippets = geometry.check_snippet(_as_float(snippets))
        target = snippets[:, snippets.shape[1] // 2]
        sources = [snippets[:, i] for i in range(snippets.shape[1]) if i != snippets.shape[1] // 2]
        disparities = self.disparity(target, training=training)
        out = self.pose(ops.concatenate([target] + sources, axis=-1), training=training)
        poses, masks = (out[0], list(out[1:])) if self.explainability else (out, [])
        return as_float32((disparities, poses, masks))  # float32 under a mixed policy

    def loss_terms(self, snippets, training=False):
        """``(total, photometric, smoothness, explainability)`` for one batch of snippets."""
        disparities, poses, masks = self(snippets, training=training)
        snippets = _as_float(snippets)
        middle = snippets.shape[1] // 2
        pyramids = [image_pyramid(snippets[:, i]) for i in range(snippets.shape[1])]
        sources = [p for i, p in enumerate(pyramids) if i != middle]
        photometric = smoothness = regulariser = 0.0
        for s, disparity in enumerate(disparities):
            target = pyramids[middle][s]
            depth = 1.0 / disparity
            for j, source in enumerate(sources):
                matrix = geometry.pose_vec_to_matrix(poses[:, j])
                warped, valid = geometry.inverse_warp(source[s], depth, matrix,
                                                      self.scaled_intrinsics[s])
                weight = masks[s][..., j:j + 1] if masks else None
                photometric += losses.photometric_loss(target, warped,
                                                       valid=valid if self.mask_out_of_view else None,
                                                       explainability=weight,
                                                       ssim_weight=self.ssim_weight)
            smoothness += losses.edge_aware_smoothness(target, disparity) / 2 ** s
            if masks:
                regulariser += losses.explainability_regulariser(masks[s])
        total = (photometric + self.smooth_weight * smoothness
                 + (self.explain_weight * regulariser if masks else 0.0))
        return total, photometric, smoothness, regulariser

    def train_step(self, data):
        import tensorflow as tf  # the TF backend's gradient tape (Keras has no backend-free one)

        snippets = data[0] if isinstance(data, (list, tuple)) else data
        with tf.GradientTape() as tape:
            terms = self.loss_terms(snippets, training=True)
            scaled = self.optimizer.scale_loss(terms[0])  # loss scaling under mixed_float16
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        for tracker, value in zip(self.trackers.values(), terms):
            tracker.update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        snippets = data[0] if isinstance(data, (list, tuple)) else data
        terms = self.loss_terms(snippets, training=False)
        for tracker, value in zip(self.trackers.values(), terms):
            tracker.update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def predict_depth(self, images, batch_size: int = 64) -> np.ndarray:
        """Full-resolution depth ``(N, H, W)`` = 1 / finest disparity, from single images."""
        images = np.asarray(images)
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images
        out = [np.asarray(self.disparity(images[i:i + batch_size], training=False)[0])[..., 0]
               for i in range(0, len(images), batch_size)]
        return 1.0 / np.concatenate(out)

    def predict_poses(self, snippets, batch_size: int = 64) -> np.ndarray:
        """``(N, num_sources, 6)`` pose vectors ``T_{s<-t}`` for each source of each snippet."""
        out = []
        for i in range(0, len(snippets), batch_size):
            _, poses, _ = self(snippets[i:i + batch_size], training=False)
            out.append(np.asarray(poses))
        return np.concatenate(out)

    def get_config(self):
        config = super().get_config()
        config.update(
            disparity=keras.saving.serialize_keras_object(self.disparity),
            pose=keras.saving.serialize_keras_object(self.pose),
            intrinsics=self.intrinsics.tolist(), smooth_weight=self.smooth_weight,
            explain_weight=self.explain_weight, ssim_weight=self.ssim_weight)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["disparity"] = keras.saving.deserialize_keras_object(config["disparity"])
        config["pose"] = keras.saving.deserialize_keras_object(config["pose"])
        return cls(**config)
