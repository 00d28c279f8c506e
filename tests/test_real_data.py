"""The real-data switch: ``DATA = "generated"`` in every notebook's ``parameters`` cell, and
``DATA = "tfds"`` running the same lesson on a TFDS dataset where one fits.

A notebook's real-data path is its code cells tagged ``real-data``. Each such cell is
self-contained given the notebook's first two code cells (the ``parameters`` cell and the
set-up cell with ``runtime.setup`` and the imports): it loads the data with a
``bestiary_keras.datasets`` loader, builds and trains the notebook's model and reports what it
measured. The tests below execute exactly those cells in this process, in the ``ci`` profile:

- on ``tfds.testing.mock_data`` (random examples shaped like the real ones, no files, no
  network): the path runs end to end for a few steps and reports a finite result;
- with an empty TFDS data directory: it stops with ``DatasetNotAvailableError`` whose message
  says which ``tfds build`` command prepares the data (nothing is downloaded).

Notebooks without a fitting TFDS dataset have no ``real-data`` cell; their "Real data" section
says which dataset the paper used and why it is not wired.
"""

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import nbformat  # noqa: E402
import pytest  # noqa: E402

from bestiary_keras import runner, runtime  # noqa: E402

TAG = "real-data"
PARAMETER_LINE = re.compile(r'^DATA = "generated"', flags=re.M)
NOTEBOOKS = runner.find_notebooks()


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _real_data_cells(nb):
    return [c for c in _code(nb) if TAG in c.metadata.get("tags", [])]


def _read(path):
    return nbformat.read(path, as_version=4)


WIRED = [p for p in NOTEBOOKS if _real_data_cells(_read(p))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_the_switch_and_a_real_data_section(path):
    nb = _read(path)
    parameters = _code(nb)[0]
    assert "parameters" in parameters.metadata.get("tags", [])
    assert PARAMETER_LINE.search(parameters.source), 'no DATA = "generated" in the parameters cell'
    headings = [c.source for c in nb.cells
                if c.cell_type == "markdown" and c.source.startswith("## Real data")]
    assert len(headings) == 1, 'one markdown section "## Real data" says what DATA = "tfds" does'
    if path in WIRED:
        assert "tfds build" in headings[0], "the section says how to prepare the data"
    else:
        assert re.search(r"paper", headings[0]), "the section names the dataset the paper used"
        code = "\n".join(c.source for c in _code(nb))
        assert re.search(r"if DATA != \"generated\"|if DATA == \"tfds\"", code), \
            "DATA = 'tfds' must say that this notebook has no real-data path, not be ignored"


def _execute(path, tmp_path, monkeypatch):
    """Runs the parameters cell (with DATA = "tfds"), the set-up cell and the real-data cells
    in the ``ci`` profile; returns the results they reported."""
    nb = _read(path)
    code = _code(nb)
    parameters = PARAMETER_LINE.sub('DATA = "tfds"', code[0].source)
    reports = tmp_path / "reports.jsonl"
    monkeypatch.setenv("BESTIARY_PROFILE", "ci")
    monkeypatch.setenv("BESTIARY_SEED", "0")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.setenv(runtime.REPORT_ENV, str(reports))
    namespace = {"__name__": "__main__"}
    for cell in [parameters, code[1].source] + [c.source for c in _real_data_cells(nb)]:
        exec(compile(cell, str(path), "exec"), namespace)  # noqa: S102 - the notebook's own code
    if not reports.exists():
        return []
    return [json.loads(line) for line in reports.read_text().splitlines()]


@pytest.mark.parametrize("path", WIRED, ids=lambda p: p.name)
def test_real_data_path_runs_end_to_end_on_mock_data(path, tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
        reports = _execute(path, tmp_path, monkeypatch)
    assert reports, "the real-data path reported no result"
    assert all(r["profile"] == "ci" for r in reports)


@pytest.mark.parametrize("path", WIRED, ids=lambda p: p.name)
def test_real_data_path_without_the_data_says_how_to_prepare_it(path, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError

    with pytest.raises(DatasetNotAvailableError, match="tfds build"):
        _execute(path, tmp_path, monkeypatch)
    assert not any((tmp_path / "tensorflow_datasets").glob("*/*/dataset_info.json")), \
        "something was downloaded or prepared"


def test_the_notebooks_with_a_real_data_path():
    # a real-data cell lost (untagged, deleted) would otherwise drop its tests silently
    wired = {p.name[:2] for p in WIRED}
    assert wired == {"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12",
                     "15", "16"}, sorted(wired)
