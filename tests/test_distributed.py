"""The training helper (``bestiary_keras.distributed``): plan, precision, input pipeline, and
data-parallel training on two logical CPU devices and on two loopback workers, without a GPU.

The multi-device runs need a fresh TensorFlow (logical devices and collective ops are fixed
when TensorFlow initialises its devices), so they run in subprocesses started here.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from bestiary_keras.distributed import (
    array_dataset,
    fit_profile,
    plan_for,
    strategy_for,
    tf_config_workers,
)

ROOT = Path(__file__).resolve().parent.parent

# The small model and data both multi-device tests train: a convolution, a dense layer, no batch
# normalisation (its statistics are per replica, so they would differ with the replica count).
_COMMON = textwrap.dedent("""
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np

    def data():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(128, 8, 8, 1)).astype("float32")
        y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype("int32")
        return x, y

    def build():
        import keras
        inputs = keras.Input((8, 8, 1))
        h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
        h = keras.layers.Flatten()(h)
        return keras.Model(inputs, keras.layers.Dense(2, name="logits")(h))

    def train(devices=None, strategy=None, steps=12, made_outside=False):
        import keras
        from bestiary_keras.distributed import array_dataset, fit_profile
        from bestiary_keras.training import StepHistory
        keras.utils.set_random_seed(0)
        x, y = data()
        history = StepHistory(per_batch=True)
        fit = fit_profile(
            build, array_dataset(x, y, batch_size=16, seed=0), profile="ci", steps=steps,
            optimizer=keras.optimizers.SGD(0.1) if made_outside
            else lambda: keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            devices=devices, strategy=strategy, callbacks=[history], log=None)
        return {"plan": str(fit.plan), "replicas": fit.plan.replicas,
                "losses": history.history["loss"],
                "weights": [w.tolist() for w in fit.model.get_weights()]}
""")

_TWO_LOGICAL_CPUS = _COMMON + textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    one = train(devices=["/cpu:0"])
    two = train(devices=["/cpu:0", "/cpu:1"])
    # an optimizer made outside the strategy's scope, as the notebooks pass it
    outside = train(devices=["/cpu:0", "/cpu:1"], made_outside=True)
    print(json.dumps({"one": one, "two": two, "outside": outside}))
""")

_WORKER = _COMMON + textwrap.dedent("""
    from bestiary_keras.distributed import strategy_for
    strategy = strategy_for()  # first, before TensorFlow runs anything
    result = train(strategy=strategy, steps=8)
    with open(sys.argv[1], "w") as f:
        json.dump(result, f)
""")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_one_and_two_replicas_train_the_same_model():
    """Same model, data and global batch (16) on one and on two logical CPU devices: Keras sums
    the replicas' gradients of half batches, so the per-step losses agree to float32 rounding
    (tolerance 1e-4 relative, measured about 1e-7) and so do the weights after 12 steps."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _TWO_LOGICAL_CPUS], check=False,
                          capture_output=True,
                          text=True, timeout=180, env=_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = result["one"], result["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert "MirroredStrategy" not in one["plan"] and "Mirrored strategy, 2 replica(s)" in two["plan"]
    assert len(one["losses"]) == len(two["losses"]) == 12
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    assert np.mean(one["losses"][-4:]) < np.mean(one["losses"][:4])  # it learns
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
    # an optimizer made outside the scope is made again inside it: the same training
    np.testing.assert_array_equal(result["outside"]["losses"], two["losses"])
    print(f"one vs two replicas: {time.perf_counter() - start:.1f} s, largest loss difference "
          f"{np.max(np.abs(np.subtract(one['losses'], two['losses']))):.2e}")


def test_two_workers_on_loopback_end_with_the_same_weights(tmp_path):
    """Two processes with TF_CONFIG on 127.0.0.1 train under MultiWorkerMirroredStrategy for 8
    steps and exit by themselves (killed after 150 s otherwise); both hold the same weights."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    start = time.perf_counter()
    procs, outputs = [], []
    for index in range(2):
        outputs.append(tmp_path / f"worker{index}.json")
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(outputs[-1])], env=_env(TF_CONFIG=config),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        errors = [p.communicate(timeout=max(1.0, 150 - (time.perf_counter() - start)))[1]
                  for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seconds = time.perf_counter() - start
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-2000:] for e in errors)
    first, second = (json.loads(path.read_text()) for path in outputs)
    assert first["replicas"] == second["replicas"] == 2
    assert "MultiWorkerMirrored strategy" in first["plan"]
    for a, b in zip(first["weights"], second["weights"]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7)
    assert np.mean(first["losses"][-3:]) < np.mean(first["losses"][:3])
    print(f"two workers on loopback: {seconds:.1f} s")


