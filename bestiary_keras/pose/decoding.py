"""OpenPose decoding: peaks, limb candidates by the PAF line integral, matching, assembly.

Cao et al., CVPR 2017, Sec. 3.4-3.5 and the authors' released test code:

1. **Peaks**: non-maximum suppression on each part confidence map (local maxima above a
   threshold); the maps are first resized to the image by bicubic interpolation, as in the
   released code, so peaks have the image's resolution.
2. **Limb candidates**: every pair (peak of the limb's first joint, peak of its second joint)
   is scored by the line integral of the PAF along the segment (the paper's Eq. 10)::

       E = integral_0^1 L_c(p(u)) . (d_j2 - d_j1) / ||d_j2 - d_j1|| du,

   approximated by ``num_samples`` equally spaced samples, plus the released code's distance
   prior ``min(0.5 * H / ||d_j2 - d_j1|| - 1, 0)`` (``H``: the image height), and kept only
   when at least ``min_fraction`` (80%) of the samples exceed ``paf_threshold`` and the score
   is positive.
3. **Bipartite matching per limb type**: the paper's greedy rule (best candidate first, each
   peak used once) or the maximum-weight matching (``scipy.optimize.linear_sum_assignment``).
4. **Assembly**: connections sharing a peak are merged into people, limb type by limb type;
   people with fewer than ``min_parts`` joints or a low mean score are dropped.

A decoded person is a dict ``{"keypoints": (J, 3) [x, y, score], "score": float}`` in image
coordinates (``datasets.figures``' convention: pixel ``c`` covers ``[c, c + 1)``); a joint that
was not found has ``[0, 0, 0]``. Peaks, candidates and connections (``return_details``) are in
the cells of the grid they were found on (cell ``m`` centred at ``m``).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.pose.paf import check_limbs, to_image_coordinates

__all__ = [
    "MATCHINGS",
    "assemble_people",
    "check_maps",
    "decode",
    "find_peaks",
    "limb_scores",
    "match_greedy",
    "match_optimal",
    "resize_maps",
]


def check_maps(maps, pafs, limbs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates one image's confidence maps ``(h, w, J)`` and PAFs ``(h, w, 2 L)``."""
    maps, pafs = np.asarray(maps, np.float32), np.asarray(pafs, np.float32)
    if maps.ndim != 3 or pafs.ndim != 3:
        raise ValueError(
            f"decode works on one image: maps must be (h, w, joints) and pafs (h, w, 2 * limbs), "
            f"got maps {maps.shape} and pafs {pafs.shape} (take element i of a batch)."
        )
    if maps.shape[:2] != pafs.shape[:2]:
        raise ValueError(
            f"maps {maps.shape} and pafs {pafs.shape} must have the same height and width."
        )
    limbs = check_limbs(limbs, maps.shape[-1])
    if pafs.shape[-1] != 2 * len(limbs):
        raise ValueError(
            f"pafs has {pafs.shape[-1]} channels but the skeleton has {len(limbs)} limbs: "
            f"expected 2 * {len(limbs)} = {2 * len(limbs)} (x and y per limb)."
        )
    return maps, pafs, limbs


def resize_maps(maps, size: int) -> np.ndarray:
    """Bicubic resize of ``(h, w, C)`` maps to ``(size, size, C)`` (pixel centres aligned)."""
    import cv2

    maps = np.asarray(maps, np.float32)
    if maps.shape[0] == size and maps.shape[1] == size:
        return maps
    channels = maps.shape[-1]
    # cv2.resize handles at most 512 channels and drops a trailing axis of 1
    out = np.concatenate([cv2.resize(maps[..., i:i + 256], (size, size),
                                     interpolation=cv2.INTER_CUBIC).reshape(size, size, -1)
                          for i in range(0, channels, 256)], axis=-1)
    return out


