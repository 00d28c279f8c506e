"""The per-step training history (``StepHistory``)."""

import keras
import numpy as np
import pytest

from bestiary_keras.training import StepHistory, build_optimizer


class _SyncRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def _fit(callback):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), batch_size=4, epochs=3, shuffle=False, verbose=0,
              callbacks=[callback])


def test_step_history_matches_a_synchronous_recorder():
    history, recorder = StepHistory(), _SyncRecorder()
    _fit(history)
    _fit(recorder)
    assert len(history.history["loss"]) == 30
    np.testing.assert_allclose(history.history["loss"], recorder.losses, rtol=1e-6)


def test_build_optimizer_creates_the_slots_before_fit():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="compile"):
        build_optimizer(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    assert build_optimizer(model) is model and model.optimizer.built
    # Adam: iteration count and learning rate, then a first and a second moment per weight
    slots = [v for v in model.optimizer.variables if v.shape != ()]
    assert len(slots) == 2 * len(model.trainable_variables)
    model.fit(np.ones((4, 3)), np.ones(4), verbose=0)  # the slots built here are the ones used
    assert int(model.optimizer.iterations.numpy()) == 1


def test_per_batch_history_recovers_each_batch_loss():
    # learning rate 0: the weights never move, so each batch's loss can be computed directly
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = (x.sum(axis=1) + rng.normal(size=40) * np.arange(40)).astype("float32")
    per_batch, running = StepHistory(per_batch=True), StepHistory()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
              callbacks=[per_batch, running])
    predicted = model.predict(x, verbose=0)[:, 0]
    by_hand = [float(np.mean((predicted[i:i + 4] - y[i:i + 4]) ** 2)) for i in range(0, 40, 4)]
    np.testing.assert_allclose(per_batch.history["loss"], by_hand * 2, rtol=1e-4)
    # the running means are different (they are what per_batch=False stores)
    assert not np.allclose(running.history["loss"], by_hand * 2, rtol=1e-2)
    np.testing.assert_allclose(running.history["loss"][9], np.mean(by_hand), rtol=1e-5)
