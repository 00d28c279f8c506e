"""Figures of notebook 14: snippets with depth, predictions, view synthesis, 3-D points.

Every function returns the matplotlib figure (never calls ``plt.show``); depth maps carry a
colour bar in the same units as the ground truth (predictions are median-scaled first).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures

__all__ = [
    "median_scaled",
    "plot_point_cloud",
    "plot_trajectories",
    "show_depth_predictions",
    "show_snippets",
    "show_view_synthesis",
]


def median_scaled(y_true, y_pred) -> np.ndarray:
    """``y_pred`` times ``median(y_true) / median(y_pred)`` per image (the metrics' scaling)."""
    gt, pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    axes = tuple(range(1, gt.ndim)) if gt.ndim == 3 else None
    ratio = np.nanmedian(gt, axis=axes, keepdims=True) / np.median(pred, axis=axes, keepdims=True)
    return pred * ratio


def _depth_image(ax, fig, depth, vmax, title, cmap="magma_r"):
    im = ax.imshow(depth, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=figures.TITLE_SIZE)
    ax.axis("off")
    return im


def show_snippets(frames, depth, num: int = 4, title: str | None = None):
    """Rows of snippets: frames t-1, t (target), t+1 and the target's true depth."""
    import matplotlib.pyplot as plt

    frames, depth = np.asarray(frames), np.asarray(depth)
    num = min(num, len(frames))
    middle = frames.shape[1] // 2
    vmax = float(np.percentile(depth[:num, middle], 99))
    fig, axes = plt.subplots(num, 4, figsize=(8.5, 1.75 * num + 0.4), squeeze=False)
    for i in range(num):
        for f in range(frames.shape[1]):
            axes[i, f].imshow(figures.as_display(frames[i, f]), interpolation="nearest")
            axes[i, f].set_title(("t-1", "t (target)", "t+1")[f] if i == 0 else "",
                                 fontsize=figures.TITLE_SIZE)
            axes[i, f].axis("off")
        im = _depth_image(axes[i, 3], fig, depth[i, middle], vmax,
                          "true depth of t" if i == 0 else "")
    figures.add_colorbar(im, axes[:, 3], "depth", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def show_depth_predictions(images, y_true, predictions: dict, num: int = 4,
                           title: str | None = None):
    """Image, true depth, each prediction (median-scaled), and the last one's error map.

    Args:
        images: (N, H, W, 3) targets.
        y_true: (N, H, W) true depth.
        predictions: ``{label: (N, H, W) depth}`` (e.g. the constant baseline and the network).
    """
    import matplotlib.pyplot as plt

    num = min(num, len(images))
    labels = list(predictions)
    cols = 3 + len(labels)
    vmax = float(np.percentile(np.asarray(y_true)[:num], 99))
    fig, axes = plt.subplots(num, cols, figsize=(2.1 * cols + 1.2, 1.7 * num + 0.5),
                             squeeze=False)
    scaled = {k: median_scaled(y_true, v) for k, v in predictions.items()}
    for i in range(num):
        axes[i, 0].imshow(figures.as_display(images[i]), interpolation="nearest")
        axes[i, 0].set_title("target" if i == 0 else "", fontsize=figures.TITLE_SIZE)
        axes[i, 0].axis("off")
        im = _depth_image(axes[i, 1], fig, y_true[i], vmax, "true depth" if i == 0 else "")
        for j, label in enumerate(labels):
            _depth_image(axes[i, 2 + j], fig, scaled[label][i], vmax, label if i == 0 else "")
        rel = np.abs(scaled[labels[-1]][i] - y_true[i]) / y_true[i]
        err = axes[i, -1].imshow(rel, cmap="viridis", vmin=0, vmax=0.5, interpolation="nearest")
        axes[i, -1].set_title((f"{labels[-1]}: " if i == 0 else "")
                              + f"abs-rel {rel.mean():.3f}", fontsize=figures.TITLE_SIZE)
        axes[i, -1].axis("off")
    figures.add_colorbar(im, axes[:, 1:-1], "depth (median-scaled)", shrink=0.8)
    figures.add_colorbar(err, axes[:, -1], "relative error", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def show_view_synthesis(target, source, synthesised, valid, title: str | None = None):
    """One row: source, synthesised target (out-of-view pixels hatched grey), real target,
    and the photometric error map ``|I_t - I_hat|`` (mean over channels)."""
    import matplotlib.pyplot as plt

    valid = np.asarray(valid).reshape(np.asarray(target).shape[:2]) > 0
    shown = np.array(synthesised, np.float32)
    shown[~valid] = 0.5
    error = np.abs(np.asarray(synthesised, np.float32) - np.asarray(target, np.float32)).mean(-1)
    error[~valid] = np.nan
    fig, axes = plt.subplots(1, 4, figsize=(11, 2.6))
    for ax, image, name in zip(axes, (source, shown, target),
                               ("source I_s", "synthesised I_hat (grey: out of view)",
                                "real target I_t")):
        ax.imshow(figures.as_display(image), interpolation="nearest")
        ax.set_title(name, fontsize=figures.TITLE_SIZE)
        ax.axis("off")
    im = axes[3].imshow(error, cmap="inferno", vmin=0, vmax=0.3, interpolation="nearest")
    axes[3].set_title(f"|I_t - I_hat|, mean {np.nanmean(error):.3f}", fontsize=figures.TITLE_SIZE)
    axes[3].axis("off")
    figures.add_colorbar(im, axes[3], "photometric error", shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def plot_point_cloud(image, depth, intrinsics, *, ax=None, title: str | None = None,
                     stride: int = 1, max_depth: float | None = None):
    """The "3D reconstruction": every pixel back-projected with its depth, in its colour.

    Args:
        image: (H, W, 3) uint8 or float.
        depth: (H, W) depth.
        intrinsics: ``K``.
        stride: keep every ``stride``-th pixel in each direction.
        max_depth: drop points farther than this.
    """
    import matplotlib.pyplot as plt

    image = figures.as_display(image)
    h, w = depth.shape
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = np.asarray(depth)[v, u]
    rays = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(intrinsics).T
    points = rays * z.reshape(-1, 1)
    colours = image[v, u].reshape(-1, 3)
    keep = np.isfinite(points).all(1) & (z.reshape(-1) > 0)
    if max_depth is not None:
        keep &= z.reshape(-1) <= max_depth
    if ax is None:
        fig = plt.figure(figsize=(5, 4))
        ax = fig.add_subplot(projection="3d")
    # camera frame: x right, y down, z forward; draw z as depth, -y as up
    ax.scatter(points[keep, 0], points[keep, 2], -points[keep, 1], c=colours[keep],
               s=2, depthshade=False)
    ax.set_xlabel("x (right)")
    ax.set_ylabel("z (forward)")
    ax.set_zlabel("-y (up)")
    ax.view_init(elev=20, azim=-60)
    if title:
        ax.set_title(title, fontsize=figures.TITLE_SIZE)
    return ax.figure


def plot_trajectories(gt_positions, predicted: dict, num: int = 6, title: str | None = None):
    """Top view (x, z) of snippets' camera centres: truth and scale-aligned predictions.

    Args:
        gt_positions: (N, F, 3) true centres in each target's frame.
        predicted: ``{label: (N, F, 3)}``, each aligned to the truth per snippet (first frame
            and least-squares scale, as the trajectory error does).
    """
    import matplotlib.pyplot as plt

    num = min(num, len(gt_positions))
    fig, axes = plt.subplots(1, num, figsize=(1.8 * num + 0.5, 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        gt = np.asarray(gt_positions[i]) - gt_positions[i][0]
        ax.plot(gt[:, 0], gt[:, 2], "o-", color="#00a651", label="truth")
        for label, positions in predicted.items():
            p = np.asarray(positions[i]) - positions[i][0]
            denominator = np.sum(p ** 2)
            scale = np.sum(gt * p) / denominator if denominator > 1e-12 else 1.0
            ax.plot(scale * p[:, 0], scale * p[:, 2], "x--", label=label)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x", fontsize=figures.FONT_SIZE)
        ax.tick_params(labelsize=figures.FONT_SIZE - 1)
        if i == 0:
            ax.set_ylabel("z (forward)", fontsize=figures.FONT_SIZE)
    axes[0, 0].legend(fontsize=figures.FONT_SIZE, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
