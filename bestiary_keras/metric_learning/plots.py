"""Figures of the descriptor chapter (notebooks 15 to 17): pairs, embeddings, histograms, ROC.

Built on ``bestiary_keras.figures``: its palette (``class_colors``: class ``k`` has one colour in
every chapter), its image grid (``show_scenes``) and its font sizes.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.figures import (FONT_SIZE, GT_COLOR, MAX_WIDTH, PRED_COLOR, TITLE_SIZE,
                                    class_colors, show_scenes)
from bestiary_keras.metric_learning import evaluation

__all__ = [
    "plot_descriptor_curves_3d", "plot_distance_histograms", "plot_embedding", "plot_roc",
    "show_images", "show_matches", "show_pairs", "show_score_maps",
]


def _axes(ax, figsize=(5, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_pairs(first, second, same, *, num: int = 8, title: str | None = None):
    """A grid of pairs (``figures.show_scenes``): one column per pair, ``first`` above
    ``second``, titled same (green) or different (red).

    Args:
        first, second: grey images ``(N, H, W)`` or ``(N, H, W, 1)`` in [0, 1].
        same: ``(N,)`` labels, 1 = same (class or scene point), 0 = different.
        num: pairs to show (the first ones).

    Returns:
        The matplotlib figure.
    """
    num = min(num, len(first))
    titles = ["same" if same[k] else "different" for k in range(num)]
    fig = show_scenes([list(first[:num]), list(second[:num])], titles=titles,
                      row_labels=["first", "second"], title=title, cell=1.2)
    for k, ax in enumerate(fig.axes[:num]):
        ax.title.set_color(GT_COLOR if same[k] else PRED_COLOR)
    return fig


def plot_embedding(points, labels, *, ax=None, title: str | None = None, names=None):
    """A 2-D scatter of descriptors coloured by class (the first two coordinates), in the
    collection's class colours (``figures.class_colors``)."""
    ax = _axes(ax)
    points = np.asarray(points)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    colours = class_colors(len(classes))
    for k, c in enumerate(classes):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=6, color=colours[k],
                   label=str(c if names is None else names[c]))
    ax.legend(markerscale=2, fontsize=FONT_SIZE - 1, ncol=2, loc="best")
    ax.set_xlabel("descriptor[0]", fontsize=FONT_SIZE + 1)
    ax.set_ylabel("descriptor[1]", fontsize=FONT_SIZE + 1)
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    return ax


