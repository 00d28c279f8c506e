"""Training at scale: the ``full`` profile's choices in one place.

The notebooks train through one helper, the ``TrainingPlan`` that ``plan_for(PROFILE)`` returns
in their set-up cell (``print(TRAINING)`` shows its choices in one line)::

    TRAINING = distributed.plan_for(PROFILE)
    with TRAINING.scope():                  # devices and precision for the model's variables
        model = build(...)
    model = TRAINING.compile(model, optimizer=..., loss=...)  # instead of model.compile
    TRAINING.fit(model, batches, epochs=..., callbacks=[...])  # model.fit's arguments

``fit_profile(build_model, dataset, profile=..., steps=...)`` does the same in one call. On the
CPU, in the ``ci`` and ``default`` profiles, the plan is one replica, float32, no XLA and one step
per execution: ``TRAINING.fit`` is then ``model.fit`` with the same arguments, step for step
(``tests/test_distributed.py`` checks the weights are identical). The choices:

- **Devices** (``strategy_for``): ``tf.distribute.MultiWorkerMirroredStrategy`` when
  ``TF_CONFIG`` names more than one worker (several machines, or several processes on one),
  ``tf.distribute.MirroredStrategy`` when more than one GPU is visible (or more than one device
  is named), else the default strategy. The model and its optimizer are built inside the
  strategy's scope; Keras splits each global batch of a ``tf.data`` dataset across replicas and
  sums the gradients, so one and two replicas train the same model (``tests/test_distributed.py``).
- **Precision**: ``mixed_float16`` on a GPU for the ``full`` profile only (float32 everywhere
  else: the CPU gains nothing from float16). Outputs are cast back to float32 (a float32 linear
  layer per output, as the Keras mixed-precision guide advises), so losses are computed in
  float32, and the optimizer is wrapped in ``keras.optimizers.LossScaleOptimizer``.
- **XLA** (``jit_compile``): Keras' own ``"auto"`` by default, which on a GPU turns XLA on
  for a model whose layers all support it (off under ``tf.distribute`` or with op determinism),
  and off on a CPU-only machine, where ``plan_for`` writes it as ``False``. ``True`` or ``False``
  force it; force it on where ``bestiary bench --jit-compile``
  measured it faster for the model at hand.
- **Steps per execution**: 1 unless asked for. More steps per ``tf.function`` call pay on a GPU
  for small models, but callbacks (``StepHistory``) then see one batch in ``k``.
- **Input**: ``array_dataset`` makes a ``tf.data`` pipeline from arrays that never starves the
  accelerator (cache, seeded shuffle, parallel map, prefetch, autotuned). Batches made by Python
  (``batching.SeededBatches`` / ``GatheredBatches``) keep their own ``.dataset()`` pipeline
  with ``batching.fixed_tf_data_options`` (the autotuner off, measured faster on the CPU).

``MultiWorkerMirroredStrategy`` must be created before TensorFlow runs anything else in the
process: call ``strategy_for()`` (or ``fit_profile``) first in a multi-worker program.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

import numpy as np

from bestiary_keras import runtime

# Keras (and so TensorFlow) is imported inside the functions: a notebook imports this module
# in its set-up cell, and TensorFlow must load after runtime.setup has quietened it.

__all__ = ["PRECISIONS", "ProfileFit", "TrainingPlan", "array_dataset", "fit_profile",
           "plan_for", "strategy_for", "tf_config_workers"]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
"""Keras dtype policies ``plan_for`` accepts for ``precision`` (``None`` chooses by profile)."""


def tf_config_workers(tf_config: str | None = None) -> int:
    """Number of workers (``chief`` plus ``worker`` tasks) in ``TF_CONFIG`` (0 when unset).

    Args:
        tf_config: the JSON text; ``None`` reads the environment variable ``TF_CONFIG``.
    """
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return 0
    try:
        config = json.loads(text)
        cluster = config.get("cluster", {})
        return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, AttributeError, TypeError):
        raise ValueError(
            f"TF_CONFIG={text!r} is not a JSON object with a 'cluster' of worker addresses, "
            'e.g. {"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, '
            '"task": {"type": "worker", "index": 0}}.') from None


def strategy_for(devices=None):
    """The ``tf.distribute`` strategy for this process.

    Args:
        devices: ``None`` to decide from the machine: ``MultiWorkerMirroredStrategy`` when
            ``TF_CONFIG`` names several workers, ``MirroredStrategy`` over all GPUs when more
            than one is visible, else the default strategy. Or a list of logical device names
            (``["/cpu:0", "/cpu:1"]``, ``["/gpu:0", "/gpu:1"]``): ``MirroredStrategy`` over them
            when there are several, ``OneDeviceStrategy`` for one.

    Returns:
        A ``tf.distribute.Strategy`` (its ``num_replicas_in_sync`` says how many replicas).
    """
    import tensorflow as tf

    workers = tf_config_workers()
    if devices is not None:
        if isinstance(devices, str) or not all(isinstance(d, str) for d in devices) or not devices:
            raise ValueError(f"devices={devices!r} must be None or a non-empty list of device "
                             "names, e.g. ['/cpu:0', '/cpu:1'].")
        if workers > 1:
            raise ValueError(f"devices={devices!r} with TF_CONFIG naming {workers} workers: a "
                             "multi-worker run uses each worker's own devices; pass devices=None.")
        known = {d.name for d in tf.config.list_logical_devices()}
        missing = [d for d in devices if tf.DeviceSpec.from_string(d).to_string() not in
                   {tf.DeviceSpec.from_string(k).to_string() for k in known}]
        if missing:
            raise ValueError(f"devices={devices!r}: {missing} not among this process's logical "
                             f"devices {sorted(known)}.")
        if len(devices) == 1:
            return tf.distribute.OneDeviceStrategy(devices[0])
        return tf.distribute.MirroredStrategy(list(devices))
    if workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclasses.dataclass
class TrainingPlan:
    """The choices ``fit_profile`` makes (``plan_for`` fills them in); ``str(plan)`` is one line."""

    profile: str
    strategy: object
    precision: str
    jit_compile: bool | str
    steps_per_execution: int
    device: str
    seconds: float = 0.0
    """Seconds spent in ``fit`` so far (all models trained with this plan)."""

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @contextlib.contextmanager
    def scope(self):
        """Build models in here: the strategy's scope under the plan's dtype policy.

        The previous global dtype policy is restored on leaving, so code outside the block
        (evaluation helpers, other models) keeps float32.
        """
        import keras

        previous = keras.mixed_precision.global_policy().name
        keras.mixed_precision.set_global_policy(self.precision)
        try:
            with self.strategy.scope():
                yield self
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def compile(self, model, *, optimizer, **compile_kwargs):
        """Compiles ``model`` with the plan's choices; returns the model to train.

        - ``optimizer``: a ``keras.optimizers.Optimizer``, or a function of no arguments
          returning one. An optimizer made outside the plan's strategy (several devices) is made
          again inside it from its config; on one device it is used as it is. With
          ``mixed_float16`` it is wrapped in ``keras.optimizers.LossScaleOptimizer``; models
          with their own ``train_step`` scale their loss with ``self.optimizer.scale_loss``.
        - Under a mixed policy a functional model whose outputs are not float32 is returned
          wrapped: the same layers (so ``model`` trains too), each output cast to float32 by a
          float32 linear layer, so the loss is computed in float32. Otherwise ``model`` itself.
        - ``jit_compile`` and ``steps_per_execution`` come from the plan; ``compile_kwargs``
          (``loss``, ``metrics``, ``loss_weights``, ...) go to ``model.compile``.
        - The optimizer's variables are made at once (``training.build_optimizer``).
        """
        import keras

        from bestiary_keras.training import build_optimizer

        for key in ("jit_compile", "steps_per_execution"):
            if key in compile_kwargs:
                raise ValueError(f"{key}= is the plan's choice: pass it to plan_for(...).")
        with self.scope():
            if self.precision != "float32" and isinstance(model, keras.Model) and _functional(
                    model):
                model = _float32_outputs(model)
            opt = optimizer() if callable(optimizer) and not isinstance(
                optimizer, keras.optimizers.Optimizer) else optimizer
            made_in = getattr(opt, "_distribution_strategy", None)
            if made_in is not None and made_in is not self.strategy:
                # Keras' TensorFlow optimizer keeps the strategy current when it was made: one
                # made outside this plan's scope (optimizer=Adam(...) in a notebook) is made
                # again here from its config (learning-rate schedule included)
                opt = type(opt).from_config(opt.get_config())
            if self.precision == "mixed_float16" and not isinstance(
                    opt, keras.optimizers.LossScaleOptimizer):
                opt = keras.optimizers.LossScaleOptimizer(opt)
            model.compile(optimizer=opt, jit_compile=self.jit_compile,
                          steps_per_execution=self.steps_per_execution, **compile_kwargs)
            build_optimizer(model)
        return model

    def fit(self, model, x=None, y=None, **fit_kwargs):
        """Trains a model compiled by ``compile``: ``model.fit(x, y, **fit_kwargs)``.

        The arguments, and their defaults, are ``model.fit``'s, so a notebook's call changes
        from ``model.fit(...)`` to ``TRAINING.fit(model, ...)`` and nothing else. Under the
        default or a ``MirroredStrategy`` it is ``model.fit`` (Keras splits each global batch
        across the replicas). Under ``MultiWorkerMirroredStrategy``, whose ``model.fit`` Keras
        3.15 cannot run, the same train step runs in a loop of its own: it needs a
        ``tf.data.Dataset`` of global batches, ``steps_per_epoch`` and ``epochs``.

        Returns:
            Keras' ``History``. ``self.seconds`` adds up the time spent in ``fit``.
        """
        import tensorflow as tf

        if getattr(model, "optimizer", None) is None or not model.compiled:
            raise ValueError(f"Model {model.name!r} is not compiled: call "
                             "plan.compile(model, optimizer=..., ...) first.")
        start = time.perf_counter()
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            steps = fit_kwargs.pop("steps_per_epoch", None)
            if not isinstance(x, tf.data.Dataset) or y is not None or steps is None:
                raise ValueError("A multi-worker run trains on a tf.data.Dataset of (x, y) "
                                 "global batches with steps_per_epoch=...: use "
                                 "array_dataset(...) or batches.dataset(epochs).")
            options = {"epochs": 1, "callbacks": None, "verbose": 0, "initial_epoch": 0}
            unused = sorted(set(fit_kwargs) - set(options) - {"shuffle"})
            if unused:
                raise ValueError(f"{unused}: not supported by the multi-worker loop.")
            options.update({k: v for k, v in fit_kwargs.items() if k in options})
            history = _fit_multi_worker(model, x, steps=int(steps), **options)
        else:
            history = model.fit(x, y, **fit_kwargs)
        self.seconds += time.perf_counter() - start
        return history

    def __str__(self) -> str:
        import tensorflow as tf

        kind = type(self.strategy).__name__.replace("Strategy", "")
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            kind = "MultiWorkerMirrored"  # its class is CollectiveAllReduceStrategy
        elif kind.startswith("_Default"):
            kind = "default"
        return (f"profile {self.profile} | {kind} strategy, {self.replicas} replica(s) on "
                f"{self.device} | precision {self.precision}"
                f"{' (loss scaling)' if self.precision == 'mixed_float16' else ''} | XLA "
                f"{'auto' if self.jit_compile == 'auto' else 'on' if self.jit_compile else 'off'}"
                f" | {self.steps_per_execution} step(s) "
                "per execution")


def plan_for(profile: str, *, devices=None, strategy=None, precision: str | None = None,
             jit_compile: bool | str = "auto", steps_per_execution: int = 1) -> TrainingPlan:
    """Decides strategy, precision, XLA and steps per execution (see the module docstring).

    Args:
        profile: ``"ci"``, ``"default"`` or ``"full"``.
        devices: passed to ``strategy_for`` (ignored when ``strategy`` is given).
        strategy: a ready ``tf.distribute.Strategy`` (e.g. a ``MultiWorkerMirroredStrategy``
            created at program start).
        precision: ``None`` (``mixed_float16`` for ``full`` on a GPU, else ``float32``) or one
            of ``PRECISIONS``.
        jit_compile: compile the train step with XLA: ``True``, ``False`` or ``"auto"`` (Keras'
            rule on a GPU; ``False`` on a CPU-only machine).
        steps_per_execution: training steps per ``tf.function`` call (a whole number >= 1).
    """
    import tensorflow as tf

    runtime.check_profile(profile)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be None (chosen by profile) or one of "
                         f"{', '.join(PRECISIONS)}.")
    if not (isinstance(jit_compile, (bool, np.bool_)) or jit_compile == "auto"):
        raise ValueError(f"jit_compile={jit_compile!r} must be True, False or 'auto' (force it "
                         "on where "
                         "`bestiary bench --jit-compile` measured it faster).")
    if (isinstance(steps_per_execution, bool) or int(steps_per_execution) != steps_per_execution
            or steps_per_execution < 1):
        raise ValueError(f"steps_per_execution={steps_per_execution!r} must be a whole number "
                         ">= 1.")
    strategy = strategy if strategy is not None else strategy_for(devices)
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and steps_per_execution != 1):
        raise ValueError(f"steps_per_execution={steps_per_execution!r} with several workers: "
                         "the multi-worker loop runs one step per call; use 1.")
    gpus = runtime.devices()
    if precision is None:
        precision = "mixed_float16" if profile == "full" and gpus else "float32"
    device = (f"{len(gpus)} GPU(s)" if gpus else "CPU") if devices is None else ", ".join(devices)
    if jit_compile == "auto" and not gpus:
        jit_compile = False  # Keras' "auto" on a CPU-only machine
    jit_compile = jit_compile if jit_compile == "auto" else bool(jit_compile)
    return TrainingPlan(profile, strategy, precision, jit_compile,
                        int(steps_per_execution), device)


def _functional(model) -> bool:
    """Whether ``model`` is a functional (or Sequential) model with symbolic outputs."""
    try:
        return bool(model.outputs)
    except (AttributeError, ValueError):
        return False


def _float32_outputs(model):
    """``model`` with every floating output cast to float32 by a float32 linear layer."""
    import keras

    outputs = model.outputs
    if all(keras.backend.standardize_dtype(o.dtype) == "float32" for o in outputs):
        return model
    cast = [keras.layers.Activation("linear", dtype="float32", name=f"float32_output_{i}")(o)
            for i, o in enumerate(outputs)]
    structure = keras.tree.pack_sequence_as(model._outputs_struct, cast)
    return keras.Model(model.inputs, structure, name=model.name)


@dataclasses.dataclass
class ProfileFit:
    """What ``fit_profile`` returns: the trained model, Keras' history, the plan, the seconds."""

    model: keras.Model
    history: keras.callbacks.History
    plan: TrainingPlan
    seconds: float


