"""bestiary_keras.publish: slide metadata, offline decks, the gallery site (no browser here)."""

import base64
import copy
import io
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from bestiary_keras.publish.gallery import (notebook_title, readme_rows, representative_figure,
                                            thumbnail, write_thumbnails)
from bestiary_keras.publish.metadata import apply_slide_metadata, holds_display_equation
from bestiary_keras.publish.render import external_sources
from bestiary_keras.publish.site import write_site
from bestiary_keras.publish.slides import write_slides

ROOT = Path(__file__).resolve().parents[1]


def _png(width, height, colour):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_output(png):
    return new_output("display_data", data={"image/png": base64.b64encode(png).decode("ascii"),
                                            "text/plain": "<Figure>"})


def _lesson(number, colour=(200, 30, 30)):
    """A small lecture notebook: title, parameters, setup, imports, two parts, math, figures."""
    parameters = new_code_cell('PROFILE = "ci"\nSEED = 0', metadata={"tags": ["parameters"]})
    figure = new_code_cell("plt.imshow(image)", outputs=[_image_output(_png(40, 20, (0, 0, 255)))])
    last = new_code_cell("plt.show()", outputs=[_image_output(_png(60, 30, colour))])
    cells = [
        new_markdown_cell(f"# {number} · A lesson\n\nThe slide's claim, with $x^2$ inline."),
        parameters,
        new_code_cell("from bestiary_keras import distributed, runtime\n"
                      "PROFILE = runtime.setup(PROFILE, SEED)\n"
                      "TRAINING = distributed.plan_for(PROFILE)  # the training plan\n"
                      "print(TRAINING)"),
        new_code_cell("import numpy as np\nfrom matplotlib import pyplot as plt  # figures"),
        new_code_cell("SECRET_SETUP = 1\nprint(SECRET_SETUP)"),
        new_markdown_cell("## 1. The loss\n\nIn words first."),
        new_markdown_cell("The loss:\n\n$$L = \\sum_i (y_i - \\hat y_i)^2$$"),
        figure,
        new_markdown_cell("Only inline math: $a + b$ and a price of 5 dollars."),
        new_markdown_cell("### A smaller heading stays on its slide"),
        new_markdown_cell("## 2. Results\n\n\\begin{align} a &= b \\end{align}"),
        new_code_cell("import os\nprint(os.sep)"),
        last,
    ]
    notebook = new_notebook(cells=cells)
    notebook.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3",
                                             "language": "python"},
                              "language_info": {"name": "python"}})
    return notebook


def _kinds(notebook):
    return [cell.metadata["slideshow"]["slide_type"] for cell in notebook.cells]


# --- metadata -------------------------------------------------------------------------------

def test_slide_types_follow_the_lecture_structure():
    kinds = _kinds(apply_slide_metadata(_lesson("01")))
    assert kinds == ["slide",      # the title
                     "skip",       # parameters cell
                     "skip",       # runtime.setup
                     "skip",       # imports only
                     "-",          # code that does something
                     "subslide",   # ## 1.
                     "fragment",   # display equation
                     "-",          # figure
                     "-",          # inline math is no fragment
                     "-",          # ### heading
                     "subslide",   # ## 2. (a part that holds an equation is still a part)
                     "-",          # an import followed by work is not set-up
                     "-"]


def test_apply_slide_metadata_is_pure_and_idempotent():
    notebook = _lesson("01")
    notebook.cells[5].metadata["slideshow"] = {"slide_type": "notes", "data": {"x": "1"}}
    before = copy.deepcopy(notebook)
    once = apply_slide_metadata(notebook)
    assert notebook == before                        # the input is untouched
    assert apply_slide_metadata(once) == once        # a second pass changes nothing
    assert once.cells[5].metadata["slideshow"] == {"slide_type": "subslide", "data": {"x": "1"}}


@pytest.mark.parametrize("text, expected", [
    ("$$a$$", True), ("Loss\n$$\nL = 1\n$$", True), ("\\[ x \\]", True),
    ("\\begin{equation} y \\end{equation}", True), ("\\begin{align*} y \\end{align*}", True),
    ("inline $a$ only", False), ("5 $ and 6 $", False), ("no math", False)])
def test_holds_display_equation(text, expected):
    assert holds_display_equation(text) is expected


def test_metadata_on_a_copy_of_every_stored_notebook():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        kinds = _kinds(apply_slide_metadata(nbformat.read(path, as_version=4)))
        assert kinds.count("slide") == 1, path.name
        assert kinds[0] == "slide", path.name         # every notebook opens with its title
        assert kinds.count("subslide") >= 5, path.name
        assert kinds.count("skip") >= 2, path.name    # parameters and setup at least


# --- gallery pieces -------------------------------------------------------------------------

def test_representative_figure_prefers_a_gallery_tag_else_the_last_image():
    notebook = _lesson("01")
    assert Image.open(io.BytesIO(representative_figure(notebook))).size == (60, 30)
    notebook.cells[7].metadata["tags"] = ["gallery"]
    assert Image.open(io.BytesIO(representative_figure(notebook))).size == (40, 20)
    assert representative_figure(new_notebook(cells=[new_markdown_cell("# none")])) is None
    assert notebook_title(notebook) == "01 · A lesson"


def test_thumbnail_is_240_wide_and_small():
    gradient = Image.linear_gradient("L").resize((1200, 600)).convert("RGB")
    buffer = io.BytesIO()
    gradient.save(buffer, format="PNG")
    small = thumbnail(buffer.getvalue())
    assert Image.open(io.BytesIO(small)).size == (240, 120)
    assert len(small) < 40_000
    with pytest.raises(ValueError, match="width=8"):
        thumbnail(buffer.getvalue(), width=8)


