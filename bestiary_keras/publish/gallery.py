"""What the gallery shows of each notebook: its title, one figure, its README row.

- ``representative_figure``: the first PNG of a cell tagged ``gallery``, else the notebook's
  last PNG output (usually its predictions on held-out data), from the stored outputs;
- ``thumbnail``: that figure about 240 px wide, palette PNG (a few tens of kB);
- ``readme_rows``: the README's notebook table (``ci`` result, ``ci`` time, ``default``), the
  one place where those numbers are kept, so the site never holds a second copy;
- ``write_thumbnails(notebooks, out_dir)``: ``docs/gallery/NN_name.png`` for the README.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
from PIL import Image

__all__ = ["README_COLUMNS", "notebook_title", "readme_rows", "representative_figure",
           "thumbnail", "write_thumbnails"]

README_COLUMNS = ("nn", "notebook", "section", "trains", "ci_result", "ci_time", "default")

_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def notebook_title(notebook) -> str:
    """The first heading of the first markdown cell, without its ``#`` marks."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def representative_figure(notebook) -> bytes | None:
    """PNG bytes of the notebook's gallery figure (see the module docstring), or ``None``."""
    tagged, last = None, None
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png is None:
                continue
            last = png
            if tagged is None and "gallery" in cell.metadata.get("tags", []):
                tagged = png
    chosen = tagged if tagged is not None else last
    if chosen is None:
        return None
    return base64.b64decode("".join(chosen) if isinstance(chosen, list) else chosen)


def thumbnail(png: bytes, width: int = 240, colours: int = 128) -> bytes:
    """``png`` scaled to ``width`` pixels (aspect kept), as a palette PNG of ``colours`` colours."""
    if width < 16:
        raise ValueError(f"width={width} is too small for a readable thumbnail: use 16 or more "
                         "(the README's gallery uses 240).")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    height = max(1, round(image.height * width / image.width))
    small = image.resize((width, height), Image.Resampling.LANCZOS)
    small = small.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def readme_rows(readme: Path) -> dict[str, dict[str, str]]:
    """The README's notebook table as ``{"01": {"notebook": ..., "ci_result": ..., ...}}``.

    Markdown links keep their text; backticks are dropped. Raises ``ValueError`` when the
    README has no such table (its header starts with ``| NN | notebook |``).
    """
    rows, in_table = {}, False
    for line in Path(readme).read_text(encoding="utf-8").splitlines():
        if line.startswith("| NN | notebook |"):
            in_table = True
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            break
        cells = [_LINK.sub(r"\1", c).replace("`", "").strip() for c in line.strip("|").split("|")]
        if re.fullmatch(r"\d\d", cells[0]) and len(cells) == len(README_COLUMNS):
            rows[cells[0]] = dict(zip(README_COLUMNS, cells))
    if not rows:
        raise ValueError(f"readme={str(readme)!r} has no notebook table (a header starting "
                         "'| NN | notebook |'): pass the project's README.md.")
    return rows


def write_thumbnails(notebooks: list[Path], out_dir: Path, width: int = 240) -> list[Path]:
    """Writes ``out_dir/NN_name.png`` (the gallery figure, ``width`` px) per notebook that has one."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        figure = representative_figure(nbformat.read(path, as_version=4))
        if figure is not None:
            target = out_dir / f"{Path(path).stem}.png"
            target.write_bytes(thumbnail(figure, width))
            written.append(target)
    return written
