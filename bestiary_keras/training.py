"""Training helpers shared by the notebooks: per-batch history, optimizer set-up, throughput.

The curves are drawn by ``figures.plot_curves``.
"""

from __future__ import annotations

import time

import keras
import numpy as np

__all__ = [
    "as_float32", "build_optimizer", "history_dict", "StepHistory", "time_per_image",
]


def as_float32(outputs):
    """``outputs`` (a tensor or a nested structure) cast to float32, for the losses.

    Under a mixed dtype policy (``distributed.plan_for(..., precision="mixed_float16")``) a
    network's outputs are float16; models whose ``train_step`` computes its own loss cast them
    here, so the loss and the box decoding run in float32. Under float32 it changes nothing
    (a cast to the same dtype returns its input).
    """
    from keras import ops

    return keras.tree.map_structure(
        lambda t: ops.cast(t, "float32") if keras.backend.is_float_dtype(t.dtype) else t,
        outputs)


def history_dict(history) -> dict[str, list[float]]:
    """A ``keras.callbacks.History``, a ``StepHistory`` (or a plain dict) as ``{metric: [values]}``."""
    if isinstance(history, dict):
        return {k: list(map(float, v)) for k, v in history.items()}
    return {k: list(map(float, v)) for k, v in history.history.items()}


class StepHistory(keras.callbacks.Callback):
    """Records the training logs after every batch (curves by step, not by epoch).

    Profiles fix step counts, so a per-step curve is the honest x axis. ``self.history`` maps each
    logged metric to a list with one value per step.

    Keras logs running means within an epoch. With ``per_batch=False`` (the older notebooks'
    behaviour) those running means are stored as they come, so a curve falls in steps at epoch
    boundaries. With ``per_batch=True`` each batch's own value is recovered from consecutive
    running means, ``v_b = b * m_b - (b - 1) * m_(b-1)`` (``b`` counted from 1 in the epoch),
    which is exact for the loss and for any metric that is a mean over equal-sized batches
    (accuracy, MAE), not for ratios such as precision or AUC.
    """

    def __init__(self, per_batch: bool = False):
        super().__init__()
        self.per_batch = bool(per_batch)
        self.history: dict[str, list[float]] = {}
        self.seconds = 0.0
        self._t0 = None
        self._previous: dict[str, float] = {}

    def on_train_begin(self, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._previous = {}

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            value = float(value)
            if self.per_batch:
                count = int(batch) + 1  # Keras numbers the batches of an epoch from 0
                running = value
                value = count * running - (count - 1) * self._previous.get(key, 0.0)
                self._previous[key] = running
            self.history.setdefault(key, []).append(value)

    def on_train_end(self, logs=None):
        self.seconds += time.perf_counter() - self._t0


def build_optimizer(model):
    """Creates the compiled model's optimizer variables now, eagerly, before ``fit``.

    Otherwise Keras creates them (two per weight for Adam) while it traces the first training
    step, where creating a variable is slow: RefineNet's first ``fit`` call took 21.6 s
    without this and 10.7 s with it on the 2-core CPU. Call it after ``compile`` and after
    any change of which layers are trainable, right before training.

    Returns:
        ``model``.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"Model {model.name!r} has no optimizer: call compile() first.")
    # a subclassed model that has not been called yet has no variables: leave it to Keras
    if not model.optimizer.built and model.trainable_variables:
        model.optimizer.build(model.trainable_variables)
    return model


def time_per_image(predict_fn, images, *, batch_size: int = 1, repeats: int = 1,
                   warmup: int = 1) -> float:
    """Milliseconds per image of ``predict_fn(batch)`` (after ``warmup`` calls), on this machine."""
    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("time_per_image needs at least one image")
    for _ in range(warmup):
        predict_fn(images[:batch_size])
    t0 = time.perf_counter()
    count = 0
    for _ in range(repeats):
        for start in range(0, len(images), batch_size):
            predict_fn(images[start:start + batch_size])
            count += len(images[start:start + batch_size])
    return 1000.0 * (time.perf_counter() - t0) / count
