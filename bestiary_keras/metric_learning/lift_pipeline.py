"""LIFT on whole images (notebook 17): the trained DET, ORI and DESC networks of ``lift`` run
as a feature pipeline, OpenCV's SIFT as the baseline, and their evaluation on image pairs.

- ``detect_sift``: SIFT points, angles (in ``lift``'s crop convention) and descriptors.
- ``score_map`` / ``detect_learned``: DET's score map and its local maxima.
- ``orient`` / ``describe``: ORI's angles and DESC's descriptors at points of an image.
- ``centre_crops`` / ``patch_orientations``: the same on the training patches.
- ``evaluate_pipelines``: repeatability, matching score and mAP over image pairs.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from bestiary_keras.metric_learning import evaluation, siamese
from bestiary_keras.metric_learning.lift import crop_and_rotate
from bestiary_keras.metric_learning.patches import normalize_patches

__all__ = [
    "centre_crops", "describe", "detect_learned", "detect_sift", "evaluate_pipelines", "orient",
    "patch_orientations", "score_map", "to_uint8",
]


def to_uint8(image) -> np.ndarray:
    """A grey float image in [0, 1] as uint8 (for OpenCV)."""
    return (np.clip(np.asarray(image), 0, 1) * 255).astype(np.uint8)


def detect_sift(image, max_points: int = 300, border: int = 16):
    """OpenCV SIFT on a grey image: points ``(K, 2)``, angles ``(K,)`` in radians (our crop
    convention, checked against rotated images) and 128-D descriptors, strongest first, away
    from the border."""
    import cv2

    sift = cv2.SIFT_create()
    keypoints, descriptors = sift.detectAndCompute(to_uint8(image), None)
    if descriptors is None:
        return np.zeros((0, 2)), np.zeros(0), np.zeros((0, 128), np.float32)
    h, w = np.asarray(image).shape[:2]
    order = np.argsort([-k.response for k in keypoints], kind="stable")
    points, angles, kept = [], [], []
    seen = set()
    for i in order:
        x, y = keypoints[i].pt
        key = (round(x, 1), round(y, 1))
        if not (border <= x < w - border and border <= y < h - border) or key in seen:
            continue
        seen.add(key)  # OpenCV repeats a point for each of its dominant orientations
        points.append((x, y))
        angles.append(math.radians(keypoints[i].angle))
        kept.append(i)
        if len(kept) == max_points:
            break
    return (np.asarray(points, np.float64).reshape(-1, 2), np.asarray(angles, np.float64),
            descriptors[kept].astype(np.float32))


def score_map(det: keras.Model, image) -> np.ndarray:
    """DET's score map over a whole grey image ``(H, W)``."""
    return np.asarray(det(np.asarray(image, np.float32)[None, ..., None], training=False))[0]


def detect_learned(det: keras.Model, image, max_points: int = 300, border: int = 16,
                   nms_size: int = 5) -> np.ndarray:
    """Keypoints of DET: local maxima of its score map (``skimage.feature.peak_local_max`` in
    an ``nms_size`` window), strongest first, away from the border. Returns ``(K, 2)`` as
    ``(x, y)``."""
    from skimage.feature import peak_local_max

    if int(nms_size) != nms_size or nms_size < 1 or nms_size % 2 == 0:
        raise ValueError(f"nms_size must be an odd whole number >= 1 (a window centred on the "
                         f"pixel), got {nms_size!r}; use {max(1, int(nms_size) // 2 * 2 + 1)}.")
    s = score_map(det, image)
    # Every pixel that is the maximum of its window; the global minimum counts too (as a plain
    # maximum filter would keep it), hence threshold_abs just below it.
    ys, xs = peak_local_max(s, min_distance=int(nms_size) // 2, exclude_border=int(border),
                            threshold_abs=np.nextafter(s.min(), -np.inf),
                            num_peaks=int(max_points)).T
    return np.stack([xs, ys], -1).astype(np.float64).reshape(-1, 2)


