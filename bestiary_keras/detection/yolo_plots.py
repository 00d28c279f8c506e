"""Figures of the YOLO notebooks (06, 07) that the chapter's shared ``detection.plots`` lacks.

``speed_accuracy`` draws the chapter's detectors as points, milliseconds per image against
mAP@0.5, all measured in one run (notebook 07's cross-chapter figure). Built on
``bestiary_keras.figures`` (its fonts and palette).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import figures

__all__ = ["speed_accuracy"]


def speed_accuracy(points: dict, *, ax=None, title: str | None = None, missing=(),
                   note: str | None = None):
    """Milliseconds per image (x, log scale) against mAP@0.5 (y), one labelled point per detector.

    Args:
        points: ``{detector name: (ms per image, mAP@0.5)}``, all measured in the same run.
        ax: the axis to draw on (a new 6 x 3.6 inch figure when None).
        title: the axis title.
        missing: names of detectors that were not measured in this run; listed inside the axis
            so that an absent point is never mistaken for a lost one.
        note: an extra line of text written inside the axis (e.g. the machine).

    Returns:
        The matplotlib axis.
    """
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("points is empty: give at least one {name: (ms per image, mAP@0.5)}.")
    for name, value in points.items():
        if len(value) != 2 or not all(np.isfinite(v) for v in value) or value[0] <= 0:
            raise ValueError(f"points[{name!r}] = {value!r}: expected (ms per image > 0, mAP@0.5).")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    colors = figures.class_colors(max(len(points), 1))
    for (name, (ms, map50)), color in zip(points.items(), colors):
        ax.plot(ms, map50, "o", markersize=8, color=color, markeredgecolor="black",
                markeredgewidth=0.6, label=f"{name}: {ms:.1f} ms, {map50:.2f}")
        ax.annotate(name, (ms, map50), xytext=(6, 4), textcoords="offset points",
                    fontsize=figures.FONT_SIZE)
    ax.set_xscale("log")
    ms_values = [v[0] for v in points.values()]
    ax.set_xlim(min(ms_values) / 2.0, max(ms_values) * 3.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("milliseconds per image (one image at a time, log scale)",
                  fontsize=figures.FONT_SIZE + 1)
    ax.set_ylabel("mAP@0.5 (test scenes)", fontsize=figures.FONT_SIZE + 1)
    ax.grid(alpha=0.3, which="both")
    lines = []
    if missing:
        lines.append("not measured in this run: " + ", ".join(missing))
    if note:
        lines.append(note)
    if lines:
        ax.text(0.02, 0.03, "\n".join(lines), transform=ax.transAxes, fontsize=figures.FONT_SIZE,
                va="bottom", ha="left", bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    ax.legend(fontsize=figures.FONT_SIZE, loc="lower right")
    if title:
        ax.set_title(title, fontsize=figures.TITLE_SIZE + 1)
    return ax