def find_peaks(maps, threshold: float = 0.1, window: int = 5) -> list[np.ndarray]:
    """Non-maximum suppression on each confidence map.

    Args:
        maps: ``(h, w, J)`` confidence maps.
        threshold: a peak's value must exceed it.
        window: side of the square neighbourhood in which a peak must be the maximum.

    Returns:
        One float32 array ``(K_j, 3)`` per joint, rows ``[x, y, value]`` in the maps' pixels,
        highest value first.
    """
    from scipy.ndimage import maximum_filter

    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (h, w, joints), got {maps.shape}.")
    if int(window) < 1:
        raise ValueError(f"window must be >= 1 pixel, got {window!r}.")
    local_max = maximum_filter(maps, size=(int(window), int(window), 1), mode="constant",
                               cval=-np.inf)
    is_peak = (maps >= local_max) & (maps > threshold)
    radius = int(window) // 2
    peaks = []
    for j in range(maps.shape[-1]):
        ys, xs = np.nonzero(is_peak[..., j])
        values = maps[ys, xs, j]
        order = np.argsort(-values, kind="stable")
        kept = []
        for n in order:  # a plateau (equal neighbours) gives one peak, the first in scan order
            if all(max(abs(xs[n] - xs[k]), abs(ys[n] - ys[k])) > radius for k in kept):
                kept.append(n)
        kept = np.asarray(kept, np.int64)
        peaks.append(np.stack([xs[kept], ys[kept], values[kept]], axis=1).astype(np.float32)
                     .reshape(-1, 3))
    return peaks


def limb_scores(peaks_a, peaks_b, paf, *, num_samples: int = 10, paf_threshold: float = 0.05,
                min_fraction: float = 0.8, height: float | None = None) -> np.ndarray:
    """Scores every candidate limb (peak of joint a, peak of joint b) by the PAF line integral.

    Args:
        peaks_a, peaks_b: ``(Ka, 3)`` and ``(Kb, 3)`` peaks ``[x, y, value]`` (map pixels).
        paf: ``(h, w, 2)`` the limb's field (x, y components).
        num_samples: points sampled on each segment.
        paf_threshold: a sample counts when its projection exceeds this.
        min_fraction: share of samples that must count (the released code: 0.8).
        height: ``H`` of the distance prior (default: the map's height).

    Returns:
        float32 ``(Ka, Kb)``: the score (mean projection + distance prior), ``-inf`` for
        rejected candidates.
    """
    peaks_a = np.asarray(peaks_a, np.float32).reshape(-1, 3)
    peaks_b = np.asarray(peaks_b, np.float32).reshape(-1, 3)
    paf = np.asarray(paf, np.float32)
    if paf.ndim != 3 or paf.shape[-1] != 2:
        raise ValueError(f"paf must be one limb's field (h, w, 2), got {paf.shape}.")
    scores = np.full((len(peaks_a), len(peaks_b)), -np.inf, np.float32)
    if not len(peaks_a) or not len(peaks_b):
        return scores
    h, w = paf.shape[:2]
    height = float(h if height is None else height)
    start = peaks_a[:, None, :2]                      # (Ka, 1, 2)
    delta = peaks_b[None, :, :2] - start              # (Ka, Kb, 2)
    norm = np.linalg.norm(delta, axis=-1)             # (Ka, Kb)
    unit = delta / np.maximum(norm, 1e-6)[..., None]
    t = np.linspace(0.0, 1.0, int(num_samples), dtype=np.float32)
    points = start[:, :, None, :] + t[None, None, :, None] * delta[:, :, None, :]  # (Ka,Kb,S,2)
    xs = np.clip(np.rint(points[..., 0]).astype(np.int64), 0, w - 1)
    ys = np.clip(np.rint(points[..., 1]).astype(np.int64), 0, h - 1)
    samples = paf[ys, xs]                             # (Ka, Kb, S, 2)
    projection = np.sum(samples * unit[:, :, None, :], axis=-1)
    prior = np.minimum(0.5 * height / np.maximum(norm, 1e-6) - 1.0, 0.0)
    score = projection.mean(axis=-1) + prior
    fraction = np.mean(projection > paf_threshold, axis=-1)
    valid = (fraction >= min_fraction) & (score > 0) & (norm > 1e-6)
    scores[valid] = score[valid]
    return scores


