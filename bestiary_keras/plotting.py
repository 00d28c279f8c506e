"""Figures shared by the notebooks: image grids with boxes, masks and semantic maps.

Only figure-level matplotlib calls are used (``plt.subplots``), so everything works under the
non-interactive Agg backend; functions return the figure and never call ``plt.show``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "class_colors", "draw_boxes", "GT_COLOR", "PRED_COLOR", "show_scenes", "show_semantic",
]

GT_COLOR = "#00e676"
PRED_COLOR = "#ff3d00"


def _as_display(image) -> np.ndarray:
    """uint8 or float (in [0, 1], or [0, 255] when larger) image -> float in [0, 1] for imshow."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if image.size and image.max() > 1.0 + 1e-3:
        image = image / 255.0
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image, 0.0, 1.0)


def class_colors(num_classes: int) -> np.ndarray:
    """One distinct RGBA colour per class (tab10/tab20), shape (num_classes, 4)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(num_classes)])


def draw_boxes(ax, boxes, labels=None, class_names=None, scores=None, color=GT_COLOR,
               linewidth=1.5, fontsize=7):
    """Draws ``[x_min, y_min, x_max, y_max]`` pixel boxes (exclusive end) on ``ax``.

    Rows with a negative label, or all-zero boxes when ``labels`` is None, are padding and are
    skipped. Each box gets its class name (and score) as a caption.

    Args:
        ax: a matplotlib Axes showing the image with ``imshow`` (pixel centres at integers).
        boxes: (M, 4) array.
        labels: optional (M,) int class indices.
        class_names: optional names for the labels.
        scores: optional (M,) confidences, shown with two decimals.
        color: edge and caption colour.
    """
    from matplotlib.patches import Rectangle

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = None if labels is None else np.asarray(labels).reshape(-1)
    scores = None if scores is None else np.asarray(scores, np.float32).reshape(-1)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if labels is not None and labels[i] < 0:
            continue
        if labels is None and not np.any(boxes[i]):
            continue
        # pixel i covers [i - 0.5, i + 0.5] in imshow coordinates
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                               edgecolor=color, linewidth=linewidth))
        caption = []
        if labels is not None:
            k = int(labels[i])
            caption.append(class_names[k] if class_names is not None and k < len(class_names)
                           else str(k))
        if scores is not None:
            caption.append(f"{scores[i]:.2f}")
        if caption:
            ax.text(x0 - 0.5, y0 - 1.0, " ".join(caption), color="black", fontsize=fontsize,
                    va="bottom", ha="left", clip_on=True,
                    bbox=dict(facecolor=color, edgecolor="none", alpha=0.8, pad=0.5))


def _grid(n, ncols, aspect=1.0, cell=1.8):
    """A grid of ``n`` axes; ``aspect`` is width / height of one image."""
    import matplotlib.pyplot as plt

    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    cell_w, cell_h = cell * min(aspect, 2.5) ** 0.5, cell / min(aspect, 2.5) ** 0.5
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_w * ncols, cell_h * nrows + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_scenes(images, boxes=None, labels=None, class_names=None, masks=None, scores=None,
                ncols=8, title=None, color=GT_COLOR):
    """A grid of images with boxes (class name, optional score) and translucent masks.

    Args:
        images: (N, H, W, 3) uint8 or float in [0, 1] (or (N, H, W) grey).
        boxes: optional (N, M, 4) or (N, 4) pixel boxes ``[x_min, y_min, x_max, y_max]``.
        labels: optional (N, M) or (N,) class indices (-1 = padding).
        class_names: names for the labels.
        masks: optional (N, M, H, W) or (N, H, W) boolean instance masks.
        scores: optional (N, M) or (N,) confidences, shown next to the class name.
        ncols: images per row.
        title: figure title.
        color: box colour (e.g. ``PRED_COLOR`` for predictions).

    Returns:
        The matplotlib figure (one axes per grid cell).
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("show_scenes got no images (images has length 0).")

    def per_image(value, i, ndim_single):
        if value is None:
            return None
        v = np.asarray(value)[i]
        return v[None] if v.ndim == ndim_single - 1 else v

    fig, axes = _grid(n, ncols, aspect=images.shape[2] / images.shape[1])
    num_classes = len(class_names) if class_names is not None else 10
    palette = class_colors(max(num_classes, 1))
    for i, ax in zip(range(n), axes):
        image = _as_display(images[i])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        lab = per_image(labels, i, 1)
        if masks is not None:
            m = per_image(masks, i, 3).astype(bool)
            overlay = np.zeros(m.shape[1:] + (4,), np.float32)
            for j in range(len(m)):
                if lab is not None and j < len(lab) and lab[j] < 0:
                    continue
                k = int(lab[j]) if lab is not None and j < len(lab) else j
                overlay[m[j]] = palette[k % len(palette)] * [1, 1, 1, 0] + [0, 0, 0, 0.45]
            ax.imshow(overlay, interpolation="nearest")
        if boxes is not None:
            draw_boxes(ax, per_image(boxes, i, 2), lab, class_names, per_image(scores, i, 1),
                       color=color)
        elif lab is not None and class_names is not None and len(lab) == 1 and lab[0] >= 0:
            ax.set_title(class_names[int(lab[0])], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_semantic(images, semantic, class_names, ncols=4, title=None):
    """Images next to their semantic maps (0 = background, ``k + 1`` = class ``k``).

    Returns:
        The matplotlib figure (two axes per image: photo, then coloured map with a legend).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    images, semantic = np.asarray(images), np.asarray(semantic)
    n = len(images)
    palette = np.concatenate([[[0, 0, 0, 1]], class_colors(len(class_names))])
    cmap = ListedColormap(palette)
    fig, axes = _grid(2 * n, 2 * max(1, ncols // 2), aspect=images.shape[2] / images.shape[1])
    axes = list(axes)
    for i in range(n):
        axes[2 * i].imshow(_as_display(images[i]), interpolation="nearest")
        axes[2 * i + 1].imshow(semantic[i], cmap=cmap, vmin=-0.5, vmax=len(palette) - 0.5,
                               interpolation="nearest")
    handles = [Patch(color=palette[k + 1], label=name) for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