def test_strategy_for_reads_tf_config_and_rejects_bad_arguments(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert tf_config_workers() == 0
    two = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                      "task": {"type": "worker", "index": 0}})
    assert tf_config_workers(two) == 2
    assert tf_config_workers('{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}}') == 2
    with pytest.raises(ValueError, match="TF_CONFIG"):
        tf_config_workers("not json")
    assert strategy_for().num_replicas_in_sync == 1  # no GPU here: the default strategy
    assert strategy_for(["/cpu:0"]).num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="devices='/cpu:0'"):
        strategy_for("/cpu:0")
    with pytest.raises(ValueError, match="not among"):
        strategy_for(["/cpu:0", "/cpu:7"])
    monkeypatch.setenv("TF_CONFIG", two)
    with pytest.raises(ValueError, match="multi-worker"):
        strategy_for(["/cpu:0"])


def test_plan_chooses_by_profile_and_checks_its_arguments():
    plan = plan_for("full")  # no GPU here: float32 even for the full profile
    assert (plan.precision, plan.jit_compile, plan.steps_per_execution) == ("float32", False, 1)
    assert str(plan) == ("profile full | default strategy, 1 replica(s) on CPU | precision "
                         "float32 | XLA off | 1 step(s) per execution")
    with pytest.raises(ValueError, match="profile"):
        plan_for("fast")
    with pytest.raises(ValueError, match="precision='float16'"):
        plan_for("ci", precision="float16")
    with pytest.raises(ValueError, match="steps_per_execution=0"):
        plan_for("ci", steps_per_execution=0)
    assert plan_for("ci", jit_compile="auto").jit_compile is False  # Keras' "auto" on a CPU
    assert plan_for("ci", jit_compile=True).jit_compile is True
    with pytest.raises(ValueError, match="jit_compile='yes'"):
        plan_for("ci", jit_compile="yes")


def _two_outputs():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, {"a": keras.layers.Dense(2, name="a")(hidden),
                                "b": keras.layers.Dense(1, name="b")(hidden)})


