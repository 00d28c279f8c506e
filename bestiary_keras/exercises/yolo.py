"""Exercises of notebook 06 (YOLO): the grid's capacity, the square roots of the loss, and what
``lambda_noobj`` does to the confidences.

The solutions use the package's own target encoder (``yolo_data.count_dropped_objects``), the
loss (``yolo.yolo_v1_loss_terms``) and the chapter's scene recipe; nothing is trained. ``seed``
picks the scenes (0 is the chapter's training split, ``data.SPLIT_SEEDS``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from bestiary_keras.datasets.scenes import make_scenes
from bestiary_keras.detection import data, yolo, yolo_data

__all__ = ["FLOCK_SETTINGS", "solution_1", "solution_2", "solution_3", "uniform_collision_share"]

IMAGE_SIZE = 64
FLOCK_SETTINGS = {**data.SCENE_SETTINGS, "min_objects": 6, "max_objects": 10,
                  "object_size": (6, 12)}
"""A "flock": 6 to 10 objects of 6 to 12 pixels per 64x64 scene (the chapter: 1 to 4 of 12 to 32)."""


@functools.lru_cache(maxsize=4)
def _scenes(num_images: int, seed: int, flock: bool):
    settings = FLOCK_SETTINGS if flock else data.SCENE_SETTINGS
    return make_scenes(int(num_images), seed=int(seed), **settings)


def uniform_collision_share(objects_per_image, grid_size: int) -> float:
    """Share of objects that lose their cell if the centres fell uniformly and independently.

    ``n`` centres in ``S^2`` cells occupy ``S^2 (1 - (1 - 1/S^2)^n)`` cells on average (the
    birthday problem); the others are lost, one per extra centre in a cell.
    """
    n = np.asarray(objects_per_image, np.float64)
    cells = grid_size**2
    occupied = cells * (1.0 - (1.0 - 1.0 / cells) ** n)
    return float((n - occupied).sum() / n.sum())


def solution_1(seed: int = 0, num_images: int = 500, grids=(4, 7, 8, 13, 16)) -> dict:
    """Exercise 1, how many objects can the S x S grid hold?

    **Exercise.** A cell predicts one set of class probabilities and is responsible for one
    object, so when two centres fall in the same cell YOLO can learn only one of them. Count
    the objects that lose their cell (``count_dropped_objects``) for S = 4, 7 (the paper),
    8 (the notebook), 13 and 16, on the chapter's scenes and on a "flock" (6 to 10 objects of
    6 to 12 pixels per image). Compare with the birthday-problem count for centres that fall
    uniformly and independently: ``n - S^2 (1 - (1 - 1/S^2)^n)`` lost per image of ``n``.

    **Method.** Counts over the scenes; the formula per image, summed.

    **Expected outcome.** On the chapter's scenes the notebook's 8 x 8 grid loses 0.1 to 0.2%
    of the objects (seeds 0, 1, 2), a 4 x 4 grid 1.4 to 2.7%. The flock loses 1.2 to 1.5% at
    S = 8 and 14.4 to 14.6% at S = 4, and still up to 0.2% at S = 13. The formula
    overestimates every count, by a factor of about 1.4 (flock, S = 4) to 10 (chapter, S = 8:
    1.5% against 0.16%): our shapes may hide at most a quarter of each other, so their centres
    keep apart by about an object's size. The loss is worst for objects that are small against
    the cell *and* crowded.

    Returns:
        ``{"chapter": {S: share}, "flock": {S: share}, "uniform_chapter": {S: share},
        "uniform_flock": {S: share}}``.
    """
    result = {}
    print(f"share of objects that lose their cell to another centre (seed {seed})")
    print(f"{'S':>3} {'chapter':>9} {'uniform':>9} {'flock':>9} {'uniform':>9}")
    for flock in (False, True):
        scenes = _scenes(num_images if not flock else num_images // 2, seed, flock)
        key = "flock" if flock else "chapter"
        total = int(scenes.num_objects.sum())
        result[key] = {S: yolo_data.count_dropped_objects(scenes.boxes, scenes.labels,
                                                          IMAGE_SIZE, S) / total
                       for S in grids}
        result[f"uniform_{key}"] = {S: uniform_collision_share(scenes.num_objects, S)
                                    for S in grids}
        result[f"objects_{key}"] = total
    for S in grids:
        print(f"{S:>3} {result['chapter'][S]:>9.4f} {result['uniform_chapter'][S]:>9.4f} "
              f"{result['flock'][S]:>9.4f} {result['uniform_flock'][S]:>9.4f}")
    print(f"({result['objects_chapter']} chapter objects, {result['objects_flock']} flock objects; "
          "'uniform': centres drawn independently, the birthday problem)")
    return result


def _wh_term(true_w: float, pred_w: float) -> float:
    """YOLO's ``wh`` loss term (``yolo_v1_loss_terms``) of one square box on a 1 x 1 grid."""
    y_true = np.array([[[[1.0, 0.5, 0.5, true_w, true_w, 1.0]]]], np.float32)
    y_pred = np.array([[[[0.5, 0.5, pred_w, pred_w, 1.0, 1.0]]]], np.float32)
    terms = yolo.yolo_v1_loss_terms(y_true, y_pred, boxes_per_cell=1, num_classes=1)
    return float(np.asarray(terms["wh"])[0])


