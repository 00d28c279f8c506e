"""``bestiary bench``: training speed of our VGG-16 and ResNet-50 against ``keras.applications``.

Each model is trained on one fixed random batch (so the input pipeline costs nothing) with SGD
and sparse cross-entropy, ours (``classification.vgg.vgg16``, ``classification.resnet.resnet50``)
and the reference (``keras.applications.VGG16`` / ``ResNet50`` with ``weights=None``) on the
same device, batch, input size, precision and XLA setting.

Timing: both models of a pair are built in one fresh process and warmed up (``--warmup`` steps
each, tracing included, not timed); then one training step of each is timed alternately,
``--steps`` times, so that other jobs on a shared machine slow both alike (timing each model in
its own process gave ratios from 0.4 to 2.4 for identical networks on the busy 2-core CPU).
Each step waits for its loss; the table gives the median step and the images per second it
implies. Peak memory comes from a fresh process per model (build and two steps): the
accelerator's peak allocation on a GPU (``tf.config.experimental.get_memory_info``), the
process's peak resident set size on the CPU (TensorFlow itself included, the same for both).
The ratios are ours / reference: throughput (higher is better) and memory (lower is better).
``--in-process`` does everything in the calling process (faster; the memory column then
accumulates).

Usage: ``python -m bestiary_keras.bench --input-size 64 --batch-size 16 --steps 5`` or, from
Python, ``bench.main([...])`` (returns the exit status). Results go to
``docs/bench/bench-<device>.md`` and a ``.json`` with the same stem.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["MODELS", "build", "default_output", "main", "measure", "peak_memory", "ratios",
           "results_markdown"]

MODELS = ("vgg16", "resnet50")
"""The models compared: ours against ``keras.applications`` (``VGG16``, ``ResNet50``)."""

IMPLEMENTATIONS = ("ours", "reference")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def build(model: str, implementation: str, *, input_size: int, num_classes: int):
    """One of the compared models, untrained: ``build("vgg16", "ours", input_size=64, ...)``."""
    import keras

    from bestiary_keras.classification import resnet, vgg

    shape = (input_size, input_size, 3)
    builders = {
        ("vgg16", "ours"): lambda: vgg.vgg16(input_shape=shape, num_classes=num_classes),
        ("vgg16", "reference"): lambda: keras.applications.VGG16(
            weights=None, input_shape=shape, classes=num_classes),
        ("resnet50", "ours"): lambda: resnet.resnet50(input_shape=shape, num_classes=num_classes),
        ("resnet50", "reference"): lambda: keras.applications.ResNet50(
            weights=None, input_shape=shape, classes=num_classes),
    }
    if (model, implementation) not in builders:
        raise ValueError(f"model={model!r}, implementation={implementation!r}: expected a model "
                         f"in {MODELS} and an implementation in {IMPLEMENTATIONS}.")
    return builders[model, implementation]()


def _device() -> tuple[str, str]:
    """(a description, a file-name slug) of the device TensorFlow trains on."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return name, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    cores = os.cpu_count()
    return f"CPU ({platform.processor() or platform.machine()}, {cores} cores)", f"cpu-{cores}core"


