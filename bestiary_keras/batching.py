"""Seeded, step-indexed batches: the one batching convention of the collection.

Budgets are step counts, never seconds or epochs of a data set whose size changes with the
profile. Two ideas serve every chapter:

* ``step_indices(num_examples, batch_size, steps, seed)``: the examples of each step, as
  consecutive shuffled passes over the data (no example repeats before every other one has
  been seen), fixed by ``seed``.
* ``SeededBatches``: a ``keras.utils.PyDataset`` whose batch ``i`` of epoch ``e`` depends only
  on ``(seed, e * steps + i)``. A chapter subclasses it and writes ``make_batch(indices, rng)``
  (draw the augmentation from ``rng``), so two models trained with the same seed see the same
  batches in the same order, whatever else ran before.

``GatheredBatches`` feeds ``fit`` from index arrays that were drawn up front (``x[order]``
for ``steps * batch_size`` positions) without materialising ``x[order]``: each batch is gathered
when Keras asks for it, so memory stays at one copy of the data whatever the step count.

``fixed_tf_data_options()`` gives the ``tf.data`` options for Python-generated batches on this
CPU (the autotuner off; measured in notebooks 05 to 07, see its docstring).
"""

from __future__ import annotations

import functools

import keras
import numpy as np

__all__ = ["GatheredBatches", "SeededBatches", "fixed_tf_data_options", "step_indices"]