def orient(ori: keras.Model, image, points, crop_size: int = 32) -> np.ndarray:
    """ORI's angle (radians) at each point of a whole image."""
    if len(points) == 0:
        return np.zeros(0)
    img = np.asarray(image, np.float32)[None, ..., None]
    crops = crop_and_rotate(img, np.asarray(points, np.float32), np.zeros(len(points), np.float32),
                            crop_size, image_index=np.zeros(len(points)))
    cos_sin = np.asarray(ori(normalize_patches(np.asarray(crops)), training=False))
    return np.arctan2(cos_sin[:, 1], cos_sin[:, 0])


def describe(desc: keras.Model, image, points, angles, crop_size: int = 32) -> np.ndarray:
    """DESC's descriptors of rotated crops of a whole image (each crop normalised to zero mean
    and unit standard deviation, like the training patches)."""
    dim = int(desc.outputs[0].shape[-1])
    if len(points) == 0:
        return np.zeros((0, dim), np.float32)
    img = np.asarray(image, np.float32)[None, ..., None]
    crops = np.asarray(crop_and_rotate(img, np.asarray(points, np.float32),
                                       np.asarray(angles, np.float32), crop_size,
                                       image_index=np.zeros(len(points))))
    return siamese.embed(desc, normalize_patches(crops))


def evaluate_pipelines(pairs, pipelines: dict, pixel_threshold: float = 5.0) -> dict:
    """Repeatability, matching score and matches' average precision of several pipelines,
    averaged over image pairs with known homographies.

    Args:
        pairs: ``[(image_1, image_2, homography), ...]`` (``patches.make_image_pairs``).
        pipelines: name -> ``f(image) -> (points (K, 2), descriptors (K, D))``.
        pixel_threshold: a point repeats / a match is right within this distance.

    Returns:
        name -> ``{"repeatability", "matching_score", "mAP", "points"}`` (means over pairs) and
        ``"_matches"``: name -> the last pair's ``(points_1, points_2, i, j, correct)`` for
        figures.
    """
    if len(pairs) == 0:
        raise ValueError("pairs is empty: pass at least one (image_1, image_2, homography), "
                         "e.g. from patches.make_image_pairs.")
    results, last = {}, {}
    for name, pipeline in pipelines.items():
        rows = []
        for image_1, image_2, h in pairs:
            p1, d1 = pipeline(image_1)
            p2, d2 = pipeline(image_2)
            rows.append((
                evaluation.repeatability(p1, p2, h, image_1.shape, image_2.shape,
                                         pixel_threshold),
                evaluation.matching_score(p1, p2, d1, d2, h, image_1.shape, image_2.shape,
                                          pixel_threshold),
                evaluation.matches_average_precision(p1, p2, d1, d2, h, pixel_threshold),
                (len(p1) + len(p2)) / 2))
        rep, ms, ap, npts = np.mean(rows, axis=0)
        results[name] = {"repeatability": float(rep), "matching_score": float(ms),
                         "mAP": float(ap), "points": float(npts)}
        i, j, _ = evaluation.match_descriptors(d1, d2)
        last[name] = (p1, p2, i, j,
                      evaluation.correct_matches(p1, p2, i, j, h, pixel_threshold))
    results["_matches"] = last
    return results


def centre_crops(patches_, angles=None, crop_size: int = 32, normalize: bool = True):
    """Crops at the middle of each patch ``(N, S, S)``, rotated by ``angles`` (radians, default
    0), normalised per crop (as ORI and DESC see them). Returns ``(N, c, c, 1)``."""
    p = np.asarray(patches_, np.float32)
    if p.ndim == 3:
        p = p[..., None]
    n, h, w = p.shape[:3]
    if n == 0:
        return np.zeros((0, crop_size, crop_size, 1), np.float32)
    angles = np.zeros(n, np.float32) if angles is None else np.asarray(angles, np.float32)
    centres = np.tile([[w / 2, h / 2]], (n, 1)).astype(np.float32)
    crops = np.asarray(crop_and_rotate(p, centres, angles, crop_size))
    return normalize_patches(crops) if normalize else crops


def patch_orientations(ori: keras.Model, patches_, crop_size: int = 32) -> np.ndarray:
    """ORI's angle (radians) of the upright centre crop of each patch."""
    cos_sin = np.asarray(ori(centre_crops(patches_, None, crop_size), training=False))
    return np.arctan2(cos_sin[:, 1], cos_sin[:, 0])