def test_readme_rows_reads_the_notebook_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n\n| NN | notebook | lecture section | what it trains | `ci` result "
                      "(seed 0) | `ci` time | `default` (seed 0) |\n|---|---|---|---|---|---|---|\n"
                      "| 01 | [01_a](notebooks/01_a.ipynb) | A | a net | mAP 0.9 (≥ 0.8) | 50 s, 1 GB "
                      "| 0.95, 300 s |\n\nafter\n| 99 | not | the | table | x | y | z |\n")
    rows = readme_rows(readme)
    assert rows == {"01": {"nn": "01", "notebook": "01_a", "section": "A", "trains": "a net",
                           "ci_result": "mAP 0.9 (≥ 0.8)", "ci_time": "50 s, 1 GB",
                           "default": "0.95, 300 s"}}
    readme.write_text("no table\n")
    with pytest.raises(ValueError, match="no notebook table"):
        readme_rows(readme)
    assert len(readme_rows(ROOT / "README.md")) == 17


def test_external_sources_finds_network_scripts_styles_and_images_only():
    page = ('<script src="https://cdn.example/x.js"></script><link rel="stylesheet" '
            'href="//cdn.example/y.css"><img src=\'http://example.org/z.png\'>'
            '<a href="https://arxiv.org/abs/1">paper</a><script src="_static/local.js"></script>'
            '<img src="data:image/png;base64,AAAA">')
    assert external_sources(page) == ["https://cdn.example/x.js", "//cdn.example/y.css",
                                      "http://example.org/z.png"]


# --- writers --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lessons(tmp_path_factory):
    folder = tmp_path_factory.mktemp("project")
    (folder / "notebooks").mkdir()
    paths = []
    for number, colour in (("01", (200, 30, 30)), ("02", (30, 200, 30))):
        path = folder / "notebooks" / f"{number}_lesson.ipynb"
        nbformat.write(_lesson(number, colour), path)
        paths.append(path)
    (folder / "README.md").write_text(
        "| NN | notebook | lecture section | what it trains | ci | ci time | default |\n|---|\n"
        "| 01 | 01_lesson | One | net one | AP 0.51 | 11 s | 0.71, 101 s |\n"
        "| 02 | 02_lesson | Two | net two | AP 0.52 | 12 s | 0.72, 102 s |\n")
    return paths


def test_write_slides_offline_decks(lessons, tmp_path):
    decks = write_slides(lessons, tmp_path / "decks")
    assert [d.name for d in decks] == ["01_lesson.slides.html", "02_lesson.slides.html"]
    assert (tmp_path / "decks/_static/reveal.js/dist/reveal.js").is_file()
    assert (tmp_path / "decks/_static/mathjax/MathJax.js").is_file()
    deck = decks[0].read_text()
    assert external_sources(deck) == []
    assert re.findall(r"<script[^>]*src=\"([^\"]+)\"", deck) == [
        "_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full",
        "_static/reveal.js/dist/reveal.js", "_static/reveal.js/plugin/notes/notes.js"]
    assert deck.count("<section") == 3 + 1            # title and two parts, in one column
    assert deck.count('class="fragment"') == 1
    assert "SECRET_SETUP" in deck and "runtime.setup" not in deck  # set-up skipped, work shown
    for asset in re.findall(r"(?:src|href)=\"(_static/[^\"?]+)", deck):
        assert (tmp_path / "decks" / asset).is_file(), asset


def test_write_site_gallery_and_pages(lessons, tmp_path):
    index = write_site(lessons, tmp_path / "site")
    site = tmp_path / "site"
    assert index == site / "index.html"
    page = index.read_text()
    assert page.count('class="card"') == 2
    for stem, number in (("01_lesson", "1"), ("02_lesson", "2")):
        assert f'href="notebooks/{stem}.html"' in page and f'href="slides/{stem}.slides.html"' in page
        assert f"AP 0.5{number}" in page and f"1{number} s" in page and f"0.7{number}, 10{number} s" in page
        assert (site / "notebooks" / f"{stem}.html").is_file()
        assert (site / "slides" / f"{stem}.slides.html").is_file()
    assert Image.open(site / "figures/02_lesson.png").getpixel((0, 0)) == (30, 200, 30)
    pages = sorted(site.glob("**/*.html"))
    assert len(pages) == 5
    for html_file in pages:
        text = html_file.read_text()
        assert external_sources(text) == [], html_file.name
        for asset in re.findall(r"(?:src|href)=\"((?:\.\./)?_static/[^\"?]+)", text):
            assert (html_file.parent / asset).resolve().is_file(), (html_file.name, asset)
    rendered = (site / "notebooks/01_lesson.html").read_text()
    assert "../_static/mathjax/MathJax.js" in rendered and 'href="../index.html"' in rendered


def test_write_thumbnails(lessons, tmp_path):
    written = write_thumbnails(lessons, tmp_path / "thumbs", width=30)
    assert [p.name for p in written] == ["01_lesson.png", "02_lesson.png"]
    assert Image.open(written[0]).size == (30, 15)


def test_a_stored_notebook_deck_has_one_section_per_part(tmp_path):
    path = ROOT / "notebooks" / "15_siamese.ipynb"
    kinds = _kinds(apply_slide_metadata(nbformat.read(path, as_version=4)))
    deck = write_slides([path], tmp_path)[0].read_text()
    assert deck.count("<section") == kinds.count("slide") + kinds.count("subslide") + 1
    assert external_sources(deck) == []