def match_greedy(scores) -> np.ndarray:
    """The paper's greedy matching: best-scoring candidate first, each peak used at most once.

    Args:
        scores: ``(Ka, Kb)`` candidate scores, ``-inf`` (or any non-finite value) = no candidate.

    Returns:
        ``(M, 3)`` float array of chosen ``[i, j, score]``.
    """
    scores = np.asarray(scores, np.float32)
    i_idx, j_idx = np.nonzero(np.isfinite(scores))
    values = scores[i_idx, j_idx]
    order = np.argsort(-values, kind="stable")
    used_a, used_b, chosen = set(), set(), []
    for n in order:
        i, j = int(i_idx[n]), int(j_idx[n])
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        chosen.append((i, j, float(values[n])))
        if len(chosen) == min(scores.shape):
            break
    return np.asarray(chosen, np.float32).reshape(-1, 3)


def match_optimal(scores) -> np.ndarray:
    """Maximum-weight bipartite matching (``scipy.optimize.linear_sum_assignment``).

    The candidates' scores are positive, so giving rejected pairs weight 0 and dropping the
    zero-weight pairs of the assignment is the maximum-weight matching (not every peak needs a
    partner). Same input and output as ``match_greedy``.
    """
    from scipy.optimize import linear_sum_assignment

    scores = np.asarray(scores, np.float32)
    if scores.size == 0:
        return np.zeros((0, 3), np.float32)
    weights = np.where(np.isfinite(scores), scores, 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = np.isfinite(scores[rows, cols])
    chosen = np.stack([rows[keep], cols[keep], scores[rows, cols][keep]], axis=1)
    return chosen[np.argsort(-chosen[:, 2], kind="stable")].astype(np.float32).reshape(-1, 3)


MATCHINGS = {"greedy": match_greedy, "optimal": match_optimal}
"""The two bipartite matchings, by name (``decode(..., matching=...)``)."""


def assemble_people(peaks, connections, limbs, *, min_parts: int = 3,
                    min_mean_score: float = 0.2) -> list[dict]:
    """Merges the chosen limbs into people (the released code's assembly).

    Limb types are visited in order; a connection whose first peak already belongs to a person
    extends it, a connection touching two people merges them when they share no joint, and
    any other connection starts a new person.

    Args:
        peaks: one ``(K_j, 3)`` array per joint (``[x, y, value]``).
        connections: one ``(M_c, 3)`` array ``[i, j, score]`` per limb (peak indices of the
            limb's first and second joint).
        limbs: ``(L, 2)`` joint pairs.
        min_parts: people with fewer joints are dropped.
        min_mean_score: people whose total score per joint is lower are dropped.

    Returns:
        A list of ``{"keypoints": (J, 3), "score": float}``, best first.
    """
    num_joints = len(peaks)
    limbs = check_limbs(limbs, num_joints)
    if len(connections) != len(limbs):
        raise ValueError(
            f"connections has {len(connections)} entries but there are {len(limbs)} limbs: "
            "give one (M, 3) array per limb (empty when nothing matched)."
        )
    people = []  # each: [ids (J,) int, total score]
    for (a, b), chosen in zip(limbs, connections):
        for i, j, score in np.asarray(chosen, np.float32).reshape(-1, 3):
            i, j = int(i), int(j)
            found = [p for p in people if p[0][a] == i or p[0][b] == j]
            if len(found) == 1:
                person = found[0]
                if person[0][b] != j:
                    if person[0][b] >= 0:  # replace a weaker peak of the same joint
                        person[1] -= float(peaks[b][person[0][b], 2])
                    person[0][b] = j
                    person[1] += float(peaks[b][j, 2]) + float(score)
                if person[0][a] < 0:
                    person[0][a] = i
                    person[1] += float(peaks[a][i, 2])
            elif len(found) == 2:
                first, second = found
                if not np.any((first[0] >= 0) & (second[0] >= 0)):
                    first[0] = np.maximum(first[0], second[0])
                    first[1] += second[1] + float(score)
                    people = [p for p in people if p is not second]
                else:
                    if first[0][b] < 0:
                        first[0][b] = j
                        first[1] += float(peaks[b][j, 2]) + float(score)
            else:
                ids = np.full(num_joints, -1, np.int64)
                ids[a], ids[b] = i, j
                people.append([ids, float(peaks[a][i, 2] + peaks[b][j, 2]) + float(score)])
    out = []
    for ids, total in people:
        count = int(np.sum(ids >= 0))
        if count < min_parts or total / count < min_mean_score:
            continue
        keypoints = np.zeros((num_joints, 3), np.float32)
        for joint, k in enumerate(ids):
            if k >= 0:
                keypoints[joint] = peaks[joint][k]
        # complete, confident people first: the sum of joint and limb scores per possible one
        out.append({"keypoints": keypoints, "score": total / (num_joints + len(limbs))})
    out.sort(key=lambda p: -p["score"])
    return out


def decode(maps, pafs, limbs, *, image_size: int | None = None, matching: str = "greedy",
           upsample: bool = True, peak_threshold: float = 0.1, window: int = 5,
           num_samples: int = 10, paf_threshold: float = 0.05, min_fraction: float = 0.8,
           min_parts: int = 3, min_mean_score: float = 0.2, return_details: bool = False):
    """Confidence maps and PAFs of one image -> people (the whole bottom-up parse).

    Args:
        maps: ``(h, w, J)`` part confidence maps.
        pafs: ``(h, w, 2 L)`` part affinity fields.
        limbs: ``(L, 2)`` joint pairs, in the order of the PAF channels.
        image_size: side of the image (default: the maps' side, stride 1).
        matching: ``"greedy"`` (the paper) or ``"optimal"`` (``linear_sum_assignment``).
        upsample: resize maps and PAFs to the image (bicubic) before decoding, as the released
            code does; otherwise peaks are found on the maps and converted to image pixels.
        peak_threshold, window: ``find_peaks``' arguments (``window`` in decoding pixels).
        num_samples, paf_threshold, min_fraction: ``limb_scores``' arguments.
        min_parts, min_mean_score: ``assemble_people``' arguments.
        return_details: also return ``{"peaks", "scores", "connections"}`` (decoding pixels).

    Returns:
        A list of people ``{"keypoints": (J, 3) [x, y, score], "score"}`` in image pixels
        (``[]`` when the image has nobody), and the details when asked.
    """
    maps, pafs, limbs = check_maps(maps, pafs, limbs)
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {sorted(MATCHINGS)}, got {matching!r}.")
    map_size = maps.shape[0]
    image_size = map_size if image_size is None else int(image_size)
    if upsample and image_size != map_size:
        maps, pafs = resize_maps(maps, image_size), resize_maps(pafs, image_size)
    peaks = find_peaks(maps, peak_threshold, window)
    scores, connections = [], []
    for c, (a, b) in enumerate(limbs):
        s = limb_scores(peaks[a], peaks[b], pafs[..., 2 * c: 2 * c + 2],
                        num_samples=num_samples, paf_threshold=paf_threshold,
                        min_fraction=min_fraction)
        scores.append(s)
        connections.append(MATCHINGS[matching](s))
    people = assemble_people(peaks, connections, limbs, min_parts=min_parts,
                             min_mean_score=min_mean_score)
    for person in people:  # decoding cells -> image coordinates (cell m is centred at m + 0.5)
        found = person["keypoints"][:, 2] > 0
        person["keypoints"][found, :2] = to_image_coordinates(
            person["keypoints"][found, :2], image_size, maps.shape[0])
    if return_details:
        return people, {"peaks": peaks, "scores": scores, "connections": connections}
    return people