def test_mixed_float16_casts_outputs_to_float32_and_scales_the_loss():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    targets = {"a": (x[:, 0] > 0).astype("int32"), "b": x[:, 1:2]}
    fit = fit_profile(_two_outputs, array_dataset(x, targets, batch_size=8), profile="ci",
                      steps=3, optimizer=lambda: keras.optimizers.SGD(0.05),
                      loss={"a": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            "b": "mse"},
                      precision="mixed_float16", log=None)
    assert isinstance(fit.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert {k: v.dtype for k, v in fit.model.output.items()} == {"a": "float32", "b": "float32"}
    assert fit.model.get_layer("a").compute_dtype == "float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert np.isfinite(fit.history.history["loss"]).all()
    with pytest.raises(ValueError, match="tf.data.Dataset"):
        fit_profile(_two_outputs, x, profile="ci", steps=1, optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="steps=0"):
        fit_profile(_two_outputs, array_dataset(x, targets, batch_size=8), profile="ci",
                    steps=0, optimizer="sgd", loss="mse")


def test_array_dataset_gives_seeded_full_batches_of_every_example():
    x = np.arange(10, dtype="float32")
    batches = [b.numpy() for b in array_dataset(x, batch_size=5, seed=3, repeat=False)]
    again = [b.numpy() for b in array_dataset(x, batch_size=5, seed=3, repeat=False)]
    assert [b.shape for b in batches] == [(5,), (5,)]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), x)  # a permutation
    np.testing.assert_array_equal(np.concatenate(batches), np.concatenate(again))
    doubled = array_dataset(x, x, batch_size=4, seed=None, repeat=False,
                            augment=lambda a, b: (2 * a, b))
    first_x, first_y = next(iter(doubled))
    np.testing.assert_array_equal(first_x.numpy(), [0, 2, 4, 6])  # order kept, map applied
    np.testing.assert_array_equal(first_y.numpy(), [0, 1, 2, 3])
    assert len(list(doubled)) == 2  # 10 examples, batches of 4: the remainder is dropped
    with pytest.raises(ValueError, match="batch_size=11"):
        array_dataset(x, batch_size=11)


# ----------------------------------------------------------------------------- the notebooks' use
class _Batches(keras.utils.PyDataset):
    """Six seeded batches, as the chapters' SeededBatches give them."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(1)
        self.x = rng.normal(size=(48, 6, 6, 2)).astype("float32")
        self.y = (self.x.mean(axis=(1, 2, 3)) > 0).astype("int32")

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return self.x[8 * index:8 * index + 8], self.y[8 * index:8 * index + 8]


def _small_net():
    inputs = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.3)(keras.layers.Activation("relu")(h))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(h)))


def _weights_after(train):
    keras.utils.set_random_seed(3)
    return train()


def test_the_plan_on_the_cpu_trains_exactly_as_model_fit():
    """What the notebooks rely on: TRAINING.scope / compile / fit change nothing on the CPU."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    data = _Batches()
    weights = np.random.default_rng(2).uniform(0.5, 2, 48).astype("float32")

    def plain():
        model = _small_net()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
        model.fit(data, epochs=2, verbose=0)  # Keras' default: the batch order is shuffled
        model.fit(data.x, data.y, sample_weight=weights, batch_size=16, epochs=1, verbose=0)
        return model.get_weights()

    for profile in ("ci", "default"):
        def planned():
            plan = plan_for(profile)
            with plan.scope():
                model = _small_net()
            trained = plan.compile(model, optimizer=keras.optimizers.Adam(1e-2), loss=loss)
            assert trained is model  # float32: no output wrapper
            plan.fit(model, data, epochs=2, verbose=0)
            plan.fit(model, data.x, data.y, sample_weight=weights, batch_size=16, epochs=1,
                     verbose=0)
            assert plan.seconds > 0
            return model.get_weights()

        for a, b in zip(_weights_after(plain), _weights_after(planned), strict=True):
            np.testing.assert_array_equal(a, b)


def test_plan_compile_and_fit_check_their_arguments():
    plan = plan_for("ci")
    with pytest.raises(ValueError, match="jit_compile= is the plan's choice"):
        plan.compile(_small_net(), optimizer="sgd", loss="mse", jit_compile=True)
    with pytest.raises(ValueError, match="not compiled"):
        plan.fit(_small_net(), _Batches())
    assert "float32" in str(plan) and "1 step(s) per execution" in str(plan)


