"""Pose figures: skeletons on images and belief maps (CPM and OpenPose notebooks).

Coordinates are image pixels with pixel centres at ``+0.5`` (``datasets.figures``); on an
``imshow`` axis pixel ``c`` is centred at ``c``, so points are drawn shifted by ``-0.5``.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.datasets.figures import JOINT_NAMES, LIMBS
from bestiary_keras.figures import as_display

__all__ = ["SIDE_COLORS", "draw_skeleton", "limb_colors", "show_belief_maps", "show_poses"]

SIDE_COLORS = {"right": "#ff1744", "left": "#2979ff", "centre": "#ffd600"}
"""Limb colours by side of the body (the person's right in red, left in blue)."""


def limb_colors(limbs=LIMBS, joint_names=JOINT_NAMES) -> list[str]:
    """A colour per limb by the side of its child joint (right red, left blue, else yellow)."""
    colors = []
    for _, child in limbs:
        name = joint_names[child]
        side = "right" if name.startswith("right") else "left" if name.startswith("left") else "centre"
        colors.append(SIDE_COLORS[side])
    return colors


def draw_skeleton(ax, keypoints, limbs=LIMBS, colors=None, *, linewidth=1.5, markersize=12,
                  min_visibility: float = 1e-6, linestyle="-", mark_hidden: bool = True):
    """Draws one or several skeletons on ``ax`` (an ``imshow`` axis).

    Args:
        ax: matplotlib Axes.
        keypoints: (J, 3) or (P, J, 3) ``(x, y, v_or_score)``; joints whose third value is
            below ``min_visibility`` are not drawn (nor are their limbs). (J, 2) draws all.
        limbs: ``(parent, child)`` pairs.
        colors: one colour per limb (default ``limb_colors``), or one colour for all.
        linestyle: e.g. ``"--"`` for predictions next to a solid ground truth.
        mark_hidden: joints whose third value is exactly 1 (COCO: labelled but hidden) get a
            black marker, the others a white one; pass False for scores.

    Returns:
        ``ax``.
    """
    keypoints = np.asarray(keypoints, np.float32)
    if keypoints.ndim == 2:
        keypoints = keypoints[None]
    if keypoints.ndim != 3 or keypoints.shape[-1] not in (2, 3):
        raise ValueError(f"keypoints must be (J, 2|3) or (P, J, 2|3), got {keypoints.shape}.")
    num_joints = keypoints.shape[1]
    bad = [limb for limb in limbs if max(limb) >= num_joints]
    if bad:
        raise ValueError(f"limbs {bad} refer to joints beyond the {num_joints} given; pass the "
                         "limbs of this skeleton.")
    if colors is None:
        colors = limb_colors(limbs) if num_joints == len(JOINT_NAMES) else ["#ffd600"] * len(limbs)
    elif isinstance(colors, str):
        colors = [colors] * len(limbs)
    for person in keypoints:
        shown = person[:, 2] >= min_visibility if person.shape[1] == 3 else np.ones(num_joints, bool)
        for (a, b), color in zip(limbs, colors):
            if shown[a] and shown[b]:
                ax.plot([person[a, 0] - 0.5, person[b, 0] - 0.5],
                        [person[a, 1] - 0.5, person[b, 1] - 0.5], color=color,
                        linewidth=linewidth, linestyle=linestyle, solid_capstyle="round")
        hidden = shown & (person[:, 2] == 1) if mark_hidden and person.shape[1] == 3 else shown & False
        for pick, face in ((shown & ~hidden, "white"), (hidden, "black")):
            ax.scatter(person[pick, 0] - 0.5, person[pick, 1] - 0.5, s=markersize, c=face,
                       edgecolors="white" if face == "black" else "black", linewidths=0.5,
                       zorder=3)
    return ax


def show_poses(images, keypoints, predictions=None, *, ncols=8, titles=None, title=None,
               cell=1.8):
    """A grid of images with their ground-truth skeletons (solid) and predictions (dashed).

    Args:
        images: (N, H, W, 3).
        keypoints: (N, J, 3) or (N, P, J, 3) ground truth.
        predictions: optional, the same layout (third column a score; all drawn).
        titles: optional caption per image.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + 0.4 * bool(title)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(as_display(images[k]))
        draw_skeleton(ax, keypoints[k], linewidth=1.2, markersize=6)
        if predictions is not None:
            pred = np.asarray(predictions[k], np.float32)[..., :2]  # scores: draw every joint
            draw_skeleton(ax, pred, colors="white", linewidth=1.0, markersize=4, linestyle="--")
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_belief_maps(image, maps_per_stage, joints, *, stage_names=None, joint_names=JOINT_NAMES,
                     keypoints=None, cell=1.7):
    """Belief maps of chosen joints at every stage, over the image (rows: stages).

    Args:
        image: (H, W, 3).
        maps_per_stage: list of (h, w, J) maps, one per stage.
        joints: indices of the joints to show (one column each).
        keypoints: optional (J, 3) ground truth, marked with a cross in each column.

    Returns:
        The matplotlib figure (a colour bar gives the belief scale).
    """
    import matplotlib.pyplot as plt

    image = as_display(image)
    height, width = image.shape[:2]
    stages = len(maps_per_stage)
    names = stage_names or [f"stage {t + 1}" for t in range(stages)]
    fig, axes = plt.subplots(stages, len(joints), figsize=(cell * len(joints) + 0.8, cell * stages),
                             squeeze=False)
    for t, maps in enumerate(maps_per_stage):
        maps = np.asarray(maps, np.float32)
        for c, j in enumerate(joints):
            ax = axes[t, c]
            ax.imshow(image.mean(-1), cmap="gray", extent=(0, width, height, 0))
            shown = ax.imshow(np.clip(maps[..., j], 0, 1), cmap="magma", alpha=0.65, vmin=0,
                              vmax=1, extent=(0, width, height, 0))
            if keypoints is not None and keypoints[j, 2] > 0:
                ax.plot(keypoints[j, 0], keypoints[j, 1], "+", color="#00e676", markersize=9,
                        markeredgewidth=1.5)
            ax.set_xticks([]); ax.set_yticks([])
            if t == 0:
                ax.set_title(joint_names[j].replace("_", " "), fontsize=9)
            if c == 0:
                ax.set_ylabel(names[t], fontsize=9)
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label="belief")
    return fig
