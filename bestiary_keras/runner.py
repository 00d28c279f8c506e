"""``bestiary``: run the collection's notebooks headless and collect their measured results.

    bestiary list                          # the notebooks and their lecture sections
    bestiary run --profile ci              # execute every notebook, write results/ci-seed0/summary.md
    bestiary run --profile default 01 02   # only some notebooks (by number or name)
    bestiary run --profile ci --write-back # also store the outputs in notebooks/ (for commits)
    bestiary slides 01 | --all             # offline reveal.js decks of the stored runs
    bestiary site                          # static site: gallery + every notebook, offline
    bestiary bench                         # our VGG-16 / ResNet-50 against keras.applications

Each notebook is executed top to bottom with nbclient in a fresh kernel
(``runner_execution.run_notebook``) whose environment carries ``BESTIARY_PROFILE``,
``BESTIARY_SEED``, ``BESTIARY_REPORT`` (a JSON-lines file that ``bestiary_keras.runtime.report``
appends to) and ``BESTIARY_RUN_DIR``. Each run writes into its
own folder, ``results/<profile>-seed<seed>/`` (locked while it runs; a second run of the same
profile and seed at once gets ``...-<pid>``): the executed notebooks, ``summary.md`` and
``summary.json`` (notebook, seconds, peak memory, headline metrics, pass/fail), rewritten
atomically after every notebook. Ctrl-C shuts the kernel down, marks the notebooks that did not
finish ``interrupted`` and exits 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bestiary_keras import runtime
from bestiary_keras.runner_execution import Interruption, NotebookResult, run_notebook

__all__ = [
    "check_writable", "DEFAULT_MEMORY_LIMIT_MB", "default_notebooks_dir", "find_notebooks", "main",
    "prepare_run_dir", "repository_root", "run", "RunResults", "SECTIONS", "select_notebooks",
    "summary_markdown", "write_summary",
]

DEFAULT_MEMORY_LIMIT_MB = 3072.0
"""A notebook whose peak memory passes this is marked in the summary (a student's laptop)."""

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
    return runtime.repository_root()


def default_notebooks_dir() -> Path:
    """The collection's own ``notebooks/`` folder, next to this package, from any directory."""
    return repository_root() / "notebooks"


def find_notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    """The collection's notebooks ``NN_name.ipynb``, in lecture order."""
    notebooks_dir = Path(notebooks_dir or default_notebooks_dir())
    paths = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if p.name[:2] in SECTIONS]


def select_notebooks(paths: list[Path], wanted: list[str]) -> list[Path]:
    """Filters ``paths``: a number (``1``, ``01``) selects exactly that notebook; a name
    selects the notebooks whose stem contains it (``vgg``, ``rcnn``)."""
    if not wanted:
        return paths
    chosen = []
    for key in wanted:
        key = key.strip()
        if key.isdigit():
            matches = [p for p in paths if p.name[:2] == key.zfill(2)]
        else:
            matches = [p for p in paths if key.lower() in p.stem.lower()]
        if not matches:
            names = ", ".join(p.stem for p in paths) or "none"
            raise ValueError(f"No notebook matches {key!r}; available: {names}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def _write_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder (never half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary_markdown(results: list[NotebookResult], profile: str, seed: int, *,
                     memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB) -> str:
    lines = [
        f"# bestiary run: profile `{profile}`, seed {seed}",
        "",
        "| notebook | section | seconds | slowest cell (s) | peak memory (MB) | headline metric "
        "| result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        mem = "" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        if r.over_memory_budget(memory_limit_mb):
            mem += f" (over the {memory_limit_mb:.0f} MB budget)"
        slowest = ("" if r.slowest_cell_seconds is None
                   else f"{r.slowest_cell_seconds:.1f} (cell {r.slowest_cell})")
        status = r.status if not r.error else f"{r.status}: {r.error}"
        lines.append(f"| {r.notebook} | {r.section} | {r.seconds:.1f} | {slowest} | {mem} "
                     f"| {r.headline()} | {status} |")
    total = sum(r.seconds for r in results)
    passed = sum(r.status == "passed" for r in results)
    lines += ["", f"{passed} of {len(results)} notebooks passed in {total:.0f} s."]
    interrupted = sum(r.status == "interrupted" for r in results)
    if interrupted:
        lines.append(f"The run was interrupted: {interrupted} notebook(s) did not finish.")
    over = [r.notebook for r in results if r.over_memory_budget(memory_limit_mb)]
    if over:
        lines.append(f"Over the memory budget of {memory_limit_mb:.0f} MB: {', '.join(over)}.")
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, results: list[NotebookResult], profile: str, seed: int, *,
                  memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB) -> None:
    """Writes ``summary.md`` and ``summary.json`` of one run, each atomically."""
    _write_atomically(out_dir / "summary.md",
                      summary_markdown(results, profile, seed, memory_limit_mb=memory_limit_mb))
    notebooks = [asdict(r) | {"over_memory_budget": r.over_memory_budget(memory_limit_mb)}
                 for r in results]
    _write_atomically(out_dir / "summary.json", json.dumps(
        {"profile": profile, "seed": seed, "memory_limit_mb": memory_limit_mb,
         "notebooks": notebooks}, indent=2, allow_nan=False))


