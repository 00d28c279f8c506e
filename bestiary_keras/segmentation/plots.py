"""Figures of the segmentation notebooks that only they draw: the overlap-tile layout.

Grids of images, label overlays, legends and colour bars come from ``bestiary_keras.figures``
(``show_scenes``, ``overlay``, ``label_colors``).
"""

from __future__ import annotations

__all__ = ["draw_tiles"]


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
