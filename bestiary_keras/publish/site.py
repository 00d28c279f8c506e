"""A static HTML site of the stored notebooks, opened from disk with no network.

``write_site(notebooks, out_dir)`` writes::

    out_dir/index.html                 the gallery: one figure per notebook, its headline results,
                                       its ci and default times (the README's table)
    out_dir/notebooks/NN_name.html     every notebook rendered (math by the local MathJax)
    out_dir/slides/NN_name.slides.html every notebook's reveal.js deck
    out_dir/figures/NN_name.png        the gallery figures (full size)
    out_dir/_static/                   reveal.js and MathJax, from installed packages
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat

from bestiary_keras.publish.assets import STATIC, copy_assets
from bestiary_keras.publish.gallery import (notebook_title, readme_rows, representative_figure)
from bestiary_keras.publish.render import external_sources, page_exporter
from bestiary_keras.publish.slides import deck_name, write_slides

__all__ = ["index_html", "render_page", "write_site"]

_INDEX_STYLE = """
body { font-family: "Source Sans Pro", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
           gap: 1.2em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; }
.card img { width: 100%; height: auto; max-height: 260px; object-fit: contain; }
.card h2 { font-size: 1.05em; margin: 0.4em 0; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 0.6em;
           font-size: 0.9em; margin: 0.4em 0; }
.card dt { font-weight: bold; }
.card dd { margin: 0; }
"""


def render_page(notebook: Path) -> str:
    """One notebook's page (for ``out_dir/notebooks/``); raises ``ValueError`` on a network source."""
    exporter, resources = page_exporter(f"../{STATIC}")
    resources.update(bestiary_index="../index.html",
                     bestiary_slides=f"../slides/{deck_name(notebook)}")
    page, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4),
                                          resources=resources)
    external = external_sources(page)
    if external:
        raise ValueError(f"The page of notebook={Path(notebook).name!r} would load "
                         f"{external[:3]} from the network: serve it from _static/ instead.")
    return page


def _card(stem: str, title: str, row: dict[str, str], has_figure: bool) -> str:
    esc = html.escape
    figure = (f'<a href="notebooks/{stem}.html"><img src="figures/{stem}.png" '
              f'alt="{esc(title)}: representative figure"></a>' if has_figure else "")
    facts = "".join(f"<dt>{label}</dt><dd>{esc(row.get(key, '-'))}</dd>"
                    for label, key in (("ci result", "ci_result"), ("ci time", "ci_time"),
                                       ("default", "default")))
    return (f'<div class="card" id="nb-{stem[:2]}">{figure}<h2><a href="notebooks/{stem}.html">'
            f"{esc(title)}</a></h2><p>{esc(row.get('trains', ''))}</p><dl>{facts}</dl>"
            f'<p><a href="notebooks/{stem}.html">notebook</a> · '
            f'<a href="slides/{stem}.slides.html">slides</a></p></div>')


def index_html(cards: list[str]) -> str:
    """The gallery page around the notebooks' cards."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Deep Learning: Bestiary, the notebooks</title>"
            f"<style>{_INDEX_STYLE}</style></head><body>"
            "<h1>Deep Learning: Bestiary, the notebooks</h1>"
            "<p>Each card shows a figure from the notebook's stored run, its headline results and "
            "times on a 2-core CPU (from the README's table: <em>ci</em> seed 0 with the asserted "
            "threshold, <em>default</em> seed 0). Every page and deck works offline.</p>"
            f"<div class=\"gallery\">{''.join(cards)}</div></body></html>\n")


def write_site(notebooks: list[Path], out_dir: Path, *, readme: Path | None = None) -> Path:
    """Writes the static site (see the module docstring) into ``out_dir``; returns its index.

    ``readme`` (default: the README.md beside ``notebooks/``) gives each card's results and times.
    """
    notebooks = [Path(p) for p in notebooks]
    out_dir = Path(out_dir)
    readme = Path(readme) if readme is not None else notebooks[0].resolve().parent.parent / "README.md"
    rows = readme_rows(readme)
    for folder in ("notebooks", "figures"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir)
    write_slides(notebooks, out_dir / "slides", static_prefix=f"../{STATIC}")
    cards = []
    for path in notebooks:
        node = nbformat.read(path, as_version=4)
        figure = representative_figure(node)
        if figure is not None:
            (out_dir / "figures" / f"{path.stem}.png").write_bytes(figure)
        (out_dir / "notebooks" / f"{path.stem}.html").write_text(render_page(path),
                                                                 encoding="utf-8")
        cards.append(_card(path.stem, notebook_title(node), rows.get(path.name[:2], {}),
                           figure is not None))
    index = out_dir / "index.html"
    index.write_text(index_html(cards), encoding="utf-8")
    return index
