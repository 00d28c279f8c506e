"""The figures every chapter draws: palette, image grids with overlays, legends, colour bars, curves.

One place per figure concept; chapter-specific figures live in the chapter's ``plots.py``, built
on these: the palette (``class_colors``, ``label_colors``), the display normalisation
(``as_display``), label overlays (``overlay``), the image grid (``show_scenes``: boxes, masks,
keypoints, captions, legend, colour bars), the overlays on one axis (``draw_boxes``,
``draw_keypoints``), legends and colour bars (``class_legend``, ``add_colorbar``) and per-batch
training curves (``plot_curves``). Functions return the figure (or the axis they drew on) and
never call ``plt.show``; everything works under the non-interactive Agg backend.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FONT_SIZE", "GT_COLOR", "MAX_WIDTH", "PRED_COLOR", "TITLE_SIZE",
    "add_colorbar", "as_display", "class_colors", "class_legend", "draw_boxes", "draw_keypoints",
    "label_colors", "label_legend", "moving_average", "overlay", "plot_curves", "show_scenes",
]

GT_COLOR = "#00e676"
"""Ground-truth boxes and keypoints."""
PRED_COLOR = "#ff3d00"
"""Predicted boxes."""
FONT_SIZE = 8
"""Captions, legends and axis labels: readable when a 12-inch figure fills the notebook width."""
TITLE_SIZE = 9
"""Panel titles."""
MAX_WIDTH = 12.0
"""Widest image grid in inches: a notebook shows it at about 10 inches, the fonts barely shrink."""

_GOLDEN = 0.618033988749895


# ----------------------------------------------------------------------------- palette
def class_colors(num_classes: int) -> np.ndarray:
    """One distinct RGBA colour per class, shape ``(num_classes, 4)``.

    Class ``k`` always gets the same colour, whatever ``num_classes``: the ten ``tab10`` colours,
    then the ten light ``tab20`` shades, then hues spaced by the golden ratio (for instance maps
    with many labels).
    """
    import matplotlib
    import matplotlib.colors as mcolors

    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
    tab10, tab20 = matplotlib.colormaps["tab10"], matplotlib.colormaps["tab20"]
    colors = []
    for k in range(num_classes):
        if k < 10:
            colors.append(tab10(k))
        elif k < 20:
            colors.append(tab20(2 * (k - 10) + 1))
        else:
            hue = (0.1 + _GOLDEN * (k - 20)) % 1.0
            colors.append((*mcolors.hsv_to_rgb((hue, 0.75, 0.95)), 1.0))
    return np.array(colors, np.float64).reshape(num_classes, 4)


def label_colors(num_labels: int) -> np.ndarray:
    """RGBA colours of a label map, ``(num_labels, 4)``: label 0 (background) black, label
    ``k >= 1`` the colour of class ``k - 1``."""
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1 (label 0 is the background), got {num_labels}.")
    return np.concatenate([[[0.0, 0.0, 0.0, 1.0]], class_colors(num_labels - 1)])


def label_legend(label_names) -> dict:
    """Legend entries ``{name: colour}`` of a label map drawn by ``overlay``: labels 1, 2, ...
    in their ``label_colors``; label 0 (the background) is left out, as ``overlay`` leaves it
    untinted."""
    names = list(label_names)
    return dict(zip(names[1:], label_colors(len(names))[1:]))


# ----------------------------------------------------------------------------- images
def as_display(image) -> np.ndarray:
    """An image as float in [0, 1] for ``imshow``: uint8 is divided by 255, float images whose
    maximum exceeds 1 are taken as [0, 255]; a trailing channel of size 1 is dropped."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = image.astype(np.float32)
        if image.size and np.nanmax(image) > 1.0 + 1e-3:
            image = image / 255.0
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return np.clip(image, 0.0, 1.0)


