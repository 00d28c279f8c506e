"""Profiles, seeding and metric reporting: the first cell of every notebook.

Every notebook starts with a ``parameters`` cell::

    PROFILE = os.environ.get("BESTIARY_PROFILE", "default")
    SEED = int(os.environ.get("BESTIARY_SEED", "0"))

followed by one call, ``setup(PROFILE, SEED)``, which seeds Python, NumPy and Keras, quiets
TensorFlow's C++ logs and prints versions, devices and the profile. Budgets are then chosen
with ``pick(PROFILE, ci=..., default=..., full=...)`` (fixed step counts, never seconds), and
the notebook ends with ``report(...)`` calls that the ``bestiary`` runner collects.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

__all__ = [
    "PROFILES", "PROFILE_ENV", "REPORT_ENV", "RUN_DIR_ENV", "SEED_ENV", "check_profile",
    "check_seed", "devices", "elapsed", "fit_verbose", "pick", "profile_from_env", "quiet_tensorflow",
    "report", "repository_root", "run_dir_name", "runner_metrics", "seed_everything",
    "seed_from_env", "setup",
]

PROFILES = ("ci", "default", "full")
"""``ci``: CPU, about a minute, must still clearly learn. ``default``: a laptop CPU, a few
minutes, convincing. ``full``: one GPU, the real behaviour (mixed precision, XLA)."""

PROFILE_ENV = "BESTIARY_PROFILE"
SEED_ENV = "BESTIARY_SEED"
REPORT_ENV = "BESTIARY_REPORT"
"""When set (the runner sets it), ``report`` appends one JSON line per metric to that file."""
RUN_DIR_ENV = "BESTIARY_RUN_DIR"
"""Set by the runner for its kernels: the folder of the run in progress (``runner_metrics``)."""

_STATE = {"profile": None, "seed": None, "t0": None}


def check_profile(profile: str) -> str:
    """Returns ``profile`` if it is one of ``PROFILES``, else raises a ``ValueError``."""
    if profile not in PROFILES:
        raise ValueError(
            f"Unknown profile {profile!r}: expected one of {', '.join(PROFILES)} "
            f"(set it with the environment variable {PROFILE_ENV})."
        )
    return profile


def profile_from_env(default: str = "default") -> str:
    """The profile named by ``BESTIARY_PROFILE`` (or ``default``), validated."""
    return check_profile(os.environ.get(PROFILE_ENV, default).strip().lower())


def check_seed(seed, source: str = "seed") -> int:
    """Returns ``seed`` as an int if it is a whole number >= 0, else raises a ``ValueError``."""
    try:
        value = int(str(seed).strip())
    except ValueError:
        raise ValueError(f"{source}={seed!r} is not an integer seed: use a whole number >= 0, "
                         f"e.g. {SEED_ENV}=0.") from None
    if value < 0:
        raise ValueError(f"{source}={seed!r} is negative: NumPy and Keras take seeds >= 0.")
    return value


def seed_from_env(default: int = 0) -> int:
    """The seed named by ``BESTIARY_SEED`` (or ``default``), validated (a whole number >= 0)."""
    return check_seed(os.environ.get(SEED_ENV, str(default)), SEED_ENV)


def pick(profile: str, *, ci, default, full=None):
    """Chooses a budget by profile: ``pick(PROFILE, ci=300, default=2000, full=20000)``.

    ``full`` falls back to ``default`` when not given.
    """
    check_profile(profile)
    if profile == "ci":
        return ci
    if profile == "full" and full is not None:
        return full
    return default


def seed_everything(seed: int) -> None:
    """Seeds Python's ``random``, NumPy and the backend: ``keras.utils.set_random_seed`` does
    all three (and resets Keras' global seed generator). ``PYTHONHASHSEED`` is set for the
    processes this one starts (string hashing in this process was fixed at its start)."""
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(int(seed))


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ start-up chatter and Python warnings (call before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*oneDNN.*")
    if "tensorflow" not in sys.modules:
        # TensorFlow 2.21 writes "All log messages before absl::InitializeLog() ..." and its
        # oneDNN / CUDA notices straight to file descriptor 2 while it loads, whatever
        # TF_CPP_MIN_LOG_LEVEL says; a notebook would store them. An import error still raises.
        _import_with_stderr_closed("tensorflow")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        pass


def _import_with_stderr_closed(module: str) -> None:
    import importlib

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some embedded interpreters): just import
        importlib.import_module(module)
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def devices() -> list[str]:
    """Names of the accelerators TensorFlow sees (empty list on a CPU-only machine)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def setup(profile: str | None = None, seed: int | None = None, *, verbose: bool = True) -> str:
    """One call at the top of each notebook: seed, quiet logs, print versions, devices, profile.

    Args:
        profile: ``"ci"``, ``"default"`` or ``"full"``; ``None`` reads ``BESTIARY_PROFILE``.
        seed: the seed; ``None`` reads ``BESTIARY_SEED`` (default 0).
        verbose: print the summary.

    Returns:
        The validated profile name.
    """
    quiet_tensorflow()
    profile = profile_from_env() if profile is None else check_profile(profile)
    seed = seed_from_env() if seed is None else check_seed(seed)
    import keras
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    seed_everything(seed)
    gpus = devices()
    if profile == "full" and gpus:
        # The real behaviour: mixed precision on a GPU (XLA is chosen per model via jit_compile).
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("float32")
    _STATE.update(profile=profile, seed=seed, t0=time.perf_counter())
    if verbose:
        print(
            f"Python {platform.python_version()} | TensorFlow {tf.__version__} | "
            f"Keras {keras.__version__} (backend {keras.backend.backend()}) | NumPy {np.__version__}"
        )
        if gpus:
            print(f"Devices: {', '.join(gpus)}")
        else:
            print(
                "Devices: no GPU found, running on the CPU "
                f"({os.cpu_count()} cores). That is expected for the 'ci' and 'default' profiles."
            )
        if profile == "full" and not gpus:
            print("Warning: the 'full' profile is meant for a GPU; on the CPU it will take hours.")
        print(f"Profile: {profile} | seed: {seed}")
    return profile


def elapsed() -> float:
    """Seconds since ``setup`` was called (0 if it was not)."""
    t0 = _STATE["t0"]
    return 0.0 if t0 is None else time.perf_counter() - t0


def report(
    name: str,
    value: float,
    *,
    threshold: float | None = None,
    higher_is_better: bool = True,
    headline: bool = False,
    unit: str = "",
) -> float:
    """Prints a measured result and hands it to the ``bestiary`` runner.

    When ``threshold`` is given the result is checked (``value >= threshold`` when higher is
    better, ``value <= threshold`` otherwise) and an ``AssertionError`` explains a failure, so
    a notebook that stops learning fails CI. The runner's summary table shows the metrics
    marked ``headline=True``.

    Returns:
        ``value`` as a float.
    """
    value = float(value)
    if not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else str(value)
        raise AssertionError(f"{name} is {shown} (not a finite number): the computation that "
                             "produced it diverged or divided by zero.")
    if threshold is not None and not math.isfinite(float(threshold)):
        raise ValueError(f"threshold={threshold!r} for {name} is not a finite number: a "
                         "threshold must be a real bound that a result can miss.")
    passed = None
    if threshold is not None:
        passed = value >= threshold if higher_is_better else value <= threshold
    relation = ">=" if higher_is_better else "<="
    suffix = f" {unit}" if unit else ""
    check = "" if threshold is None else f"  (required {relation} {threshold:g}: {'ok' if passed else 'FAILED'})"
    print(f"{name}: {value:.4g}{suffix}{check}")
    path = os.environ.get(REPORT_ENV)
    if path:
        record = {
            "name": name,
            "value": value,
            "threshold": threshold,
            "higher_is_better": higher_is_better,
            "headline": headline,
            "unit": unit,
            "passed": passed,
            "profile": _STATE["profile"],
            "seed": _STATE["seed"],
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    if passed is False:
        raise AssertionError(
            f"{name} = {value:.4g} does not reach the required {relation} {threshold:g} "
            f"(profile {_STATE['profile']}, seed {_STATE['seed']})."
        )
    return value


def repository_root() -> Path:
    """The checkout this package lives in (the folder that holds ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def run_dir_name(profile: str, seed: int) -> str:
    """The runner's folder name for one run: ``<profile>-seed<seed>`` (e.g. ``ci-seed0``)."""
    return f"{check_profile(profile)}-seed{check_seed(seed)}"


def runner_metrics(notebooks, *, profile: str | None = None, seed: int | None = None,
                   run_dir=None) -> dict:
    """The metrics that other notebooks of a ``bestiary run`` reported.

    Reads the run's ``summary.json``, which the runner rewrites after every notebook, so a run
    of the whole collection sees the numbers of this very run. The folder is, in order:
    ``run_dir``; the run in progress (``BESTIARY_RUN_DIR``, set by the runner, which honours
    ``bestiary run --results DIR``); else ``results/<profile>-seed<seed>`` in the checkout.

    Args:
        notebooks: notebook numbers, e.g. ``("03", "04")``.
        profile, seed: the run to read when neither ``run_dir`` nor the runner names one
            (default: the ones ``setup`` was called with).

    Returns:
        ``{number: {"notebook": file name, "metrics": {name: value}, "source": path,
        "seed": seed}}`` for the notebooks that passed; absent numbers were not run.
    """
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV)
    if run_dir is None:
        profile = profile or _STATE["profile"] or "default"
        seed = _STATE["seed"] if seed is None else seed
        run_dir = repository_root() / "results" / run_dir_name(profile, seed or 0)
    summary = Path(run_dir) / "summary.json"
    try:
        content = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = {}
    for entry in content.get("notebooks", []):
        number = str(entry.get("notebook", ""))[:2]
        if number in tuple(notebooks) and entry.get("status") == "passed":
            found[number] = {
                "notebook": entry["notebook"], "source": str(summary), "seed": content.get("seed"),
                "metrics": {m["name"]: m["value"] for m in entry.get("metrics", [])},
            }
    return found


def fit_verbose() -> int:
    """Keras ``fit`` verbosity: a live progress bar in a notebook, one line per epoch headless."""
    return 1 if sys.stdout.isatty() or "ipykernel" in sys.modules and not os.environ.get(REPORT_ENV) else 2
