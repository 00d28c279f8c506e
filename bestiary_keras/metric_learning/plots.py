"""Figures of the descriptor chapter (notebooks 15 to 17): pairs, embeddings, histograms, ROC."""

from __future__ import annotations

import numpy as np

from bestiary_keras.metric_learning import evaluation


def _axes(ax, figsize=(5, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_pairs(first, second, same, *, num: int = 8, title: str | None = None,
               cmap: str = "gray"):
    """A grid of pairs: one column per pair, ``first`` above ``second``, labelled same/different.

    Args:
        first, second: images ``(N, H, W)`` or ``(N, H, W, 1)``.
        same: ``(N,)`` labels, 1 = same (class or scene point), 0 = different.
        num: pairs to show (the first ones).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    num = min(num, len(first))
    fig, axes = plt.subplots(2, num, figsize=(1.2 * num, 2.8), squeeze=False)
    for k in range(num):
        for row, images in enumerate((first, second)):
            ax = axes[row, k]
            ax.imshow(np.squeeze(np.asarray(images[k])), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, k].set_title("same" if same[k] else "different", fontsize=9,
                             color="tab:green" if same[k] else "tab:red")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_embedding(points, labels, *, ax=None, title: str | None = None, names=None):
    """A 2-D scatter of descriptors coloured by class (the first two coordinates)."""
    import matplotlib.pyplot as plt

    ax = _axes(ax)
    points = np.asarray(points)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for k, c in enumerate(classes):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=6, color=colours(k % colours.N),
                   label=str(c if names is None else names[c]))
    ax.legend(markerscale=2, fontsize=7, ncol=2, loc="best")
    ax.set_xlabel("descriptor[0]")
    ax.set_ylabel("descriptor[1]")
    if title:
        ax.set_title(title)
    return ax


def plot_distance_histograms(distances, same, *, ax=None, threshold=None, title=None,
                             bins: int = 40):
    """Histograms of the distances of matching and non-matching pairs (and a threshold)."""
    ax = _axes(ax, (5, 3.2))
    distances = np.asarray(distances)
    same = np.asarray(same).astype(bool)
    edges = np.linspace(0, np.quantile(distances, 0.995) * 1.05 + 1e-9, bins + 1)
    ax.hist(distances[same], bins=edges, alpha=0.6, color="tab:green", label="matching (y = 1)")
    ax.hist(distances[~same], bins=edges, alpha=0.6, color="tab:red",
            label="non-matching (y = 0)")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_xlabel("descriptor distance")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_roc(curves: dict, *, ax=None, title: str | None = None, max_fpr: float = 0.3):
    """ROC curves of several descriptors: ``{"name": (distances, labels), ...}``.

    The legend gives each curve's FPR at 95% recall; the x axis stops at ``max_fpr``.
    """
    ax = _axes(ax, (5, 4))
    for name, (distances, labels) in curves.items():
        fpr, tpr, _ = evaluation.roc_curve(distances, labels)
        fpr95 = evaluation.fpr_at_recall(distances, labels)
        ax.plot(fpr, tpr, label=f"{name} (FPR95 {fpr95:.3f})")
    ax.axhline(0.95, color="grey", ls=":", lw=1)
    ax.set_xlim(0, max_fpr)
    ax.set_ylim(0.5, 1.0)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (recall)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    return ax
