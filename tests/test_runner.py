"""The ``bestiary`` runner executes notebooks headless and summarises what they report."""

import json

import nbformat
import pytest

from bestiary_keras import runner


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


def test_run_collects_metrics_and_failures(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _notebook(
        nbs / "01_good.ipynb",
        "import os\nfrom bestiary_keras import runtime",
        "assert os.environ['BESTIARY_PROFILE'] == 'ci' and os.environ['BESTIARY_SEED'] == '5'\n"
        "runtime.report('accuracy', 0.75, threshold=0.5, headline=True)\n"
        "runtime.report('loss', 0.2)",
    )
    _notebook(nbs / "02_bad.ipynb", "raise RuntimeError('this notebook stopped learning')")
    results_dir = tmp_path / "results"
    code = runner.main(["run", "--profile", "ci", "--seed", "5", "--notebooks", str(nbs),
                        "--results", str(results_dir)])
    assert code == 1  # one notebook failed
    summary = json.loads((results_dir / "ci" / "summary.json").read_text())
    good, bad = summary["notebooks"]
    assert good["status"] == "passed" and bad["status"] == "failed"
    assert [m["name"] for m in good["metrics"]] == ["accuracy", "loss"]
    assert good["metrics"][0]["value"] == 0.75 and good["metrics"][0]["passed"] is True
    assert "this notebook stopped learning" in bad["error"]
    assert "\x1b" not in bad["error"]  # no terminal colour codes in the summary
    assert good["seconds"] > 0
    assert good["peak_memory_mb"] > 10  # the kernel process was sampled
    table = (results_dir / "ci" / "summary.md").read_text()
    assert "| 01_good.ipynb |" in table and "accuracy 0.75" in table
    assert "1 of 2 notebooks passed" in table
    executed = nbformat.read(results_dir / "ci" / "01_good.ipynb", as_version=4)
    assert "accuracy: 0.75" in executed.cells[1].outputs[0]["text"]


def test_list_shows_every_section(capsys):
    assert runner.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "01 " in out and "17 " in out and "LIFT" in out
