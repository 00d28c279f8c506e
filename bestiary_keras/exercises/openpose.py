"""Worked solutions of the exercises of notebook 13 (OpenPose).

1. ``solution_1``: the PAF line integral of a correct and of a wrong limb candidate, and how
   many samples along the segment it takes to reject the wrong one.
2. ``solution_2``: why the confidence maps take the maximum over people, not the average: the
   smallest distance at which two people's joints still give two peaks.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.pose import decoding, heatmaps, paf

__all__ = ["IMAGE_SIZE", "MAP_SIZE", "forearms_scene", "solution_1", "solution_2"]

IMAGE_SIZE, MAP_SIZE = 64, 16  # the notebook's sizes: 4-pixel map cells


def forearms_scene():
    """Two people's forearms (elbow -> wrist), parallel and 6 map cells apart.

    Returns:
        ``(keypoints (2, 2, 3) in image pixels, limbs [(0, 1)], elbows (2, 3) and wrists (2, 3)
        as peaks [x, y, value] in map cells)``. In map cells person A goes from (3, 4) to
        (11, 4), person B from (3, 10) to (11, 10).
    """
    cells = np.array([[[3.0, 4.0], [11.0, 4.0]], [[3.0, 10.0], [11.0, 10.0]]], np.float32)
    stride = IMAGE_SIZE / MAP_SIZE
    keypoints = np.concatenate([(cells + 0.5) * stride, np.full((2, 2, 1), 2.0, np.float32)], -1)
    peaks = np.concatenate([cells, np.ones((2, 2, 1), np.float32)], -1)
    return keypoints, np.array([[0, 1]]), peaks[:, 0], peaks[:, 1]


def solution_1(seed: int = 0, *, sample_counts=(2, 3, 5, 10, 20), verbose: bool = True) -> dict:
    """Exercise 1: the line integral scores a correct and a wrong limb candidate.

    Exercise: two people stand side by side with parallel, horizontal forearms 6 map cells
    (24 pixels) apart. Build their PAF targets (``paf.part_affinity_fields``, the notebook's
    64-pixel images, 16-cell maps, ``sigma_l = 1`` cell) and score all four elbow -> wrist
    candidates with ``decoding.limb_scores`` for 2, 3, 5, 10 and 20 samples along the segment.
    Work out the wrong candidate's score by hand first.

    Method: the wrong candidate runs from A's elbow (3, 4) to B's wrist (11, 10): direction
    (0.8, 0.6), length 10 cells. Where it lies on a forearm, the field is (1, 0) and the
    projection is the cosine 0.8; between the forearms the field is 0. The distance prior
    ``min(0.5 * 16 / 10 - 1, 0) = -0.2`` is added; a candidate is kept only when at least 80% of
    its samples project above 0.05. The correct candidates lie on their field all along:
    projection 1, length 8, prior 0, score 1.

    Expected outcome (exact; ``seed`` plays no role): the correct candidates score 1.0 for every
    sample count. With 2 samples (the two ends, both on a forearm) the wrong candidate is kept
    with a score 0.8 - 0.2 = 0.6; from 3 samples on, its middle samples fall into the empty gap
    (1 of 3, 3 of 5, 4 of 10, 10 of 20 samples are off the limbs, more than the 20% allowed)
    and it is rejected. A test of the two ends alone cannot tell the two candidates apart;
    the integral along the segment can.
    """
    del seed
    keypoints, limbs, elbows, wrists = forearms_scene()
    field = paf.part_affinity_fields(keypoints, limbs, IMAGE_SIZE, MAP_SIZE, limb_width=1.0)
    rows = {}
    for count in sample_counts:
        scores = decoding.limb_scores(elbows, wrists, field, num_samples=count)
        rows[int(count)] = {"correct": [float(scores[0, 0]), float(scores[1, 1])],
                            "wrong": [float(scores[0, 1]), float(scores[1, 0])]}
    if verbose:
        print("samples | correct A, B | wrong A->B, B->A (-inf: rejected)")
        for count, row in rows.items():
            print(f"{count:7d} | {row['correct'][0]:.3f}, {row['correct'][1]:.3f} | "
                  f"{row['wrong'][0]:.3f}, {row['wrong'][1]:.3f}")
    return rows


def _peak_count(maps) -> int:
    return len(decoding.find_peaks(maps)[0])


def solution_2(seed: int = 0, *, sigma: float = 3.0, distances=range(1, 13),
               verbose: bool = True) -> dict:
    """Exercise 2: the maximum over people keeps nearby joints apart; the average would not.

    Exercise: the paper builds a joint's confidence map as the *maximum* of the people's
    Gaussians (its Eq. 7), "so that the precision of nearby peaks remains distinct". Put the
    same joint of two people ``d`` pixels apart (``d = 1 .. 12``), build the map with the
    maximum (``heatmaps.confidence_maps``) and with the average of the two people's maps, at
    the image's resolution and the notebook's ``sigma = 3`` pixels, and count the peaks that
    ``decoding.find_peaks`` (5x5 non-maximum suppression, threshold 0.1) finds.

    Method: the average of two Gaussians ``g(x - d/2) + g(x + d/2)`` has a single maximum at
    the midpoint as long as its curvature there is negative, i.e. for ``d <= 2 sigma`` (6
    pixels); the maximum of the two keeps a peak on each joint for any ``d``, and only the
    suppression window (2 pixels on each side) merges them.

    Expected outcome (exact; ``seed`` plays no role): with the maximum two peaks from
    ``d = 3`` pixels; with the average only from ``d = 7`` (above ``2 sigma = 6``); in between
    the average gives one peak at the midpoint, which the decoder would read as one person
    with a joint where neither is.
    """
    del seed
    rows = {}
    for d in distances:
        keypoints = np.zeros((1, 2, 1, 3), np.float32)
        keypoints[0, :, 0] = [[20.5, 32.5, 2.0], [20.5 + d, 32.5, 2.0]]
        maximum = heatmaps.confidence_maps(keypoints, IMAGE_SIZE, IMAGE_SIZE, sigma)[0]
        each = [heatmaps.confidence_maps(keypoints[:, p:p + 1], IMAGE_SIZE, IMAGE_SIZE, sigma)[0]
                for p in range(2)]
        average = (each[0] + each[1]) / 2
        rows[int(d)] = {"max": _peak_count(maximum), "average": _peak_count(average)}
    first = {kind: min((d for d, row in rows.items() if row[kind] == 2), default=None)
             for kind in ("max", "average")}
    if verbose:
        print("distance (px) | peaks, max over people | peaks, average")
        for d, row in rows.items():
            print(f"{d:13d} | {row['max']:22d} | {row['average']:7d}")
        print(f"two peaks from {first['max']} px with the maximum, from {first['average']} px "
              f"with the average (2 sigma = {2 * sigma:.0f} px)")
    return {"peaks": rows, "first_separated": first}
