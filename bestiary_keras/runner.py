"""``bestiary``: run the collection's notebooks headless and collect their measured results.

    bestiary list                          # the notebooks and their lecture sections
    bestiary run --profile ci              # execute every notebook, write results/ci/summary.md
    bestiary run --profile default 01 02   # only some notebooks (by number or name)
    bestiary run --profile ci --write-back # also store the outputs in notebooks/ (for commits)

Each notebook is executed top to bottom with nbclient in a fresh kernel whose environment
carries ``BESTIARY_PROFILE``, ``BESTIARY_SEED`` and ``BESTIARY_REPORT`` (a JSON-lines file that
``bestiary_keras.runtime.report`` appends to). The executed notebooks, ``summary.md`` and
``summary.json`` (notebook, seconds, peak memory, headline metrics, pass/fail) are written under
``results/<profile>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bestiary_keras import runtime

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# The lecture's sections, numbered as the notebooks are (notebooks/NN_name.ipynb).
SECTIONS: dict[str, str] = {
    "01": "VGG: classification and localisation",
    "02": "ResNet: the residual module, ResNet-50, why skips help",
    "03": "R-CNN",
    "04": "Fast R-CNN: RoI pooling, multi-task loss",
    "05": "Faster R-CNN: region proposal network, anchors",
    "06": "YOLO: S x S grid and its loss",
    "07": "YOLOv2: the ablation, step by step",
    "08": "U-Net: valid convolutions, overlap-tile, elastic deformation",
    "09": "SegNet: decoding with pooling indices",
    "10": "RefineNet: multi-path refinement",
    "11": "Mask R-CNN: RoIAlign and the mask head",
    "12": "Convolutional Pose Machines",
    "13": "OpenPose: part affinity fields, bipartite matching",
    "14": "Unsupervised depth and ego-motion from video",
    "15": "Siamese networks: contrastive loss",
    "16": "Triplet descriptors for object recognition and 3D pose",
    "17": "LIFT: learned invariant feature transform",
}


def repository_root() -> Path:
    """The checkout this package lives in (the folder holding ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def default_notebooks_dir() -> Path:
    """``./notebooks`` when run from a checkout's top folder, else the package's own checkout."""
    here = Path.cwd() / "notebooks"
    return here if here.is_dir() else repository_root() / "notebooks"


def find_notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    """The collection's notebooks ``NN_name.ipynb``, in lecture order."""
    notebooks_dir = Path(notebooks_dir or repository_root() / "notebooks")
    paths = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if p.name[:2] in SECTIONS]


