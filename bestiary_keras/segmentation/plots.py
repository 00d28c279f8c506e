"""Figures of the segmentation notebooks that only they draw: the overlap-tile layout (08) and
label maps compared row by row with a class legend (09, 10).

Grids of images, label overlays, legends and colour bars come from ``bestiary_keras.figures``
(``show_scenes``, ``overlay``, ``label_colors``, ``label_legend``, ``class_legend``).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures

__all__ = ["draw_tiles", "segmentation_legend", "show_segmentations"]

BACKGROUND_SWATCH = (1.0, 1.0, 1.0, 0.0)
"""The legend swatch of label 0: ``figures.overlay`` leaves the background untinted."""


def segmentation_legend(class_names) -> dict:
    """Legend entries ``{name: colour}`` of label maps drawn by ``figures.overlay``.

    Labels 1, 2, ... in their ``figures.label_colors`` (``figures.label_legend``), preceded by
    label 0, named ``"<name> (no tint)"`` with an empty swatch, because ``overlay`` leaves it
    untinted: a reader sees every class of the maps, the background included.
    """
    names = list(class_names)
    if len(names) < 2:
        raise ValueError(f"class_names needs the background and at least one class, got {names!r}.")
    return {f"{names[0]} (no tint)": BACKGROUND_SWATCH, **figures.label_legend(names)}


def show_segmentations(images, label_maps: dict, class_names, *, alpha: float = 0.7,
                       titles=None, title: str | None = None, cell: float = 1.5):
    """Images and several label maps of them, one row each, with the class legend below.

    Args:
        images: (N, H, W, 3) images (``figures.as_display`` conventions).
        label_maps: row label to (N, H, W) integer label maps, e.g.
            ``{"truth": y, "SegNet": predicted}``; drawn with ``figures.overlay``.
        class_names: the name of each label, label 0 the background.
        alpha: opacity of the class colours.
        titles: optional captions of the first row's panels.
        title: figure title.
        cell: inches per panel.

    Returns:
        The matplotlib figure (``figures.show_scenes``).
    """
    images = list(images)
    colors = figures.label_colors(len(list(class_names)))
    rows = [images]
    for name, maps in label_maps.items():
        if len(maps) < len(images):
            raise ValueError(f"label_maps[{name!r}] has {len(maps)} maps for {len(images)} images.")
        rows.append([figures.overlay(x, np.asarray(m), alpha=alpha, colors=colors)
                     for x, m in zip(images, maps)])
    return figures.show_scenes(rows, row_labels=["image"] + list(label_maps), titles=titles,
                               title=title, legend=segmentation_legend(class_names), cell=cell)


def draw_tiles(ax, layout, *, max_tiles: int | None = None, colours=("tab:orange", "tab:cyan")):
    """Draws a ``tiling.TileLayout`` on an axis showing the *mirror-padded* image.

    Solid squares are the output regions (side by side), dashed ones the input regions of the
    first tiles (each reaches ``margin`` pixels into its neighbours and into the mirrored border).

    Returns:
        ``ax``.
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