def overlay(image, labels, *, alpha: float = 0.45, colors=None) -> np.ndarray:
    """An RGB picture of a grey or colour ``image`` with the integer ``labels`` tinted on top.

    Label 0 is left untinted; label ``k`` gets ``colors[k]`` (default ``label_colors``).
    """
    image = as_display(image)
    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
    labels = np.asarray(labels).astype(np.int64)
    if colors is None:
        colors = label_colors(int(labels.max()) + 1 if labels.size else 1)
    tint = np.asarray(colors, np.float32)[..., :3][labels]
    mask = (labels > 0)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * tint, rgb).clip(0, 1)


# ----------------------------------------------------------------------------- overlays on one axis
def draw_boxes(ax, boxes, labels=None, class_names=None, scores=None, color=GT_COLOR,
               linewidth=1.5, fontsize=FONT_SIZE):
    """Draws ``[x_min, y_min, x_max, y_max]`` pixel boxes (exclusive end) on ``ax``.

    Rows with a negative label, or all-zero boxes when ``labels`` is None, are padding and are
    skipped. Each box gets its class name (and score) as a caption above its top edge, or just
    inside it when the box touches the top of the image (so no caption is cut off).

    ``ax`` shows the image with ``imshow`` (pixel centres at integers); ``boxes`` is (M, 4),
    ``labels`` (M,) class indices, ``scores`` (M,) confidences (two decimals); ``color`` is the
    edge and caption colour. Returns ``ax``.
    """
    from matplotlib.patches import Rectangle

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labels = None if labels is None else np.asarray(labels).reshape(-1)
    scores = None if scores is None else np.asarray(scores, np.float32).reshape(-1)
    # room for one caption line above a box, in image pixels (about 4% of the image height)
    height = abs(np.subtract(*ax.get_ylim())) if ax.images else 0.0
    room = 0.09 * height
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
            inside = y0 - 0.5 < room  # no room above: write it just below the top edge
            ax.text(max(x0 - 0.5, -0.5), y0 - 0.5 if inside else y0 - 1.0, " ".join(caption),
                    color="black", fontsize=fontsize, va="top" if inside else "bottom",
                    ha="left", clip_on=True,
                    bbox=dict(facecolor=color, edgecolor="none", alpha=0.8, pad=0.5))
    return ax


