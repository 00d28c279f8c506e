"""Figures of the segmentation notebooks: image and label grids, overlays, tiles."""

from __future__ import annotations

import numpy as np

__all__ = [
    "draw_tiles", "label_colours", "overlay", "show_grid",
]


def label_colours(num_labels: int, seed: int = 0) -> np.ndarray:
    """(num_labels, 3) RGB colours in [0, 1]: black for label 0, random bright hues otherwise."""
    import matplotlib.colors as mcolors

    rng = np.random.default_rng(seed)
    hsv = np.stack([rng.random(num_labels), np.full(num_labels, 0.75),
                    np.full(num_labels, 0.95)], -1)
    colours = mcolors.hsv_to_rgb(hsv)
    colours[0] = 0.0
    return colours


def overlay(image, labels, *, alpha: float = 0.45, colours=None) -> np.ndarray:
    """An RGB picture of a grey or colour ``image`` with integer ``labels`` tinted on top."""
    image = np.asarray(image, np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.max() > 1.0:
        image = image / 255.0
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image
    labels = np.asarray(labels)
    if colours is None:
        colours = label_colours(int(labels.max()) + 1)
    tint = colours[labels]
    mask = (labels > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * tint, rgb).clip(0, 1)


def show_grid(rows, *, titles=None, row_labels=None, cmaps=None, size: float = 2.0,
              suptitle: str | None = None):
    """A grid of images: ``rows`` is a list of lists (or arrays) of 2-D/RGB images.

    Args:
        rows: one sequence of images per row.
        titles: titles of the columns of the first row (or ``None``).
        row_labels: one label per row, written on the left.
        cmaps: one colour map per row (``"gray"`` for images, ``None`` for RGB, ``"viridis"``
            for maps, ``"tab10"`` for small label sets).
        size: inches per panel.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    nrows, ncols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for r, row in enumerate(rows):
        cmap = cmaps[r] if cmaps else "gray"
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            picture = np.asarray(row[c])
            if picture.ndim == 3 and picture.shape[-1] == 1:
                picture = picture[..., 0]
            kwargs = {"interpolation": "nearest"}
            if picture.ndim == 2:
                kwargs["cmap"] = cmap
                if cmap == "gray" and picture.dtype.kind == "f" and picture.max() <= 1.0:
                    kwargs.update(vmin=0.0, vmax=1.0)
            ax.imshow(picture, **kwargs)
            if titles is not None and r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=9)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def draw_tiles(ax, layout, *, max_tiles: int | None = None, colours=("tab:orange", "tab:cyan")):
    """Draws a ``tiling.TileLayout`` on an axis showing the *mirror-padded* image.

    Solid squares are the output regions (side by side), dashed ones the input regions of the
    first tiles (each reaches ``margin`` pixels into its neighbours and into the mirrored border).
    """
    from matplotlib.patches import Rectangle

    top, left = layout.padding[0][0], layout.padding[1][0]
    for i, (y, x) in enumerate(layout.offsets):
        colour = colours[i % len(colours)]
        ax.add_patch(Rectangle((x + left - 0.5, y + top - 0.5), layout.output_size,
                               layout.output_size, fill=False, lw=1.5, ec=colour))
        if max_tiles is None or i < max_tiles:
            ax.add_patch(Rectangle((x + left - layout.margin - 0.5, y + top - layout.margin - 0.5),
                                   layout.input_size, layout.input_size, fill=False, lw=1.2,
                                   ls="--", ec=colour))
    height, width = layout.image_shape
    ax.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False, lw=2, ec="white"))
    return ax