def _prepare(model, implementation, spec, gpus):
    """Builds and compiles one model and returns it with a fixed random batch."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(spec["seed"])
    net = build(model, implementation, input_size=spec["input_size"],
                num_classes=spec["num_classes"])
    net.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy", jit_compile=bool(spec["jit_compile"]))
    rng = np.random.default_rng(spec["seed"])
    size, batch = spec["input_size"], spec["batch_size"]
    images = rng.uniform(0, 1, size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, spec["num_classes"], size=(batch,)).astype("int32")
    return net, images, labels


def _policy(precision, gpus):
    return ("mixed_float16" if gpus else "float32") if precision == "auto" else precision


def _peak_mib(gpus) -> tuple[float, str]:
    import tensorflow as tf

    if gpus:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, "GPU peak"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS"


def measure(model: str, *, input_size: int, batch_size: int, steps: int, warmup: int,
            precision: str = "auto", jit_compile: bool = False, num_classes: int = 10,
            seed: int = 0, memory: str = "this process") -> list[dict]:
    """Times ours and the reference step by step, alternately, in this process.

    Both models are built and warmed up (``warmup`` steps each, tracing included), then
    ``steps`` rounds each time one training step of each model, in alternating order, so that
    other jobs on the machine slow both alike. Each step waits for its loss.

    Args:
        memory: ``"this process"`` reads the peak memory after each model's warm-up (on the
            CPU the process's peak RSS, which then includes the model built before it);
            ``"none"`` leaves it to ``peak_memory`` in fresh processes.

    Returns:
        Two dicts (ours, reference): model, implementation, parameters, step_ms (median),
        images_per_s (from the median step), peak_mib, memory, device, device_slug, precision.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    spec = dict(input_size=input_size, batch_size=batch_size, num_classes=num_classes,
                jit_compile=jit_compile, seed=seed)
    gpus = tf.config.list_physical_devices("GPU")
    policy = _policy(precision, gpus)
    keras.mixed_precision.set_global_policy(policy)
    prepared, peaks = [], []
    try:
        for implementation in IMPLEMENTATIONS:
            if gpus:
                tf.config.experimental.reset_memory_stats("GPU:0")
            net, images, labels = _prepare(model, implementation, spec, gpus)
            for _ in range(warmup):
                net.train_on_batch(images, labels)
            prepared.append((net, images, labels))
            peaks.append(_peak_mib(gpus) if memory == "this process" else (float("nan"), ""))
        seconds = [[], []]
        for step in range(steps):
            order = (0, 1) if step % 2 == 0 else (1, 0)
            for k in order:
                net, images, labels = prepared[k]
                start = time.perf_counter()
                net.train_on_batch(images, labels)  # returns the loss: the step is done
                seconds[k].append(time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    device, slug = _device()
    results = []
    for implementation, (net, _, _), times, (peak, kind) in zip(
            IMPLEMENTATIONS, prepared, seconds, peaks):
        step = float(np.median(times))
        results.append({"model": model, "implementation": implementation,
                        "parameters": net.count_params(), "step_ms": 1000.0 * step,
                        "steps_ms": [round(1000.0 * t, 2) for t in times],
                        "images_per_s": batch_size / step, "peak_mib": peak, "memory": kind,
                        "device": device, "device_slug": slug, "precision": policy})
    return results


def peak_memory(model: str, implementation: str, *, input_size: int, batch_size: int,
                precision: str = "auto", jit_compile: bool = False, num_classes: int = 10,
                seed: int = 0) -> tuple[float, str]:
    """Peak memory (MiB, and what it measures) of building and training one model two steps.

    Meant for a fresh process: on the CPU it is the process's peak RSS.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    keras.mixed_precision.set_global_policy(_policy(precision, gpus))
    spec = dict(input_size=input_size, batch_size=batch_size, num_classes=num_classes,
                jit_compile=jit_compile, seed=seed)
    net, images, labels = _prepare(model, implementation, spec, gpus)
    for _ in range(2):
        net.train_on_batch(images, labels)
    return _peak_mib(gpus)


def _in_subprocess(task: dict):
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "bestiary_keras.bench", "--measure",
                           json.dumps(task)], check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"bench task {task} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(results: list[dict]) -> list[dict]:
    """Per model: throughput and peak memory, ours / reference (throughput: higher is better)."""
    found = {(r["model"], r["implementation"]): r for r in results}
    rows = []
    for model in dict.fromkeys(r["model"] for r in results):
        ours, reference = found.get((model, "ours")), found.get((model, "reference"))
        if ours and reference:
            rows.append({"model": model,
                         "throughput_ratio": ours["images_per_s"] / reference["images_per_s"],
                         "memory_ratio": ours["peak_mib"] / reference["peak_mib"],
                         "same_parameters": ours["parameters"] == reference["parameters"]})
    return rows


def results_markdown(results: list[dict], settings: dict) -> str:
    """The results file: settings, one row per measured model, the ratios."""
    first = results[0]
    lines = [
        f"# Training throughput: ours / keras.applications ({first['device']})", "",
        f"Device: {first['device']}. {settings.get('note') or ''}".rstrip(), "",
        (f"Input {settings['input_size']}x{settings['input_size']}x3, batch "
        f"{settings['batch_size']}, {settings['num_classes']} classes, precision "
        f"{first['precision']}, XLA {'on' if settings['jit_compile'] else 'off'}; "
        f"{settings['warmup']} warm-up steps per model, then {settings['steps']} timed steps "
        "of each model taken alternately in one process (median step); peak memory "
        f"{'in that process, after each warm-up' if settings['in_process'] else 'of two steps in a fresh process per model'}. "
        f"TensorFlow {settings['tensorflow']}, Keras {settings['keras']}, {settings['date']}. "
        f"Command: `{settings['command']}`."),
        "",
        ("| model | implementation | parameters | step time (ms, median) | fastest - slowest "
         f"step (ms) | images/s | peak memory (MiB, {first['memory']}) |"),
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        spread = (f"{min(r['steps_ms']):.0f} - {max(r['steps_ms']):.0f}" if r.get("steps_ms")
                  else "")
        lines.append(f"| {r['model']} | {r['implementation']} | {r['parameters']:,} | "
                     f"{r['step_ms']:.1f} | {spread} | {r['images_per_s']:.2f} | "
                     f"{r['peak_mib']:.0f} |")
    lines += ["", ("| model | throughput ours / reference (higher is better) | "
                   "peak memory ours / reference (lower is better) | same parameter count |"),
              "|---|---:|---:|---|"]
    for r in ratios(results):
        lines.append(f"| {r['model']} | {r['throughput_ratio']:.3f} | {r['memory_ratio']:.3f} | "
                     f"{'yes' if r['same_parameters'] else 'no'} |")
    return "\n".join(lines) + "\n"


def default_output(device_slug: str) -> Path:
    """``docs/bench/bench-<device>.md`` in the checkout."""
    return Path(__file__).resolve().parent.parent / "docs" / "bench" / f"bench-{device_slug}.md"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bestiary bench", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--input-size", type=_positive, default=64,
                        help="height and width of the images (>= 32, a multiple of 32 for VGG)")
    parser.add_argument("--batch-size", type=_positive, default=16)
    parser.add_argument("--steps", type=_positive, default=5, help="timed steps")
    parser.add_argument("--warmup", type=_positive, default=2,
                        help="untimed steps first (tracing, allocation)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="dtype policy (auto: mixed_float16 on a GPU, else float32)")
    parser.add_argument("--jit-compile", action="store_true", help="compile the steps with XLA")
    parser.add_argument("--num-classes", type=_positive, default=10)
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (faster; the memory column then "
                             "accumulates on the CPU)")
    parser.add_argument("--note", default="", help="a sentence for the results file")
    parser.add_argument("--output", type=Path, default=None,
                        help="Markdown results file (default: docs/bench/bench-<device>.md); "
                             "the JSON goes next to it")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``bestiary bench [options]``: measure, print the table, write the results; returns 0."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.measure is not None:  # one task, in the fresh process that _in_subprocess started
        task = json.loads(args.measure)
        function = {"measure": measure, "peak_memory": peak_memory}[task.pop("task")]
        print(json.dumps(function(**task)))
        return 0
    if args.input_size < 32 or ("vgg16" in args.models and args.input_size % 32):
        parser.error(f"--input-size {args.input_size}: both models need at least 32 and VGG-16's "
                     "flatten needs a multiple of 32 (e.g. 64 or 96).")
    spec = dict(input_size=args.input_size, batch_size=args.batch_size, steps=args.steps,
                warmup=args.warmup, precision=args.precision, jit_compile=args.jit_compile,
                num_classes=args.num_classes)
    results = []
    for model in args.models:
        if args.in_process:
            pair = measure(model, **spec)
        else:
            pair = _in_subprocess(dict(task="measure", model=model, memory="none", **spec))
            for row in pair:
                memory_spec = {k: v for k, v in spec.items() if k not in ("steps", "warmup")}
                row["peak_mib"], row["memory"] = _in_subprocess(dict(
                    task="peak_memory", model=model, implementation=row["implementation"],
                    **memory_spec))
        for row in pair:
            print(f"{model} {row['implementation']}: {row['images_per_s']:.2f} images/s, "
                  f"{row['step_ms']:.1f} ms/step, {row['peak_mib']:.0f} MiB", flush=True)
        results += pair
    import keras
    import tensorflow as tf

    settings = dict(spec, in_process=args.in_process, note=args.note,
                    tensorflow=tf.__version__, keras=keras.__version__,
                    date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    command="bestiary bench " + " ".join(argv if argv is not None else sys.argv[1:]))
    text = results_markdown(results, settings)
    output = args.output or default_output(results[0]["device_slug"])
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(
        {"settings": settings, "results": results, "ratios": ratios(results)}, indent=1) + "\n",
        encoding="utf-8")
    print(text)
    print(f"Written to {output} and {output.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