def select_notebooks(paths: list[Path], wanted: list[str]) -> list[Path]:
    """Filters ``paths`` by number (``01``, ``1``) or by part of the name (``vgg``)."""
    if not wanted:
        return paths
    chosen = []
    for key in wanted:
        matches = [p for p in paths if p.name[:2] == key.zfill(2) or key.lower() in p.stem.lower()]
        if not matches:
            names = ", ".join(p.stem for p in paths) or "none"
            raise ValueError(f"No notebook matches {key!r}; available: {names}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


@dataclass
class NotebookResult:
    notebook: str
    section: str
    status: str = "not run"  # passed | failed
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    metrics: list[dict] = field(default_factory=list)
    error: str | None = None

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


def run_notebook(path: Path, out_dir: Path, *, profile: str, seed: int, timeout: int = 1800,
                 progress=None, write_back: bool = False) -> NotebookResult:
    """Executes one notebook in a fresh kernel and returns its result (never raises on failure)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    section = SECTIONS.get(path.name[:2], "")
    result = NotebookResult(notebook=path.name, section=section)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = out_dir / f"{path.stem}.metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    nb = nbformat.read(path, as_version=4)
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    memory = _PeakMemory()

    saved_env = {k: os.environ.get(k) for k in
                 (runtime.PROFILE_ENV, runtime.SEED_ENV, runtime.REPORT_ENV, "MPLBACKEND")}
    os.environ[runtime.PROFILE_ENV] = profile
    os.environ[runtime.SEED_ENV] = str(seed)
    os.environ[runtime.REPORT_ENV] = str(metrics_file.resolve())
    os.environ.pop("MPLBACKEND", None)  # the inline backend, so that figures are stored

    done = {"cells": 0}

    def on_cell_executed(cell, cell_index, execute_reply):
        if cell.cell_type == "code":
            done["cells"] += 1
            if progress is not None:
                progress.set_postfix_str(f"{path.stem}: cell {done['cells']}/{code_cells}")

    def on_notebook_start(notebook):
        pid = getattr(getattr(client.km, "provisioner", None), "pid", None)
        if pid:
            memory.watch(pid)

    client = NotebookClient(
        nb,
        on_notebook_start=on_notebook_start,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=on_cell_executed,
    )
    start = time.perf_counter()
    try:
        client.execute()
        result.status = "passed"
    except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as exc:
        result.status = "failed"
        text = _ANSI_ESCAPE.sub("", str(exc))  # tracebacks carry terminal colours
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        result.error = lines[-1][:300] if lines else type(exc).__name__
    finally:
        result.seconds = round(time.perf_counter() - start, 1)
        result.peak_memory_mb = memory.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if metrics_file.exists():
        result.metrics = [json.loads(line) for line in metrics_file.read_text().splitlines() if line]
    nbformat.write(nb, out_dir / path.name)
    if write_back and result.status == "passed":
        nbformat.write(nb, path)
    return result


def summary_markdown(results: list[NotebookResult], profile: str, seed: int) -> str:
    lines = [
        f"# bestiary run: profile `{profile}`, seed {seed}",
        "",
        "| notebook | section | seconds | peak memory (MB) | headline metric | result |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in results:
        mem = "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {r.section} | {r.seconds:.1f} | {mem} | {r.headline()} | {status} |")
    total = sum(r.seconds for r in results)
    passed = sum(r.status == "passed" for r in results)
    lines += ["", f"{passed} of {len(results)} notebooks passed in {total:.0f} s."]
    return "\n".join(lines) + "\n"


def run(paths: list[Path], *, profile: str, seed: int, results_dir: Path, timeout: int = 1800,
        write_back: bool = False) -> list[NotebookResult]:
    """Executes ``paths`` in order, writing executed copies and the summary under ``results_dir``."""
    from tqdm.auto import tqdm

    runtime.check_profile(profile)
    out_dir = Path(results_dir) / profile
    results = []
    with tqdm(paths, desc=f"bestiary ({profile})", unit="notebook", file=sys.stdout) as bar:
        for path in bar:
            bar.set_postfix_str(path.stem)
            result = run_notebook(path, out_dir, profile=profile, seed=seed, timeout=timeout,
                                  progress=bar, write_back=write_back)
            results.append(result)
            bar.write(f"{result.status:>6}  {path.name}  {result.seconds:.1f} s  {result.headline()}"
                      + (f"  ({result.error})" if result.error else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(summary_markdown(results, profile, seed), encoding="utf-8")
    (out_dir / "summary.json").write_text(
        json.dumps({"profile": profile, "seed": seed, "notebooks": [asdict(r) for r in results]},
                   indent=2),
        encoding="utf-8",
    )
    return results


def _list(notebooks_dir: Path) -> int:
    present = {p.name[:2]: p.name for p in find_notebooks(notebooks_dir)}
    print(f"{'NN':<3} {'notebook':<28} section")
    for number, section in SECTIONS.items():
        print(f"{number:<3} {present.get(number, '(not yet written)'):<28} {section}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bestiary", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the notebooks and their lecture sections")
    p_list.add_argument("--notebooks", type=Path, default=None, help="notebooks folder")
    p_run = sub.add_parser("run", help="execute notebooks headless and summarise their results")
    p_run.add_argument("only", nargs="*", help="notebook numbers or names (default: all)")
    p_run.add_argument("--profile", default=os.environ.get(runtime.PROFILE_ENV, "ci"),
                       choices=runtime.PROFILES, help="budget profile (default: ci)")
    p_run.add_argument("--seed", type=int, default=int(os.environ.get(runtime.SEED_ENV, "0")))
    p_run.add_argument("--results", type=Path, default=Path("results"),
                       help="folder for executed notebooks and the summary (default: results)")
    p_run.add_argument("--notebooks", type=Path, default=None, help="notebooks folder")
    p_run.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    p_run.add_argument("--write-back", action="store_true",
                       help="store the outputs of passing notebooks in the notebooks themselves")
    args = parser.parse_args(argv)
    notebooks_dir = args.notebooks or default_notebooks_dir()
    if args.command == "list":
        return _list(notebooks_dir)
    try:
        paths = select_notebooks(find_notebooks(notebooks_dir), args.only)
    except ValueError as exc:
        parser.error(str(exc))
    if not paths:
        parser.error(f"no notebooks found in {notebooks_dir}")
    results = run(paths, profile=args.profile, seed=args.seed, results_dir=args.results,
                  timeout=args.timeout, write_back=args.write_back)
    print(summary_markdown(results, args.profile, args.seed))
    print(f"Executed notebooks and summary.md / summary.json are in {args.results / args.profile}")
    return 0 if all(r.status == "passed" for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