def _check_counts(num_examples, batch_size, steps):
    for name, value in (("num_examples", num_examples), ("batch_size", batch_size),
                        ("steps", steps)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")


@functools.lru_cache(maxsize=8)
def _permutation(num_examples: int, seed: int, pass_index: int) -> np.ndarray:
    return np.random.default_rng((seed, pass_index)).permutation(num_examples)


def _indices_at(num_examples: int, seed: int, start: int, count: int) -> np.ndarray:
    """Positions ``start .. start + count - 1`` of the endless sequence of shuffled passes."""
    positions = np.arange(start, start + count)
    passes, offsets = np.divmod(positions, num_examples)
    out = np.empty(count, dtype=np.int64)
    for pass_index in np.unique(passes):
        here = passes == pass_index
        out[here] = _permutation(num_examples, seed, int(pass_index))[offsets[here]]
    return out


def step_indices(num_examples: int, batch_size: int, steps: int, seed: int = 0) -> np.ndarray:
    """The examples of each of ``steps`` batches: consecutive shuffled passes, fixed by ``seed``.

    ``x[step_indices(len(x), b, s, seed)[i]]`` is batch ``i``. Pass ``p`` over the data is the
    permutation drawn from ``numpy.random.default_rng((seed, p))``, so the first steps do not
    depend on how many steps are asked for.

    Args:
        num_examples: size of the training set.
        batch_size: examples per step.
        steps: number of steps.
        seed: fixes the order.

    Returns:
        int64 array ``(steps, batch_size)``.
    """
    _check_counts(num_examples, batch_size, steps)
    flat = _indices_at(int(num_examples), int(seed), 0, int(steps) * int(batch_size))
    return flat.reshape(int(steps), int(batch_size))


class SeededBatches(keras.utils.PyDataset):
    """Base of every chapter's training batches: ``steps`` batches per epoch, fixed by ``seed``.

    Batch ``index`` of epoch ``e`` is global step ``g = e * steps + index``; its examples are
    positions ``g * batch_size ...`` of ``step_indices``' endless shuffled passes, and its random
    generator is ``numpy.random.default_rng((seed, g))``. So ``model.fit(batches, epochs=E)``
    trains on ``E * steps`` fresh batches, and the same seed gives the same batches. Pass
    ``shuffle=False`` to ``fit``: Keras otherwise shuffles the order of a ``PyDataset``'s batches
    within each epoch.

    Keras 3.15's ``fit`` first fetches batches 0 and 1 to learn the output signature and then
    calls ``on_epoch_end``, so the first epoch of ``fit(batches)`` is this object's epoch 1
    (global steps ``steps .. 2 * steps - 1``); ``predict`` and ``dataset`` start at epoch 0.
    Either way the batches are fixed by the seed (tested in ``tests/test_batching.py``).

    Subclasses implement ``make_batch(indices, rng)`` and return what ``fit`` expects:
    ``(x, y)`` or ``(x, y, sample_weight)``::

        class PoseBatches(SeededBatches):
            def __init__(self, images, maps, **kwargs):
                super().__init__(len(images), **kwargs)
                self.images, self.maps = images, maps

            def make_batch(self, indices, rng):
                return self.images[indices], self.maps[indices]

    Args:
        num_examples: size of the training set.
        batch_size: examples per batch.
        steps: batches per epoch.
        seed: fixes the order and every random draw.
        **kwargs: passed to ``keras.utils.PyDataset`` (``workers``, ``use_multiprocessing``).
    """

    def __init__(self, num_examples: int, *, batch_size: int, steps: int, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        _check_counts(num_examples, batch_size, steps)
        self.num_examples, self.batch_size = int(num_examples), int(batch_size)
        self.steps, self.seed = int(steps), int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def global_step(self, index: int) -> int:
        """The step number of batch ``index`` of the current epoch, counted from the start."""
        if not 0 <= index < self.steps:
            raise IndexError(f"batch index {index} out of range [0, {self.steps}).")
        return self.epoch * self.steps + int(index)

    def _step_indices(self, step: int) -> np.ndarray:
        return _indices_at(self.num_examples, self.seed, int(step) * self.batch_size,
                           self.batch_size)

    def _step_rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, int(step)))

    def indices(self, index: int) -> np.ndarray:
        """The examples of batch ``index`` of the current epoch, int64 ``(batch_size,)``."""
        return self._step_indices(self.global_step(index))

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of batch ``index`` of the current epoch (augmentation draws)."""
        return self._step_rng(self.global_step(index))

    def make_batch(self, indices: np.ndarray, rng: np.random.Generator):
        raise NotImplementedError(f"{type(self).__name__} must implement make_batch(indices, rng).")

    def batch_at_step(self, step: int):
        """The batch of global step ``step`` (``epoch * steps + index``), whatever the epoch."""
        return self.make_batch(self._step_indices(step), self._step_rng(step))

    def __getitem__(self, index):
        return self.batch_at_step(self.global_step(index))

    def dataset(self, epochs: int = 1):
        """The batches of ``epochs`` epochs from the current one, as ``tf.data``, in order.

        Train with ``model.fit(batches.dataset(E), epochs=E, steps_per_epoch=len(batches))``:
        the batches of ``fit(batches, epochs=E, shuffle=False)`` (which starts one epoch later,
        see the class docstring), but through a pipeline
        with static shapes and the fixed options (Keras prefetches a ``PyDataset`` with the
        tf.data autotuner, which slowed steps down 2x on this CPU, see
        ``fixed_tf_data_options``).
        """
        if int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
        first = self.epoch * self.steps
        return _as_tf_dataset(lambda i: self.batch_at_step(first + i), int(epochs) * self.steps)


def _as_tf_dataset(batch_at, count: int):
    """``tf.data`` pipeline of ``batch_at(0) .. batch_at(count - 1)`` (NumPy structures), in
    order, with every batch's static shape, two batches prefetched and the fixed options."""
    import tensorflow as tf

    sample = batch_at(0)
    flat = tf.nest.flatten(sample)
    dtypes = [tf.as_dtype(np.asarray(a).dtype) for a in flat]

    def load(i):
        return [np.asarray(a) for a in tf.nest.flatten(batch_at(int(i)))]

    def fetch(i):
        values = tf.numpy_function(load, [i], dtypes, stateful=False)
        for value, example in zip(values, flat):
            value.set_shape(np.shape(example))
        return tf.nest.pack_sequence_as(sample, values)

    dataset = tf.data.Dataset.range(int(count)).map(fetch).prefetch(2)
    return dataset.with_options(fixed_tf_data_options())