def test_mixed_precision_plan_wraps_functional_outputs_and_restores_the_policy():
    plan = plan_for("full", precision="mixed_float16")
    with plan.scope():
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = _small_net()
    assert keras.mixed_precision.global_policy().name == "float32"
    trained = plan.compile(model, optimizer=lambda: keras.optimizers.SGD(0.01),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert trained is not model and trained.output.dtype == "float32"
    assert model.output.dtype == "float16"  # the same layers, trained through the wrapper
    assert isinstance(trained.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.copy() for w in model.get_weights()]
    history = plan.fit(trained, _Batches(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def _detector_batch():
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    boxes = np.zeros((2, 2, 4), np.float32)
    boxes[0, 0] = [4, 4, 20, 20]
    labels = np.array([[1, -1], [-1, -1]], np.int32)
    proposals = np.zeros((2, 5, 4), np.float32)
    valid = np.zeros((2, 5), bool)
    proposals[0, :2], valid[0, :2] = [[3, 3, 19, 21], [6, 2, 22, 18]], True
    return {"images": images, "boxes": boxes, "labels": labels, "proposals": proposals,
            "proposal_valid": valid}


@pytest.mark.parametrize("name", ["fast_rcnn", "faster_rcnn", "mask_rcnn", "view_synthesis"])
def test_models_with_their_own_train_step_scale_the_loss(name):
    """Under mixed_float16 their train_step multiplies the loss by the loss scale, and the
    LossScaleOptimizer divides the gradients by it: one step moves the weights as in float32
    would not be checkable on float16, so check the scaling is used and the step is finite."""
    from bestiary_keras.datasets import video
    from bestiary_keras.depth import networks
    from bestiary_keras.detection import fast_rcnn, faster_rcnn

    plan = plan_for("full", precision="mixed_float16")
    keras.utils.set_random_seed(0)
    with plan.scope():
        if name == "fast_rcnn":
            model = fast_rcnn.fast_rcnn((32, 32, 3), 3, widths=(4, 4, 4, 8), pool_size=2,
                                        fc_units=(8,), rois_per_image=4)
            batch = _detector_batch()
        elif name == "faster_rcnn":
            model = faster_rcnn.faster_rcnn((32, 32, 3), 3, widths=(4, 4, 4, 8),
                                            anchor_scales=(8, 16), rpn_width=8, pool_size=2,
                                            fc_units=(8,), rois_per_image=4, post_nms_train=8,
                                            post_nms_test=8)
            batch = {k: v for k, v in _detector_batch().items() if not k.startswith("propos")}
        elif name == "mask_rcnn":
            from bestiary_keras.datasets.scenes import make_scenes
            from bestiary_keras.detection import mask_rcnn

            model = mask_rcnn.mask_rcnn((64, 64, 3), 3, widths=(8, 8, 16, 16), pool_size=2,
                                        fc_units=(16,), rpn_width=16, mask_width=8,
                                        mask_convs=1, seed=0)
            scenes = make_scenes(2, 64, classes=("circle", "square", "triangle"),
                                 min_objects=1, max_objects=2, seed=5, cache=False)
            (batch,) = mask_rcnn.MaskBatches(scenes, batch_size=2, steps=1, seed=0,
                                             flip=False)[0]
        else:
            model = networks.ViewSynthesis(
                networks.disp_net((32, 48, 3), filters=(8, 8, 16, 16)),
                networks.pose_exp_net((32, 48, 3), filters=(8, 8, 16, 16, 16)),
                video.default_intrinsics(32, 48))
            batch = video.make_video_snippets(2, (32, 48), seed=7, cache=False).frames
            batch = batch.astype("float32") / 255
    model = plan.compile(model, optimizer=keras.optimizers.SGD(1e-3), run_eagerly=True)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    scaled = []
    original = model.optimizer.scale_loss
    model.optimizer.scale_loss = lambda loss: scaled.append(loss) or original(loss)
    logs = model.train_on_batch(batch, return_dict=True)
    assert len(scaled) == 1
    assert all(np.isfinite(v) for v in logs.values())


def test_importing_the_plan_module_loads_no_tensorflow():
    """The notebooks import it in their set-up cell, before runtime.setup quietens TensorFlow:
    importing TensorFlow there would store its start-up log lines in the notebook."""
    code = ("import sys\nfrom bestiary_keras import distributed, runtime\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=ROOT, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
