"""The shared batching module: step indices, the seeded PyDataset base, tf.data options."""

import numpy as np
import pytest

from bestiary_keras.batching import SeededBatches, fixed_tf_data_options, step_indices


def test_step_indices_are_shuffled_passes_fixed_by_the_seed():
    order = step_indices(10, batch_size=4, steps=5, seed=3)
    assert order.shape == (5, 4)
    flat = order.ravel()
    # 20 positions = two full passes over 10 examples, each a permutation
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    np.testing.assert_array_equal(order, step_indices(10, 4, 5, seed=3))
    assert not np.array_equal(order, step_indices(10, 4, 5, seed=4))
    # the first steps do not depend on how many steps are asked for
    np.testing.assert_array_equal(step_indices(10, 4, 2, seed=3), order[:2])


@pytest.mark.parametrize("bad", [dict(num_examples=0), dict(batch_size=0), dict(steps=-1),
                                 dict(batch_size=2.5)])
def test_step_indices_reject_bad_counts(bad):
    arguments = dict(num_examples=10, batch_size=4, steps=5) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        step_indices(**arguments)


class _Squares(SeededBatches):
    def __init__(self, values, **kwargs):
        super().__init__(len(values), **kwargs)
        self.values = np.asarray(values, np.float32)

    def make_batch(self, indices, rng):
        noise = rng.normal(size=len(indices)).astype(np.float32)
        return self.values[indices] + noise, self.values[indices] ** 2


def test_seeded_batches_follow_step_indices_across_epochs():
    batches = _Squares(np.arange(7), batch_size=3, steps=4, seed=1)
    assert len(batches) == 4
    expected = step_indices(7, 3, 8, seed=1)
    seen = [batches.indices(i) for i in range(4)]
    batches.on_epoch_end()  # epoch 1 continues the passes: global steps 4..7
    seen += [batches.indices(i) for i in range(4)]
    np.testing.assert_array_equal(np.stack(seen), expected)
    x, y = batches[2]
    np.testing.assert_array_equal(y, expected[6].astype(np.float32) ** 2)
    # the random draws depend on (seed, global step) only: the same twice, new the next step
    again = _Squares(np.arange(7), batch_size=3, steps=4, seed=1)
    again.on_epoch_end()
    np.testing.assert_array_equal(again[2][0], x)
    assert not np.array_equal(again[1][0] - again[1][1] ** 0.5, x - y ** 0.5)
    with pytest.raises(IndexError, match="out of range"):
        batches[4]


def test_a_subclass_must_make_batches():
    with pytest.raises(NotImplementedError, match="make_batch"):
        SeededBatches(5, batch_size=2, steps=1)[0]


def test_fixed_tf_data_options_turn_the_autotuner_off():
    assert fixed_tf_data_options().autotune.enabled is False


def test_gathered_batches_equal_the_materialised_arrays():
    import keras

    from bestiary_keras.batching import GatheredBatches

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.normal(size=20).astype(np.float32)
    order = step_indices(20, 4, 7, seed=0).ravel()
    first, second = rng.integers(0, 20, 28), rng.integers(0, 20, 28)
    batches = GatheredBatches([x, (x, first), (x, second)], y, batch_size=4, order=order)
    assert len(batches) == 7
    inputs, target = batches[3]
    positions = order[12:16]
    np.testing.assert_array_equal(inputs[0], x[positions])
    np.testing.assert_array_equal(inputs[1], x[first[12:16]])
    np.testing.assert_array_equal(inputs[2], x[second[12:16]])
    np.testing.assert_array_equal(target, y[positions])
    # training on it is training on x[order]: the same weights after the same steps
    def fitted(data, **fit_kwargs):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(*data, verbose=0, **fit_kwargs)
        return model.get_weights()
    gathered = fitted((GatheredBatches(x, y, batch_size=4, order=order),), shuffle=False)
    as_dataset = fitted((GatheredBatches(x, y, batch_size=4, order=order).dataset(),))
    materialised = fitted((x[order], y[order]), batch_size=4, shuffle=False)
    for a, b, c in zip(gathered, as_dataset, materialised):
        np.testing.assert_allclose(a, c, rtol=1e-6)
        np.testing.assert_allclose(b, c, rtol=1e-6)


def test_gathered_batches_check_lengths():
    from bestiary_keras.batching import GatheredBatches

    with pytest.raises(ValueError, match=r"different numbers of examples: \[5, 6\]"):
        GatheredBatches([np.zeros(5), (np.zeros(9), np.arange(6))], batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        GatheredBatches(np.zeros(5), batch_size=0)


def test_gathered_batches_feed_a_model_with_several_inputs():
    import keras

    from bestiary_keras.batching import GatheredBatches

    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 3), np.float32)
    batches = GatheredBatches([x, (x, np.arange(8)[::-1])], np.zeros(8, np.float32), batch_size=4)
    history = model.fit(batches, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 1
    # the tf.data form keeps the batch dimension static (4), which the PyDataset form does not
    spec = batches.dataset().element_spec
    assert spec[0][0].shape == (4, 3) and spec[1].shape == (4,)
    assert len(model.fit(batches.dataset(), verbose=0).history["loss"]) == 1


def test_seeded_batches_as_tf_data_are_the_same_batches_over_epochs():
    batches = _Squares(np.arange(7), batch_size=3, steps=4, seed=1)
    expected = []
    for epoch in range(2):
        expected += [batches[i] for i in range(4)]
        batches.on_epoch_end()
    fresh = _Squares(np.arange(7), batch_size=3, steps=4, seed=1)
    got = list(fresh.dataset(epochs=2).as_numpy_iterator())
    assert len(got) == 8
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert fresh.dataset().element_spec[0].shape == (3,)  # static batch dimension
    with pytest.raises(ValueError, match="epochs"):
        fresh.dataset(epochs=0)


def test_fit_starts_one_epoch_later_than_the_batches_it_peeks_at():
    # Keras fetches batches 0 and 1 for the output signature, then calls on_epoch_end: fit's
    # first epoch is epoch 1 of a SeededBatches (the class docstring says so).
    import keras

    seen = []

    class Recorded(_Squares):
        def batch_at_step(self, step):
            seen.append(int(step))
            return super().batch_at_step(step)

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    model.fit(Recorded(np.arange(7), batch_size=3, steps=4, seed=1), epochs=2, shuffle=False,
              verbose=0)
    assert seen == [0, 1, 4, 5, 6, 7, 8, 9, 10, 11]
