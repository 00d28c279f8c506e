"""Figures specific to the detection chapter (the shared palette, box drawing and image grids
are in ``bestiary_keras.figures``).

- ``show_grid``: one image with YOLO's ``S x S`` grid, the cells responsible for the objects, or
  every cell coloured by its most likely class (the YOLO paper's Fig. 2, notebook 06).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures, geometry

__all__ = ["show_grid"]


def show_grid(image, grid_size: int, *, boxes=None, labels=None, class_names=None,
              class_map=None, ax=None, title: str | None = None):
    """One image with YOLO's ``S x S`` grid drawn on it (the paper's Fig. 2).

    With ``boxes`` and ``labels`` (ground truth), each object's box, its centre and the cell
    responsible for it (shaded) are shown. With ``class_map`` (``S x S`` class indices, e.g.
    from ``class_probability_map``; -1 leaves a cell uncoloured) every cell is coloured by its
    most likely class.

    Returns:
        The matplotlib axis.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    image = np.asarray(image)
    size = image.shape[0]
    cell = size / grid_size
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    shown = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 or image.max() > 1 else 1.0)
    ax.imshow(np.clip(shown, 0.0, 1.0), interpolation="nearest")
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    palette = figures.class_colors(max(len(class_names or ()), 1) if class_names else 10)
    if class_map is not None:
        class_map = np.asarray(class_map)
        overlay = palette[np.maximum(class_map, 0) % len(palette)].copy()
        overlay[..., 3] = np.where(class_map >= 0, 0.45, 0.0)  # -1: no colour
        ax.imshow(overlay, extent=(-0.5, size - 0.5, size - 0.5, -0.5), interpolation="nearest")
        if class_names:
            ax.legend(handles=[Patch(color=palette[k], label=n) for k, n in enumerate(class_names)],
                      loc="lower center", bbox_to_anchor=(0.5, -0.22), ncol=len(class_names),
                      fontsize=7, frameon=False)
    for k in range(1, grid_size):
        ax.axhline(k * cell - 0.5, color="white", linewidth=0.6, alpha=0.8)
        ax.axvline(k * cell - 0.5, color="white", linewidth=0.6, alpha=0.8)
    if boxes is not None:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        labels = np.zeros(len(boxes), int) if labels is None else np.asarray(labels).reshape(-1)
        keep = (labels >= 0) & (geometry.box_area(boxes) > 0)
        boxes, labels = boxes[keep], labels[keep]
        centres = geometry.xyxy_to_cxcywh(boxes)[:, :2]
        for (cx, cy), label in zip(centres, labels):
            col, row = min(int(cx // cell), grid_size - 1), min(int(cy // cell), grid_size - 1)
            ax.add_patch(Rectangle((col * cell - 0.5, row * cell - 0.5), cell, cell,
                                   color=palette[label % len(palette)], alpha=0.5))
            ax.plot(cx - 0.5, cy - 0.5, "o", color="white", markersize=3)
        figures.draw_boxes(ax, boxes, labels, class_names)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax
