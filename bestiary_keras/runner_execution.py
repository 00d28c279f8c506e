"""Executing one notebook for the ``bestiary`` runner: a fresh kernel, its environment, its
peak memory, Ctrl-C, and the metrics it reports.

``run_notebook`` runs a notebook top to bottom with nbclient in a fresh kernel whose environment
(``kernel_environment``) carries ``BESTIARY_PROFILE``, ``BESTIARY_SEED``, ``BESTIARY_REPORT`` (a
JSON-lines file that ``bestiary_keras.runtime.report`` appends to) and ``BESTIARY_RUN_DIR``,
and returns a ``NotebookResult`` (status, seconds, peak memory, metrics). The command line and
the run's folder and summaries are in ``runner``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bestiary_keras import runtime

__all__ = ["Interruption", "kernel_environment", "NotebookResult", "run_notebook"]

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class NotebookResult:
    notebook: str
    section: str
    status: str = "not run"  # pending | passed | failed | interrupted
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    metrics: list[dict] = field(default_factory=list)
    error: str | None = None
    slowest_cell: int | None = None
    """Position (from 1, all cells counted) of the code cell that ran longest."""
    slowest_cell_seconds: float | None = None

    def over_memory_budget(self, limit_mb: float | None) -> bool:
        return bool(limit_mb) and self.peak_memory_mb is not None and self.peak_memory_mb > limit_mb

    def headline(self) -> str:
        shown = [m for m in self.metrics if m.get("headline")] or self.metrics[-1:]
        return "; ".join(f"{m['name']} {m['value']:.3g}" for m in shown)


class _PeakMemory:
    """Samples the resident memory of a process and its children in a thread (psutil)."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak = 0
        self._pid = None
        self._stop = threading.Event()
        self._thread = None

    def watch(self, pid: int) -> None:
        self._pid = pid
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is a dependency
            return
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self._pid)
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True)
                )
                self.peak = max(self.peak, rss)
            except Exception:
                pass
            self._stop.wait(self.interval)

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        return round(self.peak / 2**20, 1) if self.peak else None


class Interruption:
    """Turns the first Ctrl-C (SIGINT) into an orderly stop: the kernel is shut down, the run's
    summary marks what did not finish as ``interrupted`` and the command exits 130. A second
    Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self.kernel_pid: int | None = None
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _handle(self, signum, frame):
        if self.requested:  # the second Ctrl-C: no more waiting
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: stopping the kernel and writing the summary "
              "(Ctrl-C again to quit at once).", file=sys.stderr, flush=True)
        if self.kernel_pid:
            try:
                os.kill(self.kernel_pid, signal.SIGKILL)  # nbclient then reports a dead kernel
            except OSError:
                pass


def _error_line(exc: BaseException) -> str:
    text = _ANSI_ESCAPE.sub("", str(exc))  # tracebacks carry terminal colours
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def kernel_environment(*, profile: str, seed: int, metrics_file: Path, out_dir: Path) -> dict:
    """The environment of a notebook's kernel: this process's, plus the run's variables
    (``BESTIARY_PROFILE``, ``BESTIARY_SEED``, ``BESTIARY_REPORT``, ``BESTIARY_RUN_DIR``) and
    without ``MPLBACKEND`` (the kernel's inline backend stores the figures)."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update({runtime.PROFILE_ENV: profile, runtime.SEED_ENV: str(seed),
                runtime.REPORT_ENV: str(metrics_file.resolve()),
                runtime.RUN_DIR_ENV: str(out_dir.resolve())})
    return env


def run_notebook(path: Path, out_dir: Path, *, profile: str, seed: int, section: str = "",
                 timeout: int = 1800, progress=None, write_back: bool = False,
                 interruption: Interruption | None = None) -> NotebookResult:
    """Executes one notebook in a fresh kernel and returns its result (never raises on failure).

    ``out_dir`` is the run's own folder: the executed copy goes there, and the kernel reads
    ``BESTIARY_RUN_DIR`` to find the results of the notebooks that ran before it. The kernel's
    environment (``kernel_environment``) is handed to it at its start; this process's own
    environment is left as it is.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    result = NotebookResult(notebook=path.name, section=section)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook, unreadable: one failed row
        result.status = "failed"
        result.error = f"cannot read the notebook: {_error_line(exc)}"
        return result
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    metrics_file = out_dir / f"{path.stem}.metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    memory = _PeakMemory()

    env = kernel_environment(profile=profile, seed=seed, metrics_file=metrics_file,
                             out_dir=out_dir)

    done = {"cells": 0, "started": None}

    def on_cell_execute(cell, cell_index):
        done["started"] = time.perf_counter()

    def on_cell_executed(cell, cell_index, execute_reply):
        if cell.cell_type == "code":
            done["cells"] += 1
            if done["started"] is not None:  # the live-use budget: how long one cell takes
                seconds = round(time.perf_counter() - done["started"], 1)
                if result.slowest_cell_seconds is None or seconds > result.slowest_cell_seconds:
                    result.slowest_cell, result.slowest_cell_seconds = cell_index + 1, seconds
            if progress is not None:
                progress.set_postfix_str(f"{path.stem}: cell {done['cells']}/{code_cells}")

    def on_notebook_start(notebook):
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid:
            memory.watch(pid)
            if interruption is not None:
                interruption.kernel_pid = pid
                if interruption.requested:  # Ctrl-C came while the kernel was starting
                    os.kill(pid, signal.SIGKILL)

    client = NotebookClient(
        nb,
        on_notebook_start=on_notebook_start,
        timeout=timeout,
        kernel_name="python3",
        # ipykernel 7 warns at every start that its local TCP transport is unencrypted: the
        # kernel's own log, not the notebook's, so only its errors reach the terminal
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_execute=on_cell_execute,
        on_cell_executed=on_cell_executed,
    )
    start = time.perf_counter()
    outcome: dict = {}

    def execute():
        try:
            client.execute(env=env)  # handed to the kernel manager's start_kernel
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc

    # nbclient runs in a worker thread: in the main thread it would install its own SIGINT
    # handler, whose clean-up races its own (nbclient 0.10/0.11: "assert self.km is not None").
    # Here Ctrl-C reaches ``Interruption``, which kills the kernel; nbclient then sees a dead
    # kernel and cleans up in order.
    worker = threading.Thread(target=execute, name=f"nbclient-{path.stem}", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
        error = outcome.get("error")
        if error is None:
            result.status = "passed"
        elif isinstance(error, (CellExecutionError, CellTimeoutError, DeadKernelError,
                                RuntimeError, AssertionError, OSError)):
            result.status = "failed"
            result.error = _error_line(error)
        else:
            raise error
    finally:
        result.seconds = round(time.perf_counter() - start, 1)
        result.peak_memory_mb = memory.stop()
        if interruption is not None:
            interruption.kernel_pid = None
    if interruption is not None and interruption.requested:
        result.status, result.error = "interrupted", f"interrupted after {done['cells']} of " \
            f"{code_cells} code cells"
    if metrics_file.exists():
        lines = metrics_file.read_text(encoding="utf-8").splitlines()
        result.metrics = [json.loads(line) for line in lines if line.strip()]
        metrics_file.unlink()  # its records now live in the run's summary.json
    try:
        nbformat.write(nb, out_dir / path.name)
        if write_back and result.status == "passed":
            nbformat.write(nb, path)
    except OSError as exc:
        result.status = "failed"
        result.error = f"could not save the executed notebook: {_error_line(exc)}"
    return result
