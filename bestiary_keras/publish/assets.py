"""The JavaScript the decks and the site need, copied from installed packages (never a CDN).

- reveal.js 5 from ``sphinx-revealjs`` (its ``_static/revealjs``: ``dist/`` and the notes plugin);
- MathJax 2.7 from ``jupyter-server-mathjax`` (its ``static/``, without the translations),
  configured (its combined ``TeX-AMS-MML_HTMLorMML-full``) for HTML-CSS output with the
  bundled STIX-Web fonts.

``copy_assets(out_dir)`` copies both into ``out_dir/_static/`` once; pages refer to them by
relative URLs (``mathjax_html(prefix)``), so the output folder can be moved or opened from disk.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

__all__ = ["STATIC", "copy_assets", "mathjax_html", "package_folder"]

STATIC = "_static"

_REVEAL_FILES = ("dist/reset.css", "dist/reveal.css", "dist/reveal.js", "dist/theme/white.css",
                 "dist/theme/fonts/source-sans-pro", "plugin/notes/notes.js")
_MATHJAX_CONFIG_FILE = "TeX-AMS-MML_HTMLorMML-full"  # the package ships HTML-CSS only inside it
_MATHJAX_FILES = ("MathJax.js", "LICENSE", f"config/{_MATHJAX_CONFIG_FILE}.js", "extensions",
                  "fonts", "jax")
# Not needed with the configuration below: SVG output, the accessibility explorer (7 MB).
_MATHJAX_UNUSED = ("SVG", "a11y")

_MATHJAX_CONFIG = r"""<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true},
               // its font test loads url('about:blank'), which a page opened from disk refuses
               styles: {"@font-face": {"font-family": "MathJax_Blank", src: "local('MathJax_Blank')"}}},
  // the quick preview pass styles its text with the TeX web fonts, which the package lacks
  "fast-preview": {disabled: true},
  displayAlign: "center", messageStyle: "none", showMathMenu: false
});
</script>
<script src="PREFIX/mathjax/MathJax.js?config=CONFIG"></script>
<style type="text/css">
/* The hidden MathML kept for screen readers would ask for the TeX web fonts (not shipped). */
.MJX_Assistive_MathML * { font-family: inherit !important; }
</style>"""


def package_folder(package: str, inside: str) -> Path:
    """The folder ``inside`` of the installed ``package``, without importing the package.

    Raises ``ValueError`` naming the package to install when it is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package={package!r} is not installed: the offline slides and site take "
                         f"reveal.js and MathJax from it; run `python -m pip install -e .`.")
    folder = Path(next(iter(spec.submodule_search_locations))) / inside
    if not folder.is_dir():
        raise ValueError(f"{folder} is missing from the installed {package!r}: reinstall it "
                         f"(`python -m pip install --force-reinstall {package.replace('_', '-')}`).")
    return folder


def _copy(source_root: Path, names: tuple[str, ...], target_root: Path,
          unused: tuple[str, ...] = ()) -> None:
    for name in names:
        source, target = source_root / name, target_root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.map", *unused))
        else:
            shutil.copy2(source, target)


def copy_assets(out_dir: Path) -> Path:
    """Copies reveal.js and MathJax into ``out_dir/_static`` (``reveal.js/``, ``mathjax/``)."""
    static = Path(out_dir) / STATIC
    _copy(package_folder("sphinx_revealjs", "_static/revealjs"), _REVEAL_FILES,
          static / "reveal.js")
    _copy(package_folder("jupyter_server_mathjax", "static"), _MATHJAX_FILES, static / "mathjax",
          _MATHJAX_UNUSED)
    return static


def mathjax_html(prefix: str) -> str:
    """The ``<script>`` tags that load the local MathJax from ``prefix`` (e.g. ``_static``)."""
    return _MATHJAX_CONFIG.replace("PREFIX", prefix.rstrip("/")).replace("CONFIG",
                                                                        _MATHJAX_CONFIG_FILE)
