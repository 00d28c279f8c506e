import json

import numpy as np
import pytest

from bestiary_keras import runtime


def test_pick_by_profile():
    assert runtime.pick("ci", ci=1, default=2, full=3) == 1
    assert runtime.pick("default", ci=1, default=2, full=3) == 2
    assert runtime.pick("full", ci=1, default=2, full=3) == 3
    assert runtime.pick("full", ci=1, default=2) == 2  # full falls back to default


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError, match="'fast'.*ci, default, full.*BESTIARY_PROFILE"):
        runtime.pick("fast", ci=1, default=2)


def test_profile_and_seed_from_env(monkeypatch):
    monkeypatch.setenv("BESTIARY_PROFILE", " CI ")
    monkeypatch.setenv("BESTIARY_SEED", "7")
    assert runtime.profile_from_env() == "ci"
    assert runtime.seed_from_env() == 7
    monkeypatch.setenv("BESTIARY_SEED", "seven")
    with pytest.raises(ValueError, match="BESTIARY_SEED='seven'"):
        runtime.seed_from_env()


def test_setup_seeds_numpy_and_keras(capsys):
    import keras

    runtime.setup("ci", 3)
    a = (np.random.rand(3), keras.random.uniform((3,)).numpy())
    runtime.setup("ci", 3)
    b = (np.random.rand(3), keras.random.uniform((3,)).numpy())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    # the same states as seeding random, NumPy and Keras one by one (the code it replaced)
    import random

    runtime.seed_everything(3)
    after = (random.random(), np.random.rand(3), keras.random.uniform((3,)).numpy())
    random.seed(3)
    np.random.seed(3)
    keras.utils.set_random_seed(3)
    by_hand = (random.random(), np.random.rand(3), keras.random.uniform((3,)).numpy())
    assert after[0] == by_hand[0]
    np.testing.assert_array_equal(after[1], by_hand[1])
    np.testing.assert_array_equal(after[2], by_hand[2])
    np.testing.assert_array_equal(after[1], a[0])
    out = capsys.readouterr().out
    assert "Profile: ci | seed: 3" in out
    assert "TensorFlow 2." in out
    assert "no GPU found" in out or "Devices: /physical_device:GPU" in out


def test_report_checks_threshold_and_writes_jsonl(tmp_path, monkeypatch, capsys):
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("BESTIARY_REPORT", str(path))
    assert runtime.report("accuracy", 0.9, threshold=0.8, headline=True) == 0.9
    assert runtime.report("error", 0.1, threshold=0.2, higher_is_better=False) == 0.1
    with pytest.raises(AssertionError, match="accuracy = 0.5 does not reach the required >= 0.8"):
        runtime.report("accuracy", 0.5, threshold=0.8)
    with pytest.raises(AssertionError, match="error = 0.3 does not reach the required <= 0.2"):
        runtime.report("error", 0.3, threshold=0.2, higher_is_better=False)
    with pytest.raises(AssertionError, match="NaN"):
        runtime.report("loss", float("nan"))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in records] == ["accuracy", "error", "accuracy", "error"]
    assert [r["passed"] for r in records] == [True, True, False, False]
    assert records[0]["headline"] is True
    assert "(required >= 0.8: ok)" in capsys.readouterr().out


def test_runner_metrics_reads_the_run_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ci-seed3"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"profile": "ci", "seed": 3, "notebooks": [
        {"notebook": "03_rcnn.ipynb", "status": "passed",
         "metrics": [{"name": "mAP@0.5", "value": 0.5}, {"name": "ms per image", "value": 90}]},
        {"notebook": "04_fast_rcnn.ipynb", "status": "failed", "metrics": []},
        {"notebook": "05_faster_rcnn.ipynb", "status": "pending", "metrics": []},
    ]}))
    found = runtime.runner_metrics(("03", "04", "05"), run_dir=folder)
    assert set(found) == {"03"} and found["03"]["seed"] == 3
    assert found["03"]["metrics"] == {"mAP@0.5": 0.5, "ms per image": 90}
    # inside a run, the runner names the folder (bestiary run --results DIR is honoured)
    monkeypatch.setenv("BESTIARY_RUN_DIR", str(folder))
    assert set(runtime.runner_metrics(["03"])) == {"03"}
    monkeypatch.setenv("BESTIARY_RUN_DIR", str(tmp_path / "missing"))
    assert runtime.runner_metrics(["03"]) == {}


def test_setup_stores_no_tensorflow_log_lines():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from bestiary_keras import runtime\n"
                           "runtime.setup('ci', 0)\nimport sys\nprint('still here', file=sys.stderr)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Profile: ci | seed: 0" in done.stdout
    assert "absl::InitializeLog" not in done.stderr and "oneDNN" not in done.stderr
    assert "still here" in done.stderr  # stderr works again after the import
