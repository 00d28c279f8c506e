"""environment.yml mirrors pyproject.toml, and .ci/run runs the README's test command."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_pip_list():
    text = (ROOT / "environment.yml").read_text()
    block = text.split("- pip:", 1)[1]
    return [m.strip() for m in re.findall(r"^\s+- (.+)$", block, flags=re.M)]


def test_environment_yml_mirrors_pyproject():
    project = _pyproject()["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    listed = _conda_pip_list()
    assert "-e ." in listed, "environment.yml must install the package itself"
    assert sorted(x for x in listed if x != "-e .") == sorted(wanted)


def test_environment_yml_python_matches_requires_python():
    text = (ROOT / "environment.yml").read_text()
    version = re.search(r"- python=(\d+)\.(\d+)", text)
    assert version, "environment.yml must pin python=X.Y"
    lower = re.search(r">=(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    upper = re.search(r"<(\d+)\.(\d+)", _pyproject()["project"]["requires-python"])
    v = tuple(map(int, version.groups()))
    assert tuple(map(int, lower.groups())) <= v < tuple(map(int, upper.groups()))


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", quick, flags=re.S)


def test_readme_quick_start_has_two_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    run_cmd, test_cmd = commands
    assert "bestiary run --profile ci" in run_cmd
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.strip() in ci, ".ci/run must run exactly the README's test command"


def test_console_script_is_declared():
    assert _pyproject()["project"]["scripts"]["bestiary"] == "bestiary_keras.runner:main"