def fit_profile(build_model, dataset, *, profile: str, steps: int, optimizer, loss,
                metrics=None, epochs: int = 1, callbacks=None, verbose: int = 0,
                devices=None, strategy=None, precision: str | None = None,
                jit_compile: bool | str = "auto", steps_per_execution: int = 1,
                log=print) -> ProfileFit:
    """Builds, compiles and trains ``build_model()`` with the profile's choices.

    Args:
        build_model: a function of no arguments returning an uncompiled ``keras.Model``; it is
            called inside the strategy's scope under the chosen dtype policy.
        dataset: a ``tf.data.Dataset`` of ``(x, y)`` global batches (``array_dataset``, or a
            ``SeededBatches(...).dataset(epochs)``) with at least ``steps * epochs`` batches.
        profile: ``"ci"``, ``"default"`` or ``"full"``.
        steps: training steps per epoch (a whole number >= 1).
        optimizer: a ``keras.optimizers.Optimizer`` or a function of no arguments returning one
            (a function is called in the strategy's scope, which a multi-device run needs).
        loss, metrics, epochs, callbacks, verbose: as in ``compile`` / ``fit``.
        devices, strategy, precision, jit_compile, steps_per_execution: see ``plan_for``.
        log: called with the plan's one-line description (``None``: silent).

    Returns:
        A ``ProfileFit`` (model, history, plan, seconds of training).
    """
    import tensorflow as tf

    if (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps={steps!r} must be a whole number >= 1.")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset of (x, y) batches, got "
                         f"{type(dataset).__name__}: use array_dataset(x, y, batch_size=...) or "
                         "batches.dataset(epochs) of a SeededBatches.")
    if not callable(build_model):
        raise ValueError(f"build_model={build_model!r} must be a function returning a model.")
    plan = plan_for(profile, devices=devices, strategy=strategy, precision=precision,
                    jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    if log is not None:
        log(str(plan))
    with plan.scope():
        model = build_model()
    model = plan.compile(model, optimizer=optimizer, loss=loss, metrics=metrics)
    history = plan.fit(model, dataset, epochs=epochs, steps_per_epoch=int(steps),
                       callbacks=callbacks, verbose=verbose, shuffle=False)
    return ProfileFit(model, history, plan, plan.seconds)


def _fit_multi_worker(model, dataset, *, epochs, steps, callbacks, verbose, initial_epoch):
    """``model.fit`` for ``MultiWorkerMirroredStrategy``, which Keras 3.15's ``fit`` cannot run.

    Its ``fit`` fails twice under that strategy (keras-team/keras#20585,
    tensorflow/tensorflow#72388): it builds the metrics from the first batch averaged with
    ``strategy.reduce`` over an ``(x, y)`` structure ("Attempt to convert a value (PerReplica
    ...)"), and it averages the scalar logs with ``reduce(..., axis=0)`` ("Invalid reduction
    dimension 0"). This loop runs Keras' own ``model.train_step`` in ``strategy.run`` (the same
    loss, gradients, all-reduce and optimizer as ``fit``), averages the logs over the replicas,
    and calls the callbacks once per step, as ``fit`` with one step per execution does.
    """
    import keras

    import tensorflow as tf

    strategy = model.distribute_strategy
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    first = next(iter(dataset))  # this worker's batch: shapes are all the build needs
    with strategy.scope():
        model._symbolic_build(data_batch=first)

    @tf.function
    def train_step(iterator):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in logs.items()}

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history], add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    callback_list.on_train_begin()
    epoch_logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            logs = train_step(batches)
            callback_list.on_train_batch_end(step, logs)
        epoch_logs = {k: float(v) for k, v in logs.items()}
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return history


