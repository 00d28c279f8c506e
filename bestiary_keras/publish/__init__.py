"""Publishing the stored notebooks: offline reveal.js decks and a static site with a gallery.

Submodules (import them directly, e.g. ``from bestiary_keras.publish.slides import write_slides``):

- ``metadata``: slide metadata for a notebook (title slide, sub-slides, fragments, skipped set-up);
- ``assets``: reveal.js and MathJax copied from installed packages, never from a CDN;
- ``render``: nbconvert exporters for decks and pages with no network source left;
- ``slides``: ``write_slides(notebooks, out_dir)``, one deck per notebook;
- ``gallery``: each notebook's representative figure, thumbnails, the README's results table;
- ``site``: ``write_site(notebooks, out_dir)``, the gallery index and one page per notebook.
"""

__all__ = ["assets", "gallery", "metadata", "render", "site", "slides"]