def solution_2(small: float = 12.0, large: float = 32.0, error: float = 2.0) -> dict:
    """Exercise 2, what the square roots buy: a small and a large box with the same error.

    **Exercise.** A 12-pixel and a 32-pixel square are each predicted (a) 2 pixels too wide and
    too high, (b) 1/6 too wide and too high (the same relative error, so the same IoU, 0.735).
    Compute the ``wh`` term of the loss (``lambda_coord = 5``) for the paper's
    ``(sqrt(w) - sqrt(w_hat))^2`` with ``yolo_v1_loss_terms``, and by hand for the plain
    ``(w - w_hat)^2`` and for ``(log w - log w_hat)^2`` (YOLOv2's and Faster R-CNN's
    ``t_w = log(w / w_a)``), sizes as fractions of the 64-pixel image. What is the ratio
    small : large in each case?

    **Method.** ``(sqrt(w + e) - sqrt(w))^2 ~ e^2 / (4 w)``: for the same absolute error the
    square root weighs a box in inverse proportion to its size; for the same relative error
    ``r`` it gives ``w (sqrt(1 + r) - 1)^2``, in proportion to its size. Only the log is
    scale-free.

    **Expected outcome.** (a) Same 2 pixels: plain 1 : 1, square root 2.54 : 1, log 6.47 : 1.
    (b) Same IoU: plain 0.14 : 1 (= (12/32)^2), square root 0.375 : 1 (= 12/32), log 1 : 1.
    The square root is a compromise: it makes a 2-pixel error count more in the small box, as
    the paper wants, but a large box with the same IoU still costs 2.7 times more; YOLOv2's
    log makes equal IoUs cost the same.

    Returns:
        ``{case: {parametrisation: (small, large, ratio)}}`` for cases "same pixels" and
        "same IoU"; ``"iou"`` the IoU of case (b).
    """
    size = float(IMAGE_SIZE)
    relative = error / small
    cases = {"same pixels": (error, error), "same IoU": (small * relative, large * relative)}
    lambda_coord = 5.0
    result = {}
    print(f"wh term of a {small:g}-pixel and a {large:g}-pixel square box, lambda_coord = 5")
    print(f"{'':<13} {'parametrisation':<16} {'small':>10} {'large':>10} {'small/large':>12}")
    for case, (e_small, e_large) in cases.items():
        result[case] = {}
        for name in ("plain w", "sqrt w (YOLO)", "log w (YOLOv2)"):
            values = []
            for w, e in ((small, e_small), (large, e_large)):
                t, p = w / size, (w + e) / size
                if name == "sqrt w (YOLO)":
                    values.append(_wh_term(t, p))
                elif name == "plain w":
                    values.append(lambda_coord * 2 * (p - t) ** 2)
                else:
                    values.append(lambda_coord * 2 * (math.log(p) - math.log(t)) ** 2)
            result[case][name] = (values[0], values[1], values[0] / values[1])
            print(f"{case:<13} {name:<16} {values[0]:>10.5f} {values[1]:>10.5f} "
                  f"{values[0] / values[1]:>12.3f}")
    result["iou"] = 1.0 / (1.0 + relative) ** 2
    print(f"(same IoU: both predicted {1 + relative:.3f} times too large, IoU {result['iou']:.3f})")
    return result


