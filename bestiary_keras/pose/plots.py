"""Pose figures (CPM and OpenPose notebooks): skeleton colours, belief maps, part affinity fields.

The grids of images with skeletons are ``figures.show_scenes(images, keypoints=...,
**SKELETON)``; single skeletons ``figures.draw_keypoints(ax, keypoints, LIMBS, limb_colors())``.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures
from bestiary_keras.datasets.figures import JOINT_NAMES, LIMBS

__all__ = ["SIDE_COLORS", "SKELETON", "draw_pafs", "limb_colors", "show_belief_maps"]

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


SKELETON = dict(limbs=LIMBS, limb_colors=limb_colors(),
                legend={f"person's {side}" if side != "centre" else "centre": color
                        for side, color in SIDE_COLORS.items()})
"""``figures.show_scenes`` arguments that draw the figures' skeletons with a side legend."""


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

    image = figures.as_display(image)
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
                ax.plot(keypoints[j, 0], keypoints[j, 1], "+", color=figures.GT_COLOR,
                        markersize=9, markeredgewidth=1.5)
            ax.set_xticks([]); ax.set_yticks([])
            if t == 0:
                ax.set_title(joint_names[j].replace("_", " "), fontsize=figures.TITLE_SIZE)
            if c == 0:
                ax.set_ylabel(names[t], fontsize=figures.TITLE_SIZE)
    figures.add_colorbar(shown, axes, "belief", fraction=0.03)
    return fig


def draw_pafs(ax, pafs, image_size: int, *, limbs_to_show=None, min_norm: float = 0.3,
              colors=None, scale: float = 1.0):
    """Draws part affinity fields as arrows (``quiver``) over an image shown with ``imshow``.

    Args:
        ax: matplotlib axes (image pixel coordinates).
        pafs: ``(h, w, 2 L)`` fields (targets or predictions).
        image_size: side of the image the axes shows.
        limbs_to_show: limb indices to draw (default: all).
        min_norm: arrows shorter than this are left out.
        colors: one colour per limb (default: ``figures.class_colors``).
        scale: arrow length in map pixels for a unit vector.

    Returns:
        ``ax``.
    """
    pafs = np.asarray(pafs, np.float32)
    if pafs.ndim != 3 or pafs.shape[-1] % 2:
        raise ValueError(f"pafs must be (h, w, 2 L), got {pafs.shape}.")
    h, w, channels = pafs.shape
    limbs_to_show = range(channels // 2) if limbs_to_show is None else limbs_to_show
    if colors is None:
        colors = figures.class_colors(channels // 2)
    stride = image_size / w
    ys, xs = np.mgrid[0:h, 0:w]
    # imshow puts pixel c's centre at c, so image coordinate x is drawn at x - 0.5
    centres_x = (xs + 0.5) * stride - 0.5
    centres_y = (ys + 0.5) * stride - 0.5
    for c in limbs_to_show:
        u, v = pafs[..., 2 * c], pafs[..., 2 * c + 1]
        keep = np.hypot(u, v) >= min_norm
        if keep.any():
            # image rows grow downwards: angles="xy" with an inverted y axis draws v downwards
            ax.quiver(centres_x[keep], centres_y[keep], u[keep], v[keep], color=colors[c],
                      angles="xy", scale_units="xy", scale=1.0 / (scale * stride), width=0.006)
    return ax