def plot_distance_histograms(distances, same, *, ax=None, threshold=None, title=None,
                             bins: int = 40):
    """Histograms of the distances of matching and non-matching pairs (and a threshold)."""
    ax = _axes(ax, (5, 3.2))
    distances = np.asarray(distances)
    same = np.asarray(same).astype(bool)
    edges = np.linspace(0, np.quantile(distances, 0.995) * 1.05 + 1e-9, bins + 1)
    ax.hist(distances[same], bins=edges, alpha=0.6, color=GT_COLOR, label="matching (y = 1)")
    ax.hist(distances[~same], bins=edges, alpha=0.6, color=PRED_COLOR,
            label="non-matching (y = 0)")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_xlabel("descriptor distance", fontsize=FONT_SIZE + 1)
    ax.set_ylabel("pairs", fontsize=FONT_SIZE + 1)
    ax.legend(fontsize=FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    return ax


def plot_roc(curves: dict, *, ax=None, title: str | None = None, max_fpr: float = 0.3):
    """ROC curves of several descriptors: ``{"name": (labels, distances), ...}``.

    The legend gives each curve's FPR at 95% recall; the x axis stops at ``max_fpr``.
    """
    ax = _axes(ax, (5, 4))
    for name, (labels, distances) in curves.items():
        fpr, tpr, _ = evaluation.roc_curve(labels, distances)
        fpr95 = evaluation.fpr_at_recall(labels, distances)
        ax.plot(fpr, tpr, label=f"{name} (FPR95 {fpr95:.3f})")
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.set_xlim(0, max_fpr)
    ax.set_ylim(0.5, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT_SIZE, loc="lower right")
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    return ax


def show_images(images, titles=None, *, ncols: int = 12, title: str | None = None,
                size: float = 1.1, gap: int = 2, dpi: int | None = None):
    """Grey images in [0, 1] as one mosaic (one ``imshow``: small files, fast), each tile with an
    optional title above it, in ``FONT_SIZE`` points. The figure is at most
    ``figures.MAX_WIDTH`` inches wide (so the notebook shows it, and its fonts, at about their
    size) and each tile's title band is tall enough for its font. Returns the figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    n, h, w = images.shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    size = min(size, MAX_WIDTH / ncols)  # inches per tile
    cell_w = w + gap
    pixels_per_point = cell_w / (size * 72.0)
    label_h = int(np.ceil(1.6 * FONT_SIZE * pixels_per_point)) if titles is not None else 0
    cell_h = h + gap + label_h
    mosaic = np.ones((nrows * cell_h, ncols * cell_w), np.float32)
    for k in range(n):
        r, c = divmod(k, ncols)
        y, x = r * cell_h + label_h, c * cell_w
        mosaic[y:y + h, x:x + w] = images[k]
    fig, ax = plt.subplots(figsize=(size * ncols, size * nrows * cell_h / cell_w + 0.4), dpi=dpi)
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if titles is not None:
        for k in range(n):
            r, c = divmod(k, ncols)
            ax.text(c * cell_w + w / 2, r * cell_h + label_h - 1, titles[k], fontsize=FONT_SIZE,
                    ha="center", va="bottom")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    fig.tight_layout()
    return fig


def show_matches(image_1, image_2, matches: dict, *, width: float = 11.0):
    """Mutual nearest-neighbour matches of several pipelines on one image pair, one row each:
    the two views side by side, a green line per correct match, a faint red one per wrong one.

    Args:
        image_1, image_2: grey images ``(H, W)`` of the same size.
        matches: ``{name: (points_1, points_2, i, j, correct)}`` as in
            ``lift_pipeline.evaluate_pipelines``' ``"_matches"`` entry.
        width: figure width in inches (at most ``figures.MAX_WIDTH``).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    height, image_width = np.asarray(image_1).shape[:2]
    width = min(width, MAX_WIDTH)
    row_h = width * height / (2 * image_width) + 0.45
    fig, axes = plt.subplots(len(matches), 1, figsize=(width, row_h * len(matches)),
                             squeeze=False)
    for ax, (name, (p1, p2, i, j, correct)) in zip(axes[:, 0], matches.items()):
        correct = np.asarray(correct, bool)
        ax.imshow(np.hstack([image_1, image_2]), cmap="gray")
        for a, b, ok in zip(np.asarray(p1)[i], np.asarray(p2)[j], correct):
            ax.plot([a[0], b[0] + image_width], [a[1], b[1]], "-", lw=0.7,
                    color=GT_COLOR if ok else PRED_COLOR, alpha=0.9 if ok else 0.35)
        ax.set_title(f"{name}: {int(correct.sum())} correct of {len(correct)} mutual matches",
                     fontsize=TITLE_SIZE + 1)
        ax.axis("off")
    fig.legend(handles=[Line2D([], [], color=GT_COLOR, lw=1.5, label="correct (within 5 px)"),
                        Line2D([], [], color=PRED_COLOR, lw=1.5, alpha=0.5, label="wrong")],
               loc="lower center", ncol=2, fontsize=FONT_SIZE + 1, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def show_score_maps(image, maps: dict, points: dict | None = None, *, width: float = 11.0):
    """An image and detector score maps next to it, each map with its colour bar and, where
    given, its strongest maxima as cyan crosses.

    Args:
        image: grey image ``(H, W)``.
        maps: ``{name: (H, W) score map}``.
        points: ``{name: (K, 2) x, y}`` drawn on the map of that name.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    width = min(width, MAX_WIDTH)
    panels = 1 + len(maps)
    fig, axes = plt.subplots(1, panels, figsize=(width, width / panels + 0.5),
                             layout="constrained")
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("test image", fontsize=TITLE_SIZE + 1)
    for ax, (name, score) in zip(axes[1:], maps.items()):
        shown = ax.imshow(score, cmap="magma")
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label("detector score", fontsize=FONT_SIZE)
        bar.ax.tick_params(labelsize=FONT_SIZE)
        if points and name in points:
            ax.plot(points[name][:, 0], points[name][:, 1], "c+", ms=7, mew=1.2,
                    label=f"{len(points[name])} strongest maxima")
            ax.legend(loc="lower right", fontsize=FONT_SIZE, framealpha=0.8)
        ax.set_title(name, fontsize=TITLE_SIZE + 1)
    for ax in axes:
        ax.axis("off")
    return fig


def plot_descriptor_curves_3d(template_desc, template_object, template_azimuth, names, *,
                              query_desc=None, query_object=None, ax=None, title=None):
    """3-D descriptors of templates, one closed curve per object in pose order (like the
    slide's "3-dim descriptors for 3 objects"), with test queries as dots of the same colour."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig = plt.figure(figsize=(6, 5.5))
        ax = fig.add_subplot(projection="3d")
    colours = class_colors(len(names))
    d = np.asarray(template_desc)
    if d.shape[1] != 3:
        raise ValueError(f"template_desc must be 3-dimensional, got shape {d.shape}.")
    for o, name in enumerate(names):
        sel = np.flatnonzero(np.asarray(template_object) == o)
        sel = sel[np.argsort(np.asarray(template_azimuth)[sel])]
        loop = np.r_[sel, sel[:1]]
        ax.plot(d[loop, 0], d[loop, 1], d[loop, 2], "-o", ms=2.5, lw=1.2, color=colours[o],
                label=f"{name} templates")
        if query_desc is not None:
            q = np.asarray(query_desc)[np.asarray(query_object) == o]
            ax.scatter(q[:, 0], q[:, 1], q[:, 2], s=16, alpha=0.75, color=colours[o],
                       edgecolors="black", linewidths=0.3, depthshade=False,
                       label=f"{name} test views")
    ax.set_xlabel("f[0]", fontsize=FONT_SIZE + 1)
    ax.set_ylabel("f[1]", fontsize=FONT_SIZE + 1)
    ax.set_zlabel("f[2]", fontsize=FONT_SIZE + 1)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.legend(fontsize=FONT_SIZE, ncol=2 if query_desc is not None else 1, loc="upper left")
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    return ax
