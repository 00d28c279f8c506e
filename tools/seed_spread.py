"""Run notebooks over several seeds and tabulate the spread of every asserted metric.

    python tools/seed_spread.py --profile ci --seeds 0-5 08 10      # run, then tabulate
    python tools/seed_spread.py --profile ci --seeds 0-5 --no-run    # tabulate earlier runs only

Each seed is one ``bestiary run --profile P --seed S --results DIR`` (so every seed's executed
notebooks and ``summary.json`` stay in ``DIR/<profile>-seed<S>/``). The table has, per notebook
and metric, the minimum, median and maximum over the seeds, the threshold the notebook asserts,
and the margin between the worst seed and that threshold, in the metric's units and as a
fraction of the spread (max - min): a margin smaller than the spread is a threshold that a new
seed can plausibly cross. It is written to ``DIR/spread-<profile>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["parse_seeds", "collect", "spread_table", "suggested_threshold", "spread_markdown",
           "main"]

#: The rule every asserted ``ci`` threshold follows: below the worst seed by the larger of
#: ``SPREAD_FRACTION`` of the spread (max - min over the seeds) and ``RELATIVE_FLOOR`` of the
#: worst value itself (so a metric that did not move at all still gets a margin).
SPREAD_FRACTION = 0.5
RELATIVE_FLOOR = 0.05


def parse_seeds(text: str) -> list[int]:
    """``"0-5"`` -> ``[0, 1, 2, 3, 4, 5]``; ``"0,3,7"`` -> ``[0, 3, 7]``; both may be mixed."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = (int(v) for v in part.split("-", 1))
            if high < low:
                raise ValueError(f"seed range {part!r} runs backwards; write it as {high}-{low}")
            seeds.extend(range(low, high + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}; write e.g. 0-5 or 0,1,7")
    return sorted(set(seeds))


def collect(results_dir: Path, profile: str, seeds: list[int]) -> list[dict]:
    """One row per (notebook, metric, seed) from ``results_dir/<profile>-seed<S>/summary.json``.

    Run folders the runner suffixed with ``-<pid>`` (a second run of the same seed) are read
    too, and runs of different notebooks combine; for a notebook run twice, the newest wins. A notebook that failed contributes its status and
    time but no metrics beyond those it reported before failing.
    """
    rows = []
    for seed in seeds:
        candidates = sorted(results_dir.glob(f"{profile}-seed{seed}*/summary.json"),
                            key=lambda p: p.stat().st_mtime)
        candidates = [p for p in candidates
                      if p.parent.name == f"{profile}-seed{seed}"
                      or p.parent.name.startswith(f"{profile}-seed{seed}-")]
        latest: dict[str, dict] = {}  # notebook -> its newest entry over this seed's runs
        for path in candidates:
            for nb in json.loads(path.read_text())["notebooks"]:
                latest[nb["notebook"]] = nb
        for nb in latest.values():
            base = {"notebook": nb["notebook"], "seed": seed, "status": nb["status"],
                    "seconds": nb.get("seconds"), "peak_memory_mb": nb.get("peak_memory_mb")}
            rows.append({**base, "metric": None})
            for m in nb.get("metrics", []):
                rows.append({**base, "metric": m["name"], "value": m["value"],
                             "threshold": m.get("threshold"),
                             "higher_is_better": m.get("higher_is_better", True)})
    return rows


def spread_table(rows: list[dict]) -> list[dict]:
    """Per (notebook, metric) with a threshold: n, min, median, max, worst, margin."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["metric"] is None or row.get("threshold") is None:
            continue
        groups.setdefault((row["notebook"], row["metric"]), []).append(row)
    table = []
    for (notebook, metric), items in sorted(groups.items()):
        values = [r["value"] for r in items]
        higher = items[0]["higher_is_better"]
        thresholds = sorted({r["threshold"] for r in items})
        threshold = thresholds[-1] if higher else thresholds[0]
        worst = min(values) if higher else max(values)
        margin = (worst - threshold) if higher else (threshold - worst)
        spread = max(values) - min(values)
        seconds = [r["seconds"] for r in rows
                   if r["notebook"] == notebook and r["metric"] is None and r["seconds"]]
        table.append({
            "notebook": notebook, "metric": metric, "n": len(values),
            "seeds": sorted(r["seed"] for r in items),
            "min": min(values), "median": statistics.median(values), "max": max(values),
            "higher_is_better": higher, "threshold": threshold,
            "thresholds_differ": len(thresholds) > 1,
            "worst": worst, "margin": margin,
            "margin_over_spread": (margin / spread) if spread > 0 else None,
            "failures": sum(1 for v in values if (v < threshold if higher else v > threshold)),
            "median_seconds": statistics.median(seconds) if seconds else None,
        })
    return table


def suggested_threshold(row: dict, fraction: float = SPREAD_FRACTION,
                        relative_floor: float = RELATIVE_FLOOR) -> float:
    """The threshold the rule gives for one row of :func:`spread_table`.

    Higher-is-better: ``worst - max(fraction * (max - min), relative_floor * |worst|)``, rounded
    down to two significant digits; lower-is-better: the same margin added, rounded up. The result
    is never on the wrong side of the worst seed.
    """
    spread = row["max"] - row["min"]
    worst = row["worst"]
    margin = max(fraction * spread, relative_floor * abs(worst))
    value = worst - margin if row["higher_is_better"] else worst + margin
    if value == 0:
        return 0.0
    digits = 1 - math.floor(math.log10(abs(value)))
    scale = 10.0 ** digits
    # the 1e-9 keeps float noise (0.6 - 0.04 = 0.5599999...) from costing a whole digit
    rounded = (math.floor(value * scale + 1e-9) if row["higher_is_better"]
               else math.ceil(value * scale - 1e-9)) / scale
    return round(rounded, max(digits, 0))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def spread_markdown(table: list[dict], profile: str) -> str:
    lines = [
        f"# Spread over seeds, `{profile}` profile",
        "",
        "| notebook | metric | seeds | min | median | max | threshold | worst - threshold "
        "| margin / spread | failed seeds | rule's threshold | median s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        direction = ">=" if row["higher_is_better"] else "<="
        lines.append(
            f"| {row['notebook'].removesuffix('.ipynb')} | {row['metric'].replace('|', chr(92) + '|')} "
            f"| {row['n']} "
            f"| {_fmt(row['min'])} | {_fmt(row['median'])} | {_fmt(row['max'])} "
            f"| {direction} {_fmt(row['threshold'])} | {_fmt(row['margin'])} "
            f"| {_fmt(row['margin_over_spread'])} | {row['failures']} "
            f"| {direction} {_fmt(suggested_threshold(row))} "
            f"| {_fmt(row['median_seconds'])} |")
    lines.append("")
    lines.append("`threshold` is the value the notebook asserted when these seeds ran. A margin "
                 "smaller than the spread (margin / spread below 1) is a threshold that "
                 "an untried seed may cross; a negative margin is a seed that failed. The rule's "
                 f"threshold is the worst seed minus the larger of {SPREAD_FRACTION:.0%} of the "
                 f"spread and {RELATIVE_FLOOR:.0%} of the worst value (rounded to two "
                 "significant digits, towards passing less); `median s` is the notebook's median "
                 "wall time over the seeds' runs, which may have shared the machine.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers or names (default: all)")
    parser.add_argument("--profile", default="ci", choices=("ci", "default", "full"))
    parser.add_argument("--seeds", default="0-5", type=parse_seeds)
    parser.add_argument("--results", type=Path, default=Path("results/spread"))
    parser.add_argument("--no-run", action="store_true", help="only tabulate earlier runs")
    parser.add_argument("--publish", type=Path, default=None,
                        help="also write the table and the per-seed rows it was made from to this "
                             "folder (e.g. docs/spread, committed), so a later session can add seeds")
    parser.add_argument("--rows", type=Path, action="append", default=[],
                        help="rows published earlier (runs-<profile>.json) to combine with the runs "
                             "found under --results; a run found there wins over a published row")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.no_run:
        for seed in args.seeds:
            command = ["bestiary", "run", *args.only, "--profile", args.profile,
                       "--seed", str(seed), "--results", str(args.results)]
            print("$", " ".join(command), flush=True)
            subprocess.run(command, check=False)
    rows = collect(args.results, args.profile, args.seeds)
    found = {(r["notebook"], r["seed"]) for r in rows}
    for path in args.rows:
        rows += [r for r in json.loads(path.read_text())
                 if r["seed"] in args.seeds and (r["notebook"], r["seed"]) not in found]
    table = spread_table(rows)
    text = spread_markdown(table, args.profile)
    (args.results / f"spread-{args.profile}.md").write_text(text)
    (args.results / f"spread-{args.profile}.json").write_text(json.dumps(table, indent=1))
    if args.publish is not None:
        args.publish.mkdir(parents=True, exist_ok=True)
        (args.publish / f"spread-{args.profile}.md").write_text(text)
        (args.publish / f"runs-{args.profile}.json").write_text(json.dumps(rows, indent=0))
    print(text)
    return 1 if any(row["failures"] for row in table) else 0


if __name__ == "__main__":
    sys.exit(main())
