"""The per-stage L2 loss on confidence maps, with unlabelled regions masked (CPM and OpenPose).

CPM (Wei et al. 2016, Eq. 4) and OpenPose (Cao et al. 2017, Eq. 3) supervise every stage
``t`` with the squared distance between predicted and ideal maps, summed over joints ``p``
and map locations ``z``; OpenPose multiplies by a binary mask ``W(z)`` that is 0 where a
person has no annotation:

.. math:: f_t = \\sum_{p} \\sum_{z} W(z) \\, \\| b^p_t(z) - b^p_*(z) \\|_2^2,
          \\qquad F = \\sum_t f_t

``masked_l2`` computes ``f_t`` per image (a Keras loss then averages over the batch);
``MaskedL2`` is the same as a Keras loss whose ``y_true`` carries the mask in its last
channels, so that ``model.fit`` can pass it through.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["MaskedL2", "masked_l2", "pack_targets"]


def masked_l2(y_true, y_pred, mask=None):
    """Per-image masked sum of squared errors, ``sum_z sum_p W (b - b*)^2``.

    Args:
        y_true: (N, h, w, C) target maps.
        y_pred: (N, h, w, C) predicted maps.
        mask: ``None`` (everything counts) or a tensor broadcastable to ``y_true``
            (e.g. (N, 1, 1, C) per joint or (N, h, w, C) per location), 1 = counted.

    Returns:
        float32 (N,): the loss of each image.
    """
    y_true = ops.convert_to_tensor(y_true, "float32")
    y_pred = ops.convert_to_tensor(y_pred, "float32")
    if len(y_true.shape) != 4 or tuple(y_true.shape[1:]) != tuple(y_pred.shape[1:]):
        raise ValueError(f"y_true and y_pred must both be (N, h, w, C) with equal shapes, got "
                         f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}.")
    squared = ops.square(y_pred - y_true)
    if mask is not None:
        squared = squared * ops.convert_to_tensor(mask, "float32")
    return ops.sum(squared, axis=(1, 2, 3))


def pack_targets(maps, mask):
    """``y_true`` for ``MaskedL2``: the maps and the mask (broadcast to the maps' shape)
    concatenated along the last axis, float32 (N, h, w, 2C). NumPy in, NumPy out."""
    import numpy as np

    maps = np.asarray(maps, np.float32)
    mask = np.broadcast_to(np.asarray(mask, np.float32), maps.shape)
    return np.concatenate([maps, mask], axis=-1)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class MaskedL2(keras.losses.Loss):
    """``masked_l2`` as a Keras loss: ``y_true`` is ``pack_targets(maps, mask)``, (N, h, w, 2C)
    with the target maps first and the mask second; ``y_pred`` is (N, h, w, C)."""

    def __init__(self, name="masked_l2", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        channels = y_pred.shape[-1]
        if y_true.shape[-1] != 2 * channels:
            raise ValueError(f"MaskedL2 expects y_true with 2 * {channels} channels (maps, then "
                             f"mask; see pack_targets), got {y_true.shape[-1]}.")
        return masked_l2(y_true[..., :channels], y_pred, y_true[..., channels:])

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}
