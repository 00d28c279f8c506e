"""Figures specific to the detection chapter (the shared palette, box drawing and image grids
are in ``bestiary_keras.figures``).

- ``show_grid``: one image with YOLO's ``S x S`` grid, the cells responsible for the objects, or
  every cell coloured by its most likely class (the YOLO paper's Fig. 2, notebook 06).
- ``show_detections``: detections and the ground truth in the same panels, with a legend that
  names the score (notebooks 03-05).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures, geometry

__all__ = ["show_detections", "show_grid"]


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


def show_detections(images, gt_boxes, gt_labels, detections, class_names, *, min_score=0.5,
                    score_name: str = "score", title: str | None = None, ncols: int = 8):
    """Detections next to the ground truth, in the same panels (notebooks 03-05).

    The ground-truth boxes are drawn thin in ``figures.GT_COLOR`` without captions, the
    detections scoring at least ``min_score`` in ``figures.PRED_COLOR`` with their class and
    score; a legend below the grid says which is which and what the number is (``score_name``,
    e.g. ``"SVM margin"`` for R-CNN's uncalibrated SVM outputs).

    Args:
        images: (N, H, W, 3); gt_boxes: (N, M, 4); gt_labels: (N, M) (-1 = padding).
        detections: per image ``(boxes, scores, classes)``.
        class_names: names of the classes.
        min_score: detections below it are not drawn.

    Returns:
        The matplotlib figure.
    """
    from matplotlib.lines import Line2D

    from bestiary_keras.detection import evaluation

    if len(images) != len(detections):
        raise ValueError(f"images and detections must have the same length, got {len(images)} "
                         f"and {len(detections)}.")
    boxes, labels, scores = evaluation.pad_detections(detections, min_score=min_score)
    fig = figures.show_scenes(images, boxes, labels, class_names, scores=scores,
                              color=figures.PRED_COLOR, title=title, ncols=ncols)
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(len(images), -1, 4)
    gt_labels = np.asarray(gt_labels).reshape(len(images), -1)
    for ax, b, lab in zip(fig.axes, gt_boxes, gt_labels):
        figures.draw_boxes(ax, b[lab >= 0], color=figures.GT_COLOR, linewidth=0.8)
    handles = [Line2D([], [], color=figures.GT_COLOR, linewidth=1.5, label="ground truth"),
               Line2D([], [], color=figures.PRED_COLOR, linewidth=1.5,
                      label=f"detection: class and {score_name} (>= {min_score:g})")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=figures.FONT_SIZE,
               frameon=False)
    return fig
