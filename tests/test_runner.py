"""The ``bestiary`` runner executes notebooks headless and summarises what they report."""

import json
import os

import nbformat
import pytest

from bestiary_keras import runner, runner_execution


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_sections_cover_the_lecture_in_order():
    assert list(runner.SECTIONS) == [f"{i:02d}" for i in range(1, 18)]


def test_collection_notebooks_follow_the_naming_scheme():
    for path in runner.find_notebooks():
        assert path.name[:2] in runner.SECTIONS
        assert path.stem[2] == "_" and path.stem[3:].islower()


def test_select_notebooks(tmp_path):
    for name in ("01_vgg.ipynb", "02_resnet.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    paths = runner.find_notebooks(tmp_path)
    assert [p.name for p in paths] == ["01_vgg.ipynb", "02_resnet.ipynb"]
    assert [p.name for p in runner.select_notebooks(paths, ["2"])] == ["02_resnet.ipynb"]
    assert [p.name for p in runner.select_notebooks(paths, ["vgg"])] == ["01_vgg.ipynb"]
    with pytest.raises(ValueError, match="No notebook matches '07'.*01_vgg, 02_resnet"):
        runner.select_notebooks(paths, ["07"])


def test_run_collects_metrics_and_failures(tmp_path, capsys, monkeypatch):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(
        nbs / "01_good.ipynb",
        "import os\nfrom bestiary_keras import runtime",
        "assert os.environ['BESTIARY_PROFILE'] == 'ci' and os.environ['BESTIARY_SEED'] == '5'\n"
        "assert os.environ.get('MPLBACKEND') != 'Agg' and os.environ['BESTIARY_TEST_KEPT'] == 'yes'\n"
        "runtime.report('accuracy', 0.75, threshold=0.5, headline=True)\n"
        "runtime.report('loss', 0.2)",
    )
    _notebook(nbs / "02_bad.ipynb", "raise RuntimeError('this notebook stopped learning')")
    results_dir = tmp_path / "results"
    # The kernel gets this process's environment plus the run's variables, without
    # MPLBACKEND; this process's own environment is not touched.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("BESTIARY_TEST_KEPT", "yes")
    monkeypatch.delenv("BESTIARY_PROFILE", raising=False)
    before = dict(os.environ)
    code = runner.main(["run", "--profile", "ci", "--seed", "5", "--notebooks", str(nbs),
                        "--results", str(results_dir)])
    assert dict(os.environ) == before
    assert code == 1  # one notebook failed
    summary = json.loads((results_dir / "ci-seed5" / "summary.json").read_text())
    good, bad = summary["notebooks"]
    assert good["status"] == "passed" and bad["status"] == "failed"
    assert [m["name"] for m in good["metrics"]] == ["accuracy", "loss"]
    assert good["metrics"][0]["value"] == 0.75 and good["metrics"][0]["passed"] is True
    assert "this notebook stopped learning" in bad["error"]
    assert "\x1b" not in bad["error"]  # no terminal colour codes in the summary
    assert good["seconds"] > 0
    assert good["peak_memory_mb"] > 10  # the kernel process was sampled
    table = (results_dir / "ci-seed5" / "summary.md").read_text()
    assert "| 01_good.ipynb |" in table and "accuracy 0.75" in table
    assert "1 of 2 notebooks passed" in table
    executed = nbformat.read(results_dir / "ci-seed5" / "01_good.ipynb", as_version=4)
    assert "accuracy: 0.75" in executed.cells[1].outputs[0]["text"]


def test_list_shows_every_section(capsys):
    assert runner.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "01 " in out and "17 " in out and "LIFT" in out


# ----------------------------------------------------------------------------- robustness
def _run_cli(*args, env=None, cwd=None, timeout=120):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "bestiary_keras.runner", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_a_number_selects_exactly_that_notebook(tmp_path):
    for name in ("01_vgg", "05_faster_rcnn", "10_refinenet", "15_siamese", "17_lift"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    paths = runner.find_notebooks(tmp_path)
    assert [p.name for p in runner.select_notebooks(paths, ["1"])] == ["01_vgg.ipynb"]
    assert [p.name for p in runner.select_notebooks(paths, ["5"])] == ["05_faster_rcnn.ipynb"]
    assert [p.name for p in runner.select_notebooks(paths, ["15"])] == ["15_siamese.ipynb"]
    with pytest.raises(ValueError, match="No notebook matches '0'"):
        runner.select_notebooks(paths, ["0"])
    assert [p.name for p in runner.select_notebooks(paths, ["rcnn"])] == ["05_faster_rcnn.ipynb"]


@pytest.mark.parametrize("env, args, message", [
    ({"BESTIARY_SEED": "abc"}, ["list"], "BESTIARY_SEED='abc' is not an integer seed"),
    ({"BESTIARY_PROFILE": "bogus"}, ["run", "01"], "Unknown profile 'bogus'.*BESTIARY_PROFILE"),
    ({}, ["run", "--seed", "-1", "01"], "--seed='-1' is negative"),
])
def test_bad_settings_are_one_usage_line(env, args, message):
    import re

    done = _run_cli(*args, env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert re.search(message, done.stderr), done.stderr


def test_report_rejects_non_finite_values_and_thresholds():
    from bestiary_keras import runtime

    with pytest.raises(AssertionError, match="inf .*not a finite number"):
        runtime.report("mAP", float("inf"), threshold=0.5)
    with pytest.raises(ValueError, match="threshold=nan .*not a finite number"):
        runtime.report("mAP", 0.9, threshold=float("nan"))


def test_each_run_has_its_own_folder_and_reads_its_own_results(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "03_first.ipynb", "import os\nfrom bestiary_keras import runtime\n"
              "runtime.setup('ci', int(os.environ['BESTIARY_SEED']), verbose=False)\n"
              "runtime.report('mAP', 0.5 + int(os.environ['BESTIARY_SEED']) / 10)")
    _notebook(nbs / "07_reader.ipynb", "from bestiary_keras import runtime\n"
              "found = runtime.runner_metrics(['03'])\n"
              "runtime.report('seen', found['03']['metrics']['mAP'])")
    results = tmp_path / "elsewhere"
    for seed in (1, 2):
        assert runner.main(["run", "--seed", str(seed), "--notebooks", str(nbs),
                            "--results", str(results)]) == 0
    for seed in (1, 2):
        summary = json.loads((results / f"ci-seed{seed}" / "summary.json").read_text())
        assert summary["seed"] == seed
        reader = summary["notebooks"][1]
        # 07 read 03's number from this very run's folder, though --results is not results/
        assert reader["metrics"][0]["value"] == pytest.approx(0.5 + seed / 10)
    assert not list(results.glob("*/*.metrics.jsonl"))  # folded into summary.json


def test_a_busy_run_folder_is_not_shared(tmp_path):
    folder, lock = runner.prepare_run_dir(tmp_path, "ci", 0)
    try:
        other, other_lock = runner.prepare_run_dir(tmp_path, "ci", 0)
        other_lock.close()
    finally:
        lock.close()
    assert folder.name == "ci-seed0" and other.name.startswith("ci-seed0-") and other != folder


def test_unwritable_results_and_unreadable_notebooks(tmp_path):
    import os

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_broken.ipynb").write_text("{ this is not json")
    _notebook(nbs / "02_fine.ipynb", "x = 1")
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    done = _run_cli("run", "--notebooks", str(nbs), "--results", str(blocked / "sub"))
    assert done.returncode == 2 and "is not writable" in done.stderr
    assert "Traceback" not in done.stderr
    code = runner.main(["run", "--notebooks", str(nbs), "--results", str(tmp_path / "r")])
    assert code == 1
    rows = json.loads((tmp_path / "r" / "ci-seed0" / "summary.json").read_text())["notebooks"]
    assert rows[0]["status"] == "failed" and "cannot read the notebook" in rows[0]["error"]
    assert rows[1]["status"] == "passed"
    assert os.path.exists(tmp_path / "r" / "ci-seed0" / "02_fine.ipynb")


def test_write_back_only_into_the_collection(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_other.ipynb", "x = 1")
    done = _run_cli("run", "--notebooks", str(nbs), "--write-back")
    assert done.returncode == 2 and "--write-back stores outputs in the collection" in done.stderr
    # from another project's folder, the collection's own notebooks are listed, not ./notebooks
    listed = _run_cli("list", cwd=tmp_path)
    assert listed.returncode == 0 and "01_vgg.ipynb" in listed.stdout
    assert "01_other" not in listed.stdout


def test_memory_budget_is_marked_in_the_summary():
    heavy = runner_execution.NotebookResult("17_lift.ipynb", "LIFT", "passed", 10.0, 5000.0)
    light = runner_execution.NotebookResult("15_siamese.ipynb", "Siamese", "passed", 10.0, 900.0)
    table = runner.summary_markdown([heavy, light], "ci", 0, memory_limit_mb=3072)
    assert "5000 (over the 3072 MB budget)" in table and "| 900 |" in table
    assert "Over the memory budget of 3072 MB: 17_lift.ipynb." in table


def test_ctrl_c_stops_the_kernel_and_keeps_the_summary(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_quick.ipynb", "from bestiary_keras import runtime\n"
              "runtime.report('accuracy', 0.9, threshold=0.5, headline=True)")
    _notebook(nbs / "02_slow.ipynb", "import os, time\n"
              "open(os.environ['BESTIARY_RUN_DIR'] + '/kernel.pid', 'w').write(str(os.getpid()))\n"
              "time.sleep(120)")
    _notebook(nbs / "03_never.ipynb", "x = 1")
    folder = tmp_path / "r" / "ci-seed0"
    # an older run's summary must not survive
    folder.mkdir(parents=True)
    (folder / "summary.md").write_text("stale")
    proc = subprocess.Popen([sys.executable, "-m", "bestiary_keras.runner", "run", "--notebooks",
                             str(nbs), "--results", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while not (folder / "kernel.pid").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((folder / "summary.json").read_text())
    statuses = [(r["notebook"], r["status"]) for r in summary["notebooks"]]
    assert statuses == [("01_quick.ipynb", "passed"), ("02_slow.ipynb", "interrupted"),
                        ("03_never.ipynb", "interrupted")]
    assert summary["notebooks"][0]["metrics"][0]["value"] == 0.9
    assert "stale" not in (folder / "summary.md").read_text()
    assert not list(folder.glob("*.metrics.jsonl")) and not list(folder.glob(".*.tmp"))
    kernel = int((folder / "kernel.pid").read_text())
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(kernel, 0)  # the kernel is gone


def test_summary_names_the_slowest_cell(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_cells.ipynb", "x = 1", "import time\ntime.sleep(1.2)", "y = 2")
    results = runner.run(runner.find_notebooks(nbs), profile="ci", seed=0,
                         results_dir=tmp_path / "results")
    (result,) = results
    assert result.slowest_cell == 2 and 1.2 <= result.slowest_cell_seconds < 10
    summary = json.loads((results.folder / "summary.json").read_text())
    assert summary["notebooks"][0]["slowest_cell"] == 2
    assert "(cell 2) |" in (results.folder / "summary.md").read_text()


def test_slides_and_site_commands(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # neither names nor --all: a usage error
        runner.main(["slides"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        runner.main(["slides", "99"])
    assert runner.main(["slides", "03", "--out", str(tmp_path / "decks")]) == 0
    decks = sorted(p.name for p in (tmp_path / "decks").glob("*.html"))
    assert decks == ["03_rcnn.slides.html"]
    assert (tmp_path / "decks" / "_static").is_dir()
    assert "1 deck(s)" in capsys.readouterr().out


def test_bench_command_hands_its_options_to_bench(monkeypatch):
    from bestiary_keras import bench

    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(argv) or 0)
    assert runner.main(["bench", "--steps", "3", "--in-process"]) == 0
    assert seen == [["--steps", "3", "--in-process"]]


def test_kernel_start_prints_no_log_lines(tmp_path, capfd):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(nbs / "01_quiet.ipynb", "print('from the notebook')")
    runner.run(runner.find_notebooks(nbs), profile="ci", seed=0, results_dir=tmp_path / "results")
    err = capfd.readouterr().err
    # ipykernel 7's "Kernel is running over TCP without encryption" warning, one per notebook
    assert "IPKernelApp" not in err and "encryption" not in err, err[-500:]