def check_writable(folder: Path) -> None:
    """Creates ``folder`` if needed and proves it is writable, before any kernel starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"The results folder {folder} is not writable ({exc.strerror}): "
                         "choose another with --results DIR.") from None


def _lock_run_dir(folder: Path):
    """Takes the run folder's lock; returns the open lock file, or None if another run has it."""
    import fcntl

    handle = open(folder / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def prepare_run_dir(results_dir: Path, profile: str, seed: int) -> tuple[Path, object]:
    """The run's own folder ``<results>/<profile>-seed<seed>``, locked for this run.

    When another run holds it (the same profile and seed at once), this run gets
    ``<profile>-seed<seed>-<pid>`` instead, so that no summary ever mixes two runs.
    """
    check_writable(Path(results_dir))
    name = runtime.run_dir_name(profile, seed)
    for candidate in (name, f"{name}-{os.getpid()}"):
        folder = Path(results_dir) / candidate
        check_writable(folder)
        lock = _lock_run_dir(folder)
        if lock is not None:
            for stale in folder.glob("*.metrics.jsonl"):  # left by an older, killed run
                stale.unlink(missing_ok=True)
            return folder, lock
    raise ValueError(f"Two other runs hold {results_dir / name}: wait, or use --results DIR.")


class RunResults(list):
    """The ``NotebookResult`` of each notebook, in order; ``folder`` is where the run wrote."""

    folder: Path


def run(paths: list[Path], *, profile: str, seed: int, results_dir: Path, timeout: int = 1800,
        write_back: bool = False, memory_limit_mb: float | None = DEFAULT_MEMORY_LIMIT_MB
        ) -> RunResults:
    """Executes ``paths`` in order in the run's own folder ``<results_dir>/<profile>-seed<seed>``.

    The summary is rewritten (atomically) before the first notebook and after every one, so
    an interrupted run still lists what finished and marks the rest ``interrupted``.
    """
    from tqdm.auto import tqdm

    runtime.check_profile(profile)
    seed = runtime.check_seed(seed)
    out_dir, lock = prepare_run_dir(Path(results_dir), profile, seed)
    results = RunResults(NotebookResult(notebook=p.name, section=SECTIONS.get(p.name[:2], ""),
                                        status="pending") for p in paths)
    results.folder = out_dir
    try:
        write_summary(out_dir, results, profile, seed, memory_limit_mb=memory_limit_mb)
        with Interruption() as interruption, tqdm(total=len(paths), desc=f"bestiary ({profile})",
                                                   unit="notebook", file=sys.stdout) as bar:
            for i, path in enumerate(paths):
                if interruption.requested:
                    results[i].status = "interrupted"
                    results[i].error = "not started"
                    continue
                bar.set_postfix_str(path.stem)
                result = run_notebook(path, out_dir, profile=profile, seed=seed,
                                      section=SECTIONS.get(path.name[:2], ""), timeout=timeout,
                                      progress=bar, write_back=write_back,
                                      interruption=interruption)
                results[i] = result
                bar.update(1)
                bar.write(f"{result.status:>6}  {path.name}  {result.seconds:.1f} s  "
                          f"{result.headline()}" + (f"  ({result.error})" if result.error else ""))
                write_summary(out_dir, results, profile, seed, memory_limit_mb=memory_limit_mb)
        write_summary(out_dir, results, profile, seed, memory_limit_mb=memory_limit_mb)
    finally:
        lock.close()
    return results


def _list(notebooks_dir: Path) -> int:
    present = {p.name[:2]: p.name for p in find_notebooks(notebooks_dir)}
    print(f"{'NN':<3} {'notebook':<28} section")
    for number, section in SECTIONS.items():
        print(f"{number:<3} {present.get(number, '(not yet written)'):<28} {section}")
    return 0


def _seed_argument(text: str) -> int:
    try:
        return runtime.check_seed(text, "--seed")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _publish(args, parser, notebooks_dir: Path) -> int:
    """``bestiary slides`` and ``bestiary site``: from the notebooks' stored outputs."""
    if args.command == "slides":
        if bool(args.all) == bool(args.only):
            parser.error("name the notebooks (e.g. `bestiary slides 01 02`) or give --all")
        from bestiary_keras.publish.slides import write_slides

        try:
            paths = select_notebooks(find_notebooks(notebooks_dir), [] if args.all else args.only)
        except ValueError as exc:
            parser.error(str(exc))
        decks = write_slides(paths, args.out or repository_root() / "results" / "slides")
        for deck in decks:
            print(deck)
        print(f"{len(decks)} deck(s); open one in a browser (no network needed).")
        return 0
    from bestiary_keras.publish.site import write_site

    index = write_site(find_notebooks(notebooks_dir), args.out or repository_root() / "results" / "site",
                       readme=repository_root() / "README.md")
    print(f"The site is at {index}: open it in a browser (no network needed).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bestiary", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the notebooks and their lecture sections")
    p_list.add_argument("--notebooks", type=Path, default=None, help="notebooks folder")
    p_run = sub.add_parser("run", help="execute notebooks headless and summarise their results")
    p_run.add_argument("only", nargs="*",
                       help="notebook numbers (exactly that notebook) or names (default: all)")
    p_run.add_argument("--profile", default=None, choices=runtime.PROFILES,
                       help=f"budget profile (default: ${runtime.PROFILE_ENV}, else ci)")
    p_run.add_argument("--seed", type=_seed_argument, default=None,
                       help=f"seed, a whole number >= 0 (default: ${runtime.SEED_ENV}, else 0)")
    p_run.add_argument("--results", type=Path, default=None,
                       help="folder for the runs' folders (default: results/ in the checkout)")
    p_run.add_argument("--notebooks", type=Path, default=None,
                       help="notebooks folder (default: the collection's own)")
    p_run.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    p_run.add_argument("--memory-limit-mb", type=float, default=DEFAULT_MEMORY_LIMIT_MB,
                       help="peak memory above which a notebook is marked over budget "
                            f"(default: {DEFAULT_MEMORY_LIMIT_MB:.0f})")
    p_run.add_argument("--write-back", action="store_true",
                       help="store the outputs of passing notebooks in the collection's notebooks")
    # The other subcommands call the module doing the work, imported in their branch below so
    # that ``bestiary list`` stays fast.
    p_slides = sub.add_parser("slides", help="write offline reveal.js decks of the stored runs")
    p_slides.add_argument("only", nargs="*", help="notebook numbers or names")
    p_slides.add_argument("--all", action="store_true", help="every notebook")
    p_slides.add_argument("--out", type=Path, default=None,
                          help="folder for the decks (default: results/slides)")
    p_site = sub.add_parser("site", help="write the static site (gallery and every notebook)")
    p_site.add_argument("--out", type=Path, default=None,
                        help="folder for the site (default: results/site)")
    sub.add_parser("bench", add_help=False,
                   help="training throughput of our VGG-16 / ResNet-50 against keras.applications "
                        "(bestiary bench --help for its options)")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its options are its own (bestiary_keras.bench)
        from bestiary_keras import bench

        return bench.main(argv[1:])
    args = parser.parse_args(argv)
    # the environment is read once, here: a bad value is one usage line, not a traceback
    try:
        if args.command != "run" or args.profile is None:
            env_profile = runtime.profile_from_env("ci")
        if args.command != "run" or args.seed is None:
            env_seed = runtime.seed_from_env()
    except ValueError as exc:
        parser.error(str(exc))
    notebooks_dir = getattr(args, "notebooks", None) or default_notebooks_dir()
    if args.command == "list":
        return _list(notebooks_dir)
    if args.command in ("slides", "site"):
        return _publish(args, parser, notebooks_dir)
    profile = args.profile or env_profile
    seed = env_seed if args.seed is None else args.seed
    if args.write_back and Path(notebooks_dir).resolve() != default_notebooks_dir().resolve():
        parser.error(f"--write-back stores outputs in the collection's own notebooks "
                     f"({default_notebooks_dir()}), not in {notebooks_dir}.")
    if not Path(notebooks_dir).is_dir():
        parser.error(f"no notebooks folder at {notebooks_dir}: run from a checkout of "
                     "bestiary-keras or give --notebooks DIR.")
    try:
        paths = select_notebooks(find_notebooks(notebooks_dir), args.only)
    except ValueError as exc:
        parser.error(str(exc))
    if not paths:
        parser.error(f"no notebooks found in {notebooks_dir}")
    results_dir = args.results or repository_root() / "results"
    try:
        results = run(paths, profile=profile, seed=seed, results_dir=results_dir,
                      timeout=args.timeout, write_back=args.write_back,
                      memory_limit_mb=args.memory_limit_mb)
    except ValueError as exc:  # an unwritable results folder, found before any kernel started
        parser.error(str(exc))
    print(summary_markdown(results, profile, seed, memory_limit_mb=args.memory_limit_mb))
    print(f"Executed notebooks and summary.md / summary.json are in {results.folder}")
    if any(r.status == "interrupted" for r in results):
        return 130
    return 0 if all(r.status == "passed" for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
