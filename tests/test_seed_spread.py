"""tools/seed_spread.py: seeds parsed, summaries of several runs combined, spread and margin."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "tools" / "seed_spread.py"
_spec = importlib.util.spec_from_file_location("seed_spread", _PATH)
seed_spread = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_spread)


def test_parse_seeds():
    assert seed_spread.parse_seeds("0-5") == [0, 1, 2, 3, 4, 5]
    assert seed_spread.parse_seeds("3,0-1,3") == [0, 1, 3]
    with pytest.raises(ValueError, match="backwards"):
        seed_spread.parse_seeds("5-2")
    with pytest.raises(ValueError, match="no seeds"):
        seed_spread.parse_seeds(",")


def _summary(folder: Path, entries, mtime):
    folder.mkdir(parents=True)
    path = folder / "summary.json"
    path.write_text(json.dumps({"profile": "ci", "notebooks": entries}))
    os.utime(path, (mtime, mtime))


def _entry(name, seconds, metrics):
    return {"notebook": name, "status": "passed", "seconds": seconds, "peak_memory_mb": 1000.0,
            "metrics": [{"name": m, "value": v, "threshold": t, "higher_is_better": h}
                        for m, v, t, h in metrics]}


def test_spread_combines_runs_and_computes_margins(tmp_path):
    # seed 0: one run with both notebooks; seed 1: 08 in one run, 10 re-run later in a -pid folder
    _summary(tmp_path / "ci-seed0", [
        _entry("08_unet.ipynb", 50, [("IoU", 0.95, 0.93, True), ("Rand", 0.03, 0.08, False)]),
        _entry("10_refinenet.ipynb", 80, [("mIoU", 0.40, 0.30, True)])], 1000)
    _summary(tmp_path / "ci-seed1", [
        _entry("08_unet.ipynb", 60, [("IoU", 0.94, 0.93, True), ("Rand", 0.07, 0.08, False)]),
        _entry("10_refinenet.ipynb", 70, [("mIoU", 0.10, 0.30, True)])], 1000)
    _summary(tmp_path / "ci-seed1-123", [
        _entry("10_refinenet.ipynb", 90, [("mIoU", 0.36, 0.30, True)])], 2000)
    # a folder of another profile and a seed not asked for are ignored
    _summary(tmp_path / "default-seed0", [_entry("08_unet.ipynb", 1, [("IoU", 0.0, 0.9, True)])], 1)
    _summary(tmp_path / "ci-seed7", [_entry("08_unet.ipynb", 1, [("IoU", 0.0, 0.9, True)])], 1)

    table = {(r["notebook"], r["metric"]): r
             for r in seed_spread.spread_table(seed_spread.collect(tmp_path, "ci", [0, 1]))}
    iou = table[("08_unet.ipynb", "IoU")]
    assert (iou["n"], iou["min"], iou["max"], iou["worst"]) == (2, 0.94, 0.95, 0.94)
    assert iou["margin"] == pytest.approx(0.01)
    assert iou["margin_over_spread"] == pytest.approx(1.0)
    rand = table[("08_unet.ipynb", "Rand")]  # lower is better: worst is the largest
    assert rand["worst"] == 0.07 and rand["margin"] == pytest.approx(0.01)
    assert rand["failures"] == 0
    miou = table[("10_refinenet.ipynb", "mIoU")]  # the newer run of seed 1 replaced 0.10
    assert sorted([miou["min"], miou["max"]]) == [0.36, 0.40]
    assert miou["median_seconds"] == pytest.approx(85)
    text = seed_spread.spread_markdown(list(table.values()), "ci")
    assert "| 08_unet | Rand | 2 | 0.03 | 0.05 | 0.07 | <= 0.08 |" in text


def test_failed_seed_is_counted(tmp_path):
    _summary(tmp_path / "ci-seed0", [_entry("03_rcnn.ipynb", 40, [("mAP", 0.45, 0.5, True)])], 1)
    _summary(tmp_path / "ci-seed1", [_entry("03_rcnn.ipynb", 40, [("mAP", 0.65, 0.5, True)])], 1)
    (row,) = seed_spread.spread_table(seed_spread.collect(tmp_path, "ci", [0, 1]))
    assert row["failures"] == 1 and row["margin"] == pytest.approx(-0.05)
    assert seed_spread.main(["--no-run", "--results", str(tmp_path), "--seeds", "0-1"]) == 1
    assert (tmp_path / "spread-ci.md").exists()


def test_suggested_threshold_follows_the_stated_rule():
    # higher is better: worst 0.60, spread 0.20 -> margin max(0.10, 0.03) = 0.10 -> 0.50
    row = {"min": 0.60, "max": 0.80, "worst": 0.60, "higher_is_better": True}
    assert seed_spread.suggested_threshold(row) == pytest.approx(0.50)
    # a narrow spread: worst 0.60, spread 0.02 -> margin max(0.01, 0.03) = 0.03 -> 0.57
    row = {"min": 0.60, "max": 0.62, "worst": 0.60, "higher_is_better": True}
    assert seed_spread.suggested_threshold(row) == pytest.approx(0.57)
    # a metric that never moved still gets 5% of its value: 1.0 -> 0.95
    row = {"min": 1.0, "max": 1.0, "worst": 1.0, "higher_is_better": True}
    assert seed_spread.suggested_threshold(row) == pytest.approx(0.95)
    # lower is better: worst 0.08, spread 0.05 -> margin 0.025 -> 0.105 -> 0.11 (rounded up)
    row = {"min": 0.03, "max": 0.08, "worst": 0.08, "higher_is_better": False}
    assert seed_spread.suggested_threshold(row) == pytest.approx(0.11)
    # rounding goes towards passing less: 0.6139 -> 0.61, never 0.62
    row = {"min": 0.6462, "max": 0.6462, "worst": 0.6462, "higher_is_better": True}
    assert seed_spread.suggested_threshold(row) == pytest.approx(0.61)
    for row in ({"min": 0.1, "max": 0.9, "worst": 0.1, "higher_is_better": True},
                {"min": 0.01, "max": 0.5, "worst": 0.5, "higher_is_better": False}):
        threshold = seed_spread.suggested_threshold(row)
        assert (threshold < row["worst"]) if row["higher_is_better"] else (threshold > row["worst"])


def test_published_rows_combine_with_new_runs(tmp_path):
    # a later session re-tabulates from the committed rows plus its own new seeds
    entry = lambda value: [{"notebook": "08_unet.ipynb", "status": "passed", "seconds": 50,
                            "metrics": [{"name": "IoU", "value": value, "threshold": 0.5,
                                         "higher_is_better": True}]}]
    _summary(tmp_path / "old" / "ci-seed0", entry(0.9), 1000)
    published = tmp_path / "pub"
    assert seed_spread.main(["--no-run", "--seeds", "0", "--results", str(tmp_path / "old"),
                             "--publish", str(published)]) == 0
    _summary(tmp_path / "new" / "ci-seed1", entry(0.7), 2000)
    seed_spread.main(["--no-run", "--seeds", "0-1", "--results", str(tmp_path / "new"),
                      "--rows", str(published / "runs-ci.json"), "--publish", str(published)])
    table = json.loads((tmp_path / "new" / "spread-ci.json").read_text())
    assert [(r["n"], r["min"], r["max"]) for r in table] == [(2, 0.7, 0.9)]
    assert "| 08_unet | IoU | 2 |" in (published / "spread-ci.md").read_text()


def test_a_bar_in_a_metric_name_does_not_break_the_table():
    row = {"notebook": "08_unet.ipynb", "metric": "max |tiled - whole| probability", "n": 2,
           "min": 1e-6, "median": 1.5e-6, "max": 2e-6, "higher_is_better": False,
           "threshold": 1e-4, "margin": 9.8e-5, "margin_over_spread": 98.0, "failures": 0,
           "worst": 2e-6, "median_seconds": 50.0}
    line = next(l for l in seed_spread.spread_markdown([row], "ci").splitlines() if "08_unet" in l)
    assert line.replace("\\|", "").count("|") == 13  # 12 columns
