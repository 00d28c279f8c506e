"""Offline reveal.js decks of the notebooks, from their stored outputs.

``write_slides(notebooks, out_dir)`` writes ``out_dir/NN_name.slides.html`` for each notebook
(slide metadata applied to a copy, see ``metadata``) and ``out_dir/_static/`` with reveal.js and
MathJax from installed packages: the folder opens from disk with no network.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from bestiary_keras.publish.assets import STATIC, copy_assets
from bestiary_keras.publish.metadata import apply_slide_metadata
from bestiary_keras.publish.render import external_sources, slides_exporter

__all__ = ["deck_name", "render_deck", "write_slides"]


def deck_name(notebook: Path) -> str:
    """``01_vgg.ipynb`` -> ``01_vgg.slides.html``."""
    return f"{Path(notebook).stem}.slides.html"


def render_deck(notebook: Path, static_prefix: str = STATIC) -> str:
    """The deck's HTML for one stored notebook; raises ``ValueError`` on any network source."""
    node = apply_slide_metadata(nbformat.read(notebook, as_version=4))
    exporter, resources = slides_exporter(static_prefix)
    html, _ = exporter.from_notebook_node(node, resources=resources)
    external = external_sources(html)
    if external:
        raise ValueError(f"The deck of notebook={Path(notebook).name!r} would load "
                         f"{external[:3]} from the network: serve it from _static/ instead.")
    return html


def write_slides(notebooks: list[Path], out_dir: Path, *, static_prefix: str = STATIC) -> list[Path]:
    """Writes one offline deck per notebook into ``out_dir``; returns the decks' paths.

    The assets go to ``out_dir/_static`` unless ``static_prefix`` points elsewhere (the site
    shares one ``_static`` between its pages and decks: ``static_prefix="../_static"``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if static_prefix == STATIC:
        copy_assets(out_dir)
    decks = []
    for notebook in notebooks:
        deck = out_dir / deck_name(notebook)
        deck.write_text(render_deck(Path(notebook), static_prefix), encoding="utf-8")
        decks.append(deck)
    return decks
