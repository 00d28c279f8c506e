"""The committed notebooks keep the collection's contract (see shared STYLE.md).

nbval executes them (pytest collects notebooks/*.ipynb with --nbval-lax); these checks read the
committed files: one clean top-to-bottom run stored, a `parameters` cell reading the profile and
seed, a measured result asserted, nothing downloaded.
"""

import re

import nbformat
import pytest

from bestiary_keras import runner

NOTEBOOKS = runner.find_notebooks()


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def test_collection_is_not_empty():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_one_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    counts = [c.get("execution_count") for c in _code(nb)]
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts}"
    for cell in _code(nb):
        expected_error = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if expected_error:
            assert errors, f"cell {cell.execution_count} is tagged raises-exception but did not raise"
        else:
            assert not errors, f"cell {cell.execution_count} stores an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_and_setup(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in _code(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    source = tagged[0].source
    assert 'os.environ.get("BESTIARY_PROFILE", "default")' in source
    assert 'os.environ.get("BESTIARY_SEED", "0")' in source
    all_code = "\n".join(c.source for c in _code(nb))
    assert "runtime.setup(PROFILE, SEED)" in all_code
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_asserts_a_headline_result(path):
    code = "\n".join(c.source for c in _code(nbformat.read(path, as_version=4)))
    assert re.search(r"runtime\.report\([^)]*threshold=", code, flags=re.S), "no asserted result"
    assert "headline=True" in code
    assert not re.search(r"assert\s+(True|1)\b", code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nothing_is_downloaded(path):
    code = "\n".join(c.source for c in _code(nbformat.read(path, as_version=4)))
    for pattern in (r"weights\s*=\s*['\"]imagenet['\"]", r"urlretrieve", r"requests\.get",
                    r"download\s*=\s*True", r"!pip", r"!wget", r"!curl"):
        assert not re.search(pattern, code), f"{path.name} may download: {pattern}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_run_is_the_default_profile(path):
    # what a reader sees is the `default` run (`bestiary run --profile default --write-back`);
    # CI executes `ci` separately, so a stored `ci` run means the write-back was forgotten
    nb = nbformat.read(path, as_version=4)
    shown = "".join(o.get("text", "") for c in _code(nb) for o in c.get("outputs", [])
                    if o.get("output_type") == "stream")
    profiles = re.findall(r"Profile: (\w+) \| seed: (\d+)", shown)
    assert profiles == [("default", "0")], f"{path.name} stores the run {profiles}, not default seed 0"