def draw_keypoints(ax, keypoints, limbs=(), colors=None, *, linewidth=1.5, markersize=12,
                   min_visibility: float = 1e-6, linestyle="-", mark_hidden: bool = True):
    """Draws one or several skeletons (or bare keypoints) on ``ax`` (an ``imshow`` axis).

    Coordinates are image pixels with pixel centres at ``+0.5`` (``datasets.figures``); on an
    ``imshow`` axis pixel ``c`` is centred at ``c``, so points are drawn shifted by ``-0.5``.

    Args:
        ax: matplotlib Axes.
        keypoints: (J, 3) or (P, J, 3) ``(x, y, v_or_score)``; joints whose third value is
            below ``min_visibility`` are not drawn (nor are their limbs). (J, 2) draws all.
        limbs: ``(parent, child)`` joint pairs joined by a line.
        colors: one colour per limb, or one colour for all (default yellow).
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
    limbs = list(limbs)
    bad = [limb for limb in limbs if max(limb) >= num_joints]
    if bad:
        raise ValueError(f"limbs {bad} refer to joints beyond the {num_joints} given; pass the "
                         "limbs of this skeleton.")
    if colors is None or isinstance(colors, str):
        colors = [colors or "#ffd600"] * len(limbs)
    for person in keypoints:
        shown = (person[:, 2] >= min_visibility if person.shape[1] == 3
                 else np.ones(num_joints, bool))
        for (a, b), color in zip(limbs, colors):
            if shown[a] and shown[b]:
                ax.plot([person[a, 0] - 0.5, person[b, 0] - 0.5],
                        [person[a, 1] - 0.5, person[b, 1] - 0.5], color=color,
                        linewidth=linewidth, linestyle=linestyle, solid_capstyle="round")
        hidden = (shown & (person[:, 2] == 1) if mark_hidden and person.shape[1] == 3
                  else np.zeros(num_joints, bool))
        for pick, face in ((shown & ~hidden, "white"), (hidden, "black")):
            ax.scatter(person[pick, 0] - 0.5, person[pick, 1] - 0.5, s=markersize, c=face,
                       edgecolors="white" if face == "black" else "black", linewidths=0.5,
                       zorder=3)
    return ax


# ----------------------------------------------------------------------------- legends, colour bars
def class_legend(target, names, colors=None, *, loc="lower center", ncol=None, **kwargs):
    """A legend of coloured patches, one per name, on a figure or an axis.

    Args:
        target: a matplotlib Figure (legend below the panels) or Axes.
        names: the class names, or a ``{name: colour}`` mapping.
        colors: one colour per name (default ``class_colors``); ignored for a mapping.

    Returns:
        The matplotlib Legend.
    """
    from matplotlib.patches import Patch

    if isinstance(names, dict):
        names, colors = list(names), list(names.values())
    names = list(names)
    if colors is None:
        colors = class_colors(len(names))
    handles = [Patch(facecolor=c, edgecolor="grey", linewidth=0.5, label=str(n))
               for n, c in zip(names, colors)]
    figure = hasattr(target, "add_axes")  # below a figure's panels; framed on an axis's image
    options = dict(loc=loc, ncol=ncol or min(len(handles), 8), fontsize=FONT_SIZE, frameon=not figure)
    if figure and loc == "lower center":
        options["loc"] = "outside lower center"
    return target.legend(handles=handles, **{**options, **kwargs})


def add_colorbar(mappable, axes, label: str, **kwargs):
    """A colour bar for ``mappable`` (an ``imshow`` result) beside ``axes`` (one or several),
    labelled with what the colour means (``"weight"``, ``"belief"``, ``"depth"``).

    Returns:
        The matplotlib Colorbar.
    """
    fig = mappable.axes.figure
    bar = fig.colorbar(mappable, ax=axes, **{"fraction": 0.046, "pad": 0.02, **kwargs})
    bar.set_label(label, fontsize=FONT_SIZE)
    bar.ax.tick_params(labelsize=FONT_SIZE - 1)
    return bar


# ----------------------------------------------------------------------------- the image grid
def _rows(images, ncols):
    """``images`` as a list of rows of panels: an array or flat list is wrapped every ``ncols``."""
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (list, tuple)):
        return [list(row) for row in images]
    images = list(images)
    ncols = max(1, min(int(ncols), len(images)))
    return [images[i:i + ncols] for i in range(0, len(images), ncols)]


def _per_image(value, i, ndim_single):
    """Item ``i`` of a per-image argument, with a leading axis of one object added if missing."""
    if value is None:
        return None
    v = np.asarray(value[i])
    return v[None] if v.ndim == ndim_single - 1 else v


def show_scenes(images, boxes=None, labels=None, class_names=None, *, masks=None, scores=None,
                keypoints=None, predicted_keypoints=None, limbs=(), limb_colors=None,
                titles=None, row_labels=None, ncols=8, title=None, color=GT_COLOR, cmap="gray",
                colorbar: str | None = None, legend=None, cell=1.8):
    """The image grid: images with boxes, instance masks, keypoints, captions and legends.

    Args:
        images: (N, H, W, 3) or (N, H, W) uint8 or float (``as_display``), wrapped every
            ``ncols``; or a list of rows, each a list of panels (images, RGB overlays or 2-D
            maps, which may differ in size); the per-image arguments below index the panels in
            reading order.
        boxes: optional (N, M, 4) or (N, 4) pixel boxes ``[x_min, y_min, x_max, y_max]``.
        labels: optional (N, M) or (N,) class indices (-1 = padding); with one label per image
            and no boxes, the class name is the panel's title.
        class_names: names for the labels.
        masks: optional (N, M, H, W) or (N, H, W) boolean instance masks, tinted in their class
            colour (``class_colors``; the instance index when there are no labels).
        scores: optional (N, M) or (N,) confidences, shown next to the class name.
        keypoints: optional (N, J, 3) or (N, P, J, 3) ground truth, drawn solid.
        predicted_keypoints: the same layout, drawn dashed in white (third column a score:
            every joint is drawn).
        limbs: ``(parent, child)`` joint pairs of the skeleton.
        limb_colors: one colour per limb (or one for all).
        titles: one caption per panel; row_labels: one label per row, on the left.
        ncols: panels per row when ``images`` is an array.
        title: figure title.
        color: box colour (e.g. ``PRED_COLOR`` for predictions).
        cmap: colour map of 2-D panels, one for all or one per row (``"gray"`` shows [0, 1]
            images as they are; other maps share one scale per row).
        colorbar: label of a colour bar added to each row with a non-grey colour map.
        legend: a class legend below the grid: ``True`` for ``class_names`` in their box and
            mask colours, a list of names (``class_colors``) or a ``{name: colour}`` mapping.
            By default there is one when masks are coloured by class.
        cell: inches per panel.

    Returns:
        The matplotlib figure (one axes per grid cell).
    """
    import matplotlib.pyplot as plt

    rows = _rows(images, ncols)
    panels = [p for row in rows for p in row]
    n = len(panels)
    if n == 0:
        raise ValueError("show_scenes got no images (images has length 0).")
    nrows, ncols = len(rows), max(len(r) for r in rows)
    first = np.asarray(panels[0])
    aspect = min(max(first.shape[1] / first.shape[0], 0.4), 2.5)
    extra_w = 0.8 if colorbar else 0.0
    # at most MAX_WIDTH inches wide, so the notebook shows the fonts at about their size
    cell = min(cell, (MAX_WIDTH - extra_w) / (ncols * aspect ** 0.5))
    cell_w, cell_h = cell * aspect ** 0.5, cell / aspect ** 0.5
    # constrained layout makes room for titles, colour bars and the legend below the panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_w * ncols + extra_w,
                                                     cell_h * nrows + 0.35 * bool(title)),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    num_classes = len(class_names) if class_names is not None else 10
    palette = class_colors(max(num_classes, 1))
    cmaps = cmap if isinstance(cmap, (list, tuple)) else [cmap] * nrows
    i = 0
    for r, row in enumerate(rows):
        maps, scale = [], None
        row_cmap = cmaps[r] if r < len(cmaps) else cmaps[-1]
        flat = [np.asarray(p) for p in row if np.squeeze(np.asarray(p)).ndim == 2]
        if row_cmap not in (None, "gray") and flat:
            scale = (min(float(np.nanmin(p)) for p in flat), max(float(np.nanmax(p)) for p in flat))
        for c, panel in enumerate(row):
            ax = axes[r, c]
            ax.axis("on")
            for spine in ax.spines.values():
                spine.set_visible(False)
            panel = np.asarray(panel)
            if panel.ndim == 3 and panel.shape[-1] == 1:
                panel = panel[..., 0]
            lab = _per_image(labels, i, 1)
            if panel.ndim == 2 and scale is not None:
                maps.append(ax.imshow(panel, cmap=row_cmap, vmin=scale[0], vmax=scale[1],
                                      interpolation="nearest"))
            else:
                picture = as_display(panel)
                if masks is not None:
                    m = _per_image(masks, i, 3).astype(bool)
                    label_map = np.zeros(m.shape[1:], np.int64)
                    for j in range(len(m)):
                        if lab is not None and j < len(lab) and lab[j] < 0:
                            continue
                        k = int(lab[j]) if lab is not None and j < len(lab) else j
                        label_map[m[j]] = k % len(palette) + 1
                    colors = np.concatenate([[[0, 0, 0, 1]], palette])
                    picture = overlay(picture, label_map, colors=colors)
                ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                          interpolation="nearest")
            if boxes is not None:
                draw_boxes(ax, _per_image(boxes, i, 2), lab, class_names,
                           _per_image(scores, i, 1), color=color)
            elif (titles is None and lab is not None and class_names is not None
                  and len(lab) == 1 and lab[0] >= 0):
                ax.set_title(class_names[int(lab[0])], fontsize=TITLE_SIZE)
            if keypoints is not None:
                draw_keypoints(ax, keypoints[i], limbs, limb_colors, linewidth=1.2, markersize=6)
            if predicted_keypoints is not None:
                predicted = np.asarray(predicted_keypoints[i], np.float32)[..., :2]
                draw_keypoints(ax, predicted, limbs, "white", linewidth=1.0, markersize=4,
                               linestyle="--")
            if titles is not None and i < len(titles) and titles[i]:
                ax.set_title(titles[i], fontsize=TITLE_SIZE)
            i += 1
        if row_labels is not None and r < len(row_labels):
            axes[r, 0].set_ylabel(row_labels[r], fontsize=TITLE_SIZE)
        if colorbar and maps:
            add_colorbar(maps[-1], list(axes[r]), colorbar)
    if legend is None:
        legend = masks is not None and labels is not None and class_names is not None
    if legend is True:
        legend = dict(zip(class_names, palette)) if class_names is not None else None
    if title:
        fig.suptitle(title, fontsize=TITLE_SIZE + 1)
    if legend:
        class_legend(fig, legend)
    return fig


# ----------------------------------------------------------------------------- curves
def moving_average(values, width: int) -> np.ndarray:
    """Mean of each window of ``width`` consecutive values (``len(values) - width + 1`` values);
    the values themselves when there are fewer than ``width``."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    values = np.asarray(values, dtype=float)
    if width == 1 or len(values) < width:
        return values
    return np.convolve(values, np.ones(width) / width, mode="valid")


