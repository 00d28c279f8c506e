"""Headless Chromium opens every deck and every page of the site from disk, with no network.

For each deck and page: no request other than file:/data:/blob: URLs (and the browser's own
chrome:// pages) (Chrome DevTools network
events), no JavaScript error or failed load in the console, every image decoded
(naturalWidth > 0), every equation typeset by the local MathJax (as many rendered frames as TeX
sources, none in error, no raw ``$$`` left in the rendered markdown), and for decks the number of
slides reveal.js counts equals the slide metadata's. Screenshots of 01's title slide and of the
gallery go to the test's tmp folder; with ``BESTIARY_UPDATE_SCREENSHOTS=1`` they are also written,
reduced, to docs/gallery/ for the README (never by default: a test run leaves the checkout as it
found it).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when absent) and
``selenium`` (the ``test`` extra); skips with the reason anywhere else.
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from bestiary_keras.publish.gallery import thumbnail
from bestiary_keras.publish.metadata import apply_slide_metadata
from bestiary_keras.publish.site import write_site

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# chrome:// and chrome-untrusted:// are the browser's own pages (its start page), served from
# the binary: they never leave the machine either.
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "chrome-untrusted"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1280,800")

webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium is missing: python -m pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="headless Chromium is missing: apt-get install -y chromium chromium-driver "
           "(.ci/run does this when it runs as root on Debian)")

# The page's state once MathJax, reveal.js and the images have settled (null while they work).
_STATE = """
const mathjax = window.MathJax && MathJax.Hub;
if (document.readyState !== "complete") return null;
if (mathjax && !(MathJax.isReady && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running)) return null;
if (window.Reveal && !Reveal.isReady()) return null;
const images = Array.from(document.images);
if (images.some(i => !i.complete)) return null;
const markdown = Array.from(document.querySelectorAll(".jp-RenderedMarkdown, .jp-MarkdownOutput"))
  .map(e => { const c = e.cloneNode(true); c.querySelectorAll("code, pre, script").forEach(x => x.remove());
              return c.textContent; }).join("\\n");
return {
  slides: window.Reveal ? Reveal.getTotalSlides() : null,
  images: images.length,
  broken: images.filter(i => i.naturalWidth === 0).map(i => i.src.slice(0, 60)),
  tex: document.querySelectorAll('script[type^="math/tex"]').length,
  typeset: document.querySelectorAll('span.MathJax[id$="-Frame"]').length,
  errors: document.querySelectorAll(".MathJax_Error, .noError, [class*=merror]").length,
  raw_display_math: markdown.includes("$$"),
};
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    started = time.perf_counter()
    write_site(NOTEBOOKS, folder)
    print(f"\nsite written in {time.perf_counter() - started:.1f} s")
    return folder


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="bestiary-chromium-")
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _visit(driver, path: Path) -> dict:
    """Opens ``path`` and returns its settled state plus the requests and console errors."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("performance"), driver.get_log("browser")      # forget the previous page
    driver.get(path.as_uri())
    state = WebDriverWait(driver, 60, poll_frequency=0.1).until(lambda d: d.execute_script(_STATE))
    requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    state["requests"] = [m["params"]["request"]["url"] for m in requests
                         if m["method"] == "Network.requestWillBeSent"]
    state["console"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return state


def _check(state: dict, notebook: Path | None) -> None:
    remote = [u for u in state["requests"] if urlsplit(u).scheme not in LOCAL_SCHEMES]
    assert remote == [], f"requests that left the machine: {remote[:5]}"
    assert state["console"] == [], state["console"][:5]
    assert state["broken"] == [], f"images that did not load: {state['broken']}"
    assert state["errors"] == 0 and not state["raw_display_math"]
    assert state["typeset"] == state["tex"]
    if notebook is not None:
        has_math = any("$" in c.source for c in nbformat.read(notebook, as_version=4).cells
                       if c.cell_type == "markdown")
        assert (state["tex"] > 0) == has_math, (state["tex"], has_math)


def _save_reduced_screenshot(driver, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000, "a blank screenshot"
    if os.environ.get("BESTIARY_UPDATE_SCREENSHOTS") != "1":
        return
    gallery = ROOT / "docs" / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    (gallery / name).write_bytes(thumbnail(shot.read_bytes(), width=640, colours=256))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_deck_opens_offline(site, browser, notebook, tmp_path):
    started = time.perf_counter()
    state = _visit(browser, site / "slides" / f"{notebook.stem}.slides.html")
    kinds = [c.metadata["slideshow"]["slide_type"]
             for c in apply_slide_metadata(nbformat.read(notebook, as_version=4)).cells]
    assert state["slides"] == kinds.count("slide") + kinds.count("subslide")
    _check(state, notebook)
    print(f"\n{notebook.stem}: {state['slides']} slides, {state['images']} images, "
          f"{state['typeset']} equations, {len(state['requests'])} local requests, "
          f"{time.perf_counter() - started:.1f} s")
    if notebook == NOTEBOOKS[0]:
        _save_reduced_screenshot(browser, tmp_path, "deck_title.png")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_page_opens_offline(site, browser, notebook):
    state = _visit(browser, site / "notebooks" / f"{notebook.stem}.html")
    _check(state, notebook)
    assert state["images"] >= 1


def test_gallery_opens_offline(site, browser, tmp_path):
    state = _visit(browser, site / "index.html")
    _check(state, None)
    assert state["images"] == len(NOTEBOOKS)         # one figure per notebook, all decoded
    _save_reduced_screenshot(browser, tmp_path, "site_gallery.png")