def solution_3(seed: int = 0, num_images: int = 500, grid_size: int = 8,
               boxes_per_cell: int = 2) -> dict:
    """Exercise 3, what ``lambda_noobj`` does to the confidences.

    **Exercise.** Of the ``S^2 B = 128`` predictors of an image only those responsible for an
    object (about 2.5) are trained towards a confidence of IoU; all others towards 0, weighted by
    ``lambda_noobj``. Suppose a network that predicts perfect boxes (IoU 1) but one constant
    confidence ``c`` for every predictor. Which ``c`` minimises the two confidence terms of the
    loss, for ``lambda_noobj`` = 0.5 (the paper) and 1? And at ``c = 0.5`` (a zero bias before a
    sigmoid), how much harder do the empty predictors push than the responsible ones?

    **Method.** ``N_obj (c - 1)^2 + lambda_noobj N_noobj c^2`` is smallest at
    ``c* = N_obj / (N_obj + lambda_noobj N_noobj)``; ``N_obj`` from the chapter's targets
    (``encode_yolo_v1_targets``, one object per cell), checked against ``yolo_v1_loss_terms``
    evaluated for constant confidences on a grid of ``c``. The gradients at ``c`` are
    ``2 N_obj (c - 1)`` and ``2 lambda_noobj N_noobj c``.

    **Expected outcome.** About 2.5 responsible and 125.5 empty predictors per image: ``c*`` is
    0.038 for ``lambda_noobj = 0.5`` and 0.019 for 1 (seeds 0, 1, 2: 0.036 to 0.038 and 0.019
    to 0.020), what the loss scan finds to 0.001. The best
    constant is near 0, which is why the notebook starts every confidence at 0.05
    (``confidence_prior``); at ``c = 0.5`` the empty predictors push down 25 times harder than the
    responsible ones push up (50 times with ``lambda_noobj = 1``): without the prior the first
    steps only lower every confidence.

    Returns:
        ``{"objects": N_obj, "empty": N_noobj, "c_star": {lambda: c*}, "c_scan": {lambda: c},
        "push_ratio": {lambda: ratio at c = 0.5}}`` (per image).
    """
    scenes = _scenes(num_images, seed, False)
    targets = yolo_data.encode_yolo_v1_targets(scenes.boxes, scenes.labels, IMAGE_SIZE,
                                               grid_size, 3)
    n_obj = float(targets[..., 0].sum() / len(targets))
    n_empty = grid_size**2 * boxes_per_cell - n_obj
    # predictions: the true boxes in every predictor of an object's cell, class probabilities
    # right, and one constant confidence c for all predictors
    base = np.zeros(targets.shape[:3] + (5 * boxes_per_cell + 3,), np.float32)
    for b in range(boxes_per_cell):
        base[..., 5 * b:5 * b + 4] = targets[..., 1:5]
    base[..., 5 * boxes_per_cell:] = targets[..., 5:]
    grid = np.round(np.arange(0.005, 0.06, 0.001), 3)
    result = {"objects": n_obj, "empty": n_empty, "c_star": {}, "c_scan": {}, "push_ratio": {}}
    print(f"per image (seed {seed}): {n_obj:.2f} responsible predictors, {n_empty:.2f} empty ones")
    print(f"{'lambda_noobj':>12} {'c* by hand':>11} {'c* by loss scan':>16} {'push at c=0.5':>14}")
    for lam in (0.5, 1.0):
        c_star = n_obj / (n_obj + lam * n_empty)
        losses = []
        for c in grid:
            pred = base.copy()
            pred[..., 4:5 * boxes_per_cell:5] = c
            terms = yolo.yolo_v1_loss_terms(targets, pred, boxes_per_cell=boxes_per_cell,
                                            num_classes=3, lambda_noobj=lam)
            losses.append(float(np.mean(np.asarray(terms["obj"]) + np.asarray(terms["noobj"]))))
        c_scan = float(grid[int(np.argmin(losses))])
        ratio = (2 * lam * n_empty * 0.5) / (2 * n_obj * 0.5)
        result["c_star"][lam], result["c_scan"][lam], result["push_ratio"][lam] = c_star, c_scan, ratio
        print(f"{lam:>12g} {c_star:>11.4f} {c_scan:>16.3f} {ratio:>13.1f}x")
    return result
