"""nbconvert exporters for the decks and the site's pages, with no network in the output.

nbconvert's own ``reveal`` and ``lab`` templates load jQuery, require.js, mermaid, the widget
manager and MathJax from CDNs. The two templates here extend them and replace exactly those
blocks: reveal.js and MathJax come from ``_static/`` (see ``assets``), nothing else is loaded.
``external_sources(html)`` lists every ``http(s)://`` script, stylesheet, image or frame source
left in a page, so writers and tests can refuse one.
"""

from __future__ import annotations

import re

import jinja2
from nbconvert import HTMLExporter, SlidesExporter

from bestiary_keras.publish.assets import STATIC, mathjax_html

__all__ = ["external_sources", "page_exporter", "slides_exporter"]

_OFFLINE_BLOCKS = """
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{{ resources.bestiary_mathjax }}{%- endblock html_head_js_mathjax -%}
"""

_SLIDES_TEMPLATE = "{%- extends 'reveal/index.html.j2' -%}" + _OFFLINE_BLOCKS + """
{%- block html_head_css -%}
<style type="text/css">
/* long outputs scroll inside their sub-slide instead of running off the screen */
.reveal .slides > section > section { height: 100%; overflow-y: auto; }
.reveal .slides section img { max-height: 560px; }
</style>
{%- endblock html_head_css -%}
{% block footer_js %}
<script src="{{ resources.reveal.url_prefix }}/dist/reveal.js"></script>
<script src="{{ resources.reveal.url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true, center: false, transition: "slide",
  slideNumber: "c/t", width: 1280, height: 800, plugins: [RevealNotes]
});
// MathJax measures hidden slides as empty: typeset each slide again once it is shown.
Reveal.on("slidechanged", function (event) {
  if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(["Rerender", MathJax.Hub, event.currentSlide]); }
});
</script>
{% endblock footer_js %}
"""

_PAGE_TEMPLATE = "{%- extends 'lab/index.html.j2' -%}" + _OFFLINE_BLOCKS + """
{%- block html_head_css -%}
<style type="text/css">
nav.bestiary { font-family: sans-serif; padding: 0.5em 1em; border-bottom: 1px solid #ccc; }
</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
<nav class="bestiary"><a href="{{ resources.bestiary_index }}">All notebooks</a>
  · <a href="{{ resources.bestiary_slides }}">slides</a></nav>
{%- endblock body_header -%}
"""

_EXTERNAL = re.compile(r"""<(script|link|img|iframe|source|embed)\b[^>]*?\b(src|href)\s*=\s*["']?\s*"""
                       r"""((?:https?:)?//[^"'\s>]+)""", re.IGNORECASE)


def external_sources(html: str) -> list[str]:
    """Every ``http(s)://`` or protocol-relative source of a script, stylesheet, image or frame."""
    return [match.group(3) for match in _EXTERNAL.finditer(html)]


def _offline_resources(static_prefix: str) -> dict:
    return {"bestiary_mathjax": mathjax_html(static_prefix)}


def slides_exporter(static_prefix: str = STATIC) -> tuple[SlidesExporter, dict]:
    """A reveal.js exporter whose decks load reveal.js and MathJax from ``static_prefix``.

    ``static_prefix`` is the relative URL of the assets' folder (``_static`` beside the deck).
    Returns the exporter and the ``resources`` to pass to ``from_notebook_node``.
    """
    exporter = SlidesExporter(
        extra_loaders=[jinja2.DictLoader({"bestiary_slides.html.j2": _SLIDES_TEMPLATE})],
        template_file="bestiary_slides.html.j2",
        reveal_url_prefix=f"{static_prefix.rstrip('/')}/reveal.js", reveal_theme="white", exclude_input_prompt=True, exclude_output_prompt=True)
    return exporter, _offline_resources(static_prefix)


def page_exporter(static_prefix: str) -> tuple[HTMLExporter, dict]:
    """A JupyterLab-style page exporter loading MathJax from ``static_prefix`` (relative URL).

    Returns the exporter and the ``resources`` to pass to ``from_notebook_node`` (add
    ``bestiary_index`` and ``bestiary_slides``: the navigation links' targets).
    """
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"bestiary_page.html.j2": _PAGE_TEMPLATE})],
        template_name="lab", template_file="bestiary_page.html.j2")
    return exporter, _offline_resources(static_prefix)
