"""Slide metadata for the notebooks: which cell opens a slide, a sub-slide, a fragment.

The rules follow the lecture (one notebook = one lecture section, its parts = ``## `` headings):

- the first markdown cell (the notebook's title) is the title ``slide``;
- a markdown cell that starts with a ``## `` heading opens a ``subslide`` (one per part);
- a markdown cell holding a display equation (``$$ ... $$``, ``\\[ ... \\]`` or a LaTeX
  environment) is a ``fragment``, revealed on the next key press;
- the ``parameters`` cell, the ``runtime.setup(...)`` call and cells of nothing but imports
  are ``skip``: an audience needs none of them;
- everything else is ``-`` (it continues the current slide).

``apply_slide_metadata`` is pure (it returns a changed copy) and idempotent. Run it over
notebooks in place with ``python -m bestiary_keras.publish.metadata notebooks/*.ipynb``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["SLIDE_TYPES", "apply_slide_metadata", "holds_display_equation", "is_setup_code",
           "main", "slide_type"]

SLIDE_TYPES = ("slide", "subslide", "fragment", "skip", "-")

_DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\begin\{(equation|align|gather|multline)\*?\}",
                           re.DOTALL)


def holds_display_equation(markdown: str) -> bool:
    """True when ``markdown`` has a display equation (``$$..$$``, ``\\[..\\]``, an environment)."""
    return _DISPLAY_MATH.search(markdown) is not None


def _is_setup_call(node: ast.stmt) -> bool:
    """``runtime.setup(...)`` or ``NAME = runtime.setup(...)``."""
    value = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
    return (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and value.func.attr == "setup" and isinstance(value.func.value, ast.Name)
            and value.func.value.id == "runtime")


def _is_training_plan(node) -> bool:
    """``TRAINING = distributed.plan_for(...)`` or ``print(TRAINING)``: the set-up cell's plan."""
    if isinstance(node, ast.Assign):
        value = node.value
        return (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and value.func.attr == "plan_for" and isinstance(value.func.value, ast.Name)
                and value.func.value.id == "distributed")
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == "print"
            and len(node.value.args) == 1 and isinstance(node.value.args[0], ast.Name)
            and node.value.args[0].id == "TRAINING" and not node.value.keywords)


def is_setup_code(cell) -> bool:
    """True for set-up code an audience skips: the ``parameters`` cell, ``runtime.setup``, imports.

    A code cell counts when it is tagged ``parameters`` or when every statement in it is an
    import, the ``runtime.setup(...)`` call or the training plan (``TRAINING =
    distributed.plan_for(...)`` and ``print(TRAINING)``), comments and blank lines aside.
    """
    if cell.cell_type != "code":
        return False
    if "parameters" in cell.metadata.get("tags", []):
        return True
    try:
        body = ast.parse(cell.source).body
    except SyntaxError:  # IPython magics and the like: not plain set-up code
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) or _is_setup_call(node)
                              or _is_training_plan(node) for node in body)


def slide_type(cell, *, is_first_markdown: bool) -> str:
    """The ``slideshow.slide_type`` of one cell under the rules in this module's docstring."""
    if cell.cell_type == "markdown":
        if is_first_markdown:
            return "slide"
        if cell.source.lstrip().startswith("## "):
            return "subslide"
        if holds_display_equation(cell.source):
            return "fragment"
        return "-"
    if is_setup_code(cell):
        return "skip"
    return "-"


def apply_slide_metadata(notebook):
    """A copy of ``notebook`` whose every cell has ``metadata.slideshow.slide_type`` set.

    Pure and idempotent: the input is not changed and applying it twice gives the same
    notebook. Other keys under ``metadata.slideshow`` are kept.
    """
    result = copy.deepcopy(notebook)
    first_markdown = next((i for i, cell in enumerate(result.cells)
                           if cell.cell_type == "markdown"), None)
    for i, cell in enumerate(result.cells):
        slideshow = dict(cell.metadata.get("slideshow", {}))
        slideshow["slide_type"] = slide_type(cell, is_first_markdown=i == first_markdown)
        cell.metadata["slideshow"] = slideshow
    return result


def main(argv: list[str] | None = None) -> int:
    """Writes slide metadata into the given notebooks in place; prints each one's slide counts."""
    parser = argparse.ArgumentParser(prog="python -m bestiary_keras.publish.metadata",
                                     description=main.__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        notebook = nbformat.read(path, as_version=4)
        updated = apply_slide_metadata(notebook)
        if updated != notebook:
            nbformat.write(updated, path)
        kinds = [cell.metadata["slideshow"]["slide_type"] for cell in updated.cells]
        print(f"{path.name}: " + ", ".join(f"{kinds.count(k)} {k}" for k in SLIDE_TYPES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