def array_dataset(x, y=None, *, batch_size: int, seed: int | None = 0, augment=None,
                  repeat: bool = True, cache: bool = True):
    """A ``tf.data`` pipeline of ``(x, y)`` batches from arrays that keeps an accelerator fed.

    ``from_tensor_slices`` -> ``cache`` -> seeded ``shuffle`` (reshuffled every pass) ->
    ``repeat`` -> ``map(augment)`` on parallel threads (order kept) -> ``batch`` (full batches
    only, so every step has the same shape) -> ``prefetch`` (autotuned).

    Args:
        x, y: arrays (or tuples/dicts of arrays) with the same first dimension; ``y`` may be
            ``None``.
        batch_size: the global batch (split across replicas by ``fit``).
        seed: shuffle seed; ``None`` keeps the arrays' order.
        augment: ``None`` or a function ``(x, y) -> (x, y)`` of TensorFlow ops (one example),
            run in parallel.
        repeat: repeat forever (``fit`` then needs ``steps_per_epoch``).
        cache: cache the examples after the first pass (before the augmentation).
    """
    import keras

    import tensorflow as tf

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a whole number >= 1.")
    count = len(keras.tree.flatten(x)[0])
    if count < batch_size:
        raise ValueError(f"batch_size={batch_size} is larger than the {count} examples: with "
                         "full batches only, no batch could be made; lower batch_size.")
    dataset = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    if cache:
        dataset = dataset.cache()
    if seed is not None:
        dataset = dataset.shuffle(count, seed=int(seed), reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(int(batch_size), drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