def plot_curves(histories: dict, metric: str = "loss", *, ax=None, title: str | None = None,
                xlabel: str = "step", logy: bool = False, smooth: int = 1,
                colors: dict | None = None):
    """Plots one metric of several runs on one axis: ``{"label": history_or_dict, ...}``.

    The values are drawn as recorded, one per step (record them with
    ``training.StepHistory(per_batch=True)``: per-batch values, not Keras' running means). With
    ``smooth > 1`` they are drawn faintly and a moving average over ``smooth`` steps, labelled
    as such in the legend, is drawn on top (plotted at the window's last step).

    Args:
        histories: run label to ``History``, ``StepHistory`` or ``{metric: [values]}``.
        metric: the key to plot (e.g. ``"loss"``, ``"val_accuracy"``).
        smooth: width of the moving average (1 = raw values only).
        colors: optional run label to matplotlib colour, so that one run keeps its colour across
            several axes (runs not named get the axis' next colour).

    Returns:
        The matplotlib axis.
    """
    import matplotlib.pyplot as plt

    from bestiary_keras.training import history_dict

    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    faint = False
    colors = colors or {}
    for label, history in histories.items():
        values = history_dict(history)
        if metric not in values:
            raise ValueError(f"run {label!r} has no metric {metric!r}; it has {sorted(values)}")
        y = np.asarray(values[metric], dtype=float)
        steps = np.arange(1, len(y) + 1)
        if smooth > 1 and len(y) >= smooth:
            # one run: its raw line is named; several: one grey legend entry names them all
            (raw,) = ax.plot(steps, y, linewidth=0.6, alpha=0.3, color=colors.get(label),
                             label=f"{label} (per batch)" if len(histories) == 1 else None)
            ax.plot(steps[smooth - 1:], moving_average(y, smooth), color=raw.get_color(),
                    linewidth=1.6, label=f"{label} (moving average of {smooth} steps)")
            faint = len(histories) > 1
        else:
            ax.plot(steps, y, label=label, color=colors.get(label))
    if faint:
        ax.plot([], [], color="grey", linewidth=0.6, alpha=0.5, label="per batch (faint lines)")
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE + 1)
    ax.set_ylabel(metric, fontsize=FONT_SIZE + 1)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT_SIZE)
    return ax