def _as_source(item, name):
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(f"{name} must be an array or an (array, index) pair, got a "
                             f"tuple of {len(item)} items.")
        array, index = item
        return np.asarray(array), None if index is None else np.asarray(index).reshape(-1)
    return np.asarray(item), None


class GatheredBatches(keras.utils.PyDataset):
    """Batches gathered from index arrays on the fly, for ``model.fit(batches)``.

    ``GatheredBatches([x1, x2], y, batch_size=b, order=idx)`` gives the same batches as
    ``fit([x1[idx], x2[idx]], y[idx], batch_size=b, shuffle=False)`` but never builds
    ``x1[idx]`` (``steps * b`` examples, gigabytes for long runs): batch ``i`` gathers positions
    ``i * b .. (i + 1) * b - 1`` when Keras asks for it. Pass ``shuffle=False`` to ``fit``:
    Keras otherwise shuffles the order of a ``PyDataset``'s batches.

    Args:
        inputs: one array or a list of arrays (the model's inputs). An item may also be an
            ``(array, index)`` pair with its own index (e.g. the two sides of a pair list).
        targets: an array or ``(array, index)`` pair, or ``None``.
        batch_size: examples per batch.
        order: the index shared by the items given without their own (``None``: positions
            ``0 .. n - 1``, the array is already in step order).
        **kwargs: passed to ``keras.utils.PyDataset``.
    """

    def __init__(self, inputs, targets=None, *, batch_size: int, order=None, **kwargs):
        super().__init__(**kwargs)
        self._single = not isinstance(inputs, list)  # a lone array (or pair): one input
        items = [inputs] if self._single else inputs
        self._inputs = [_as_source(item, f"inputs[{k}]") for k, item in enumerate(items)]
        self._targets = None if targets is None else _as_source(targets, "targets")
        order = None if order is None else np.asarray(order).reshape(-1)
        lengths = set()
        for array, index in self._inputs + ([self._targets] if self._targets else []):
            own = index if index is not None else order
            lengths.add(len(array) if own is None else len(own))
        if len(lengths) != 1:
            raise ValueError(f"inputs and targets index different numbers of examples: "
                             f"{sorted(lengths)}; give every item the same number of positions.")
        self.num_positions = lengths.pop()
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.order = order
        self.steps = self.num_positions // self.batch_size

    def __len__(self) -> int:
        return self.steps

    def _take(self, source, positions):
        array, index = source
        index = index if index is not None else self.order
        return array[positions] if index is None else array[index[positions]]

    def __getitem__(self, i):
        if not 0 <= i < self.steps:
            raise IndexError(f"batch index {i} out of range [0, {self.steps}).")
        positions = np.arange(i * self.batch_size, (i + 1) * self.batch_size)
        x = [self._take(source, positions) for source in self._inputs]
        x = x[0] if self._single else tuple(x)  # Keras takes several inputs as a tuple
        if self._targets is None:
            return (x,)
        return x, self._take(self._targets, positions)

    def dataset(self):
        """The same batches as a ``tf.data.Dataset`` with static shapes, in order.

        Keras feeds a ``PyDataset`` with the batch dimension unknown (``None``), which some
        layers cannot trace (LIFT's crop-and-rotate); this pipeline keeps every batch's shape,
        prefetches two batches and runs with ``fixed_tf_data_options()``.
        """
        return _as_tf_dataset(self.__getitem__, self.steps)


def fixed_tf_data_options():
    """``tf.data`` options for pipelines fed by Python-made batches, with the autotuner off.

    On the 2-core CPU, tf.data's autotuner made about half of the ``fit`` calls run every step
    at exactly 102.5 ms instead of about 50 ms (YOLOv2's batches), and in a Jupyter kernel the
    autotuned detection pipeline made ``fit`` return about 30 s after its last step with the
    CPU idle (notebook 05's training cell: 85 s -> 69 s with it off). Pair it with a fixed
    ``prefetch`` buffer.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options
