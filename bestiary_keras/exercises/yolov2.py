"""Exercises of notebook 07 (YOLOv2): k-means priors with the IoU distance against Euclidean,
where a prediction can land with and without the sigmoid, and the passthrough layer by hand.

The solutions use ``detection.priors`` (``kmeans_anchors``, ``shape_iou``), ``detection.yolov2``
(``yolo_v2``, ``SpaceToDepth``) and the chapter's scene recipe; nothing is trained. ``seed``
picks the scenes (0 is the chapter's training split, ``data.SPLIT_SEEDS``) and the initial
weights of the untrained network of exercise 2.
"""

from __future__ import annotations

import functools

import keras
import numpy as np

from bestiary_keras.datasets.scenes import make_scenes
from bestiary_keras.detection import data, priors, yolov2

__all__ = [
    "WIDE_SETTINGS",
    "box_sizes",
    "euclidean_kmeans",
    "solution_1",
    "solution_2",
    "solution_3",
    "space_to_depth_by_hand",
]

STRIDE = 8
WIDE_SETTINGS = {**data.SCENE_SETTINGS, "object_size": (6, 48), "max_objects": 3}
"""Scenes whose objects span 6 to 48 pixels (the chapter's: 12 to 32), a range closer to VOC's."""


@functools.lru_cache(maxsize=4)
def _scenes(num_images: int, seed: int, wide: bool):
    return make_scenes(int(num_images), seed=int(seed),
                       **(WIDE_SETTINGS if wide else data.SCENE_SETTINGS))


def box_sizes(num_images: int = 500, seed: int = 0, wide: bool = False) -> np.ndarray:
    """``(M, 2)`` widths and heights (pixels) of every object of the scenes."""
    scenes = _scenes(num_images, seed, wide)
    return (scenes.boxes[..., 2:] - scenes.boxes[..., :2])[scenes.labels >= 0].astype(np.float32)


def euclidean_kmeans(sizes, k: int, *, iterations: int = 100, seed: int = 0) -> np.ndarray:
    """Plain k-means on ``(w, h)`` with the squared Euclidean distance: ``(k, 2)`` centroids.

    ``priors.kmeans_anchors`` with ``distance="euclidean"``: the same start (``k`` distinct
    random boxes, the same seed) and Lloyd's iterations, only the distance differs: the paper's
    baseline, "standard k-means with Euclidean distance".
    """
    return priors.kmeans_anchors(sizes, k, iterations=iterations, seed=seed,
                                 distance="euclidean")[0]


def solution_1(seed: int = 0, num_images: int = 500, ks=tuple(range(1, 10))) -> dict:
    """Exercise 1, dimension priors: does the IoU distance beat the Euclidean one?

    **Exercise.** Reproduce the paper's Figure 2 on our boxes: the mean IoU of every box with
    its closest prior for k = 1 ... 9, with k-means on ``d = 1 - IoU`` (``kmeans_anchors``)
    and with plain Euclidean k-means on ``(w, h)``. Then, on scenes whose objects span 6 to 48
    pixels, compare the two for k = 3 separately on the small boxes (side below 16 pixels) and
    the large ones (above 32): the paper's argument is that "larger boxes generate more error
    than smaller boxes" with the Euclidean distance.

    **Method.** Both clusterings start from the same k random boxes (same seed); the score is
    ``priors.shape_iou`` of each box with its best centroid, averaged ("Avg IOU").

    **Expected outcome.** On the chapter's nearly square 12- to 32-pixel shapes the two curves
    agree within 0.01 for every k (seed 0, k = 3: 0.848 against 0.845; k = 5: 0.894 both),
    rising from 0.65 at k = 1 to about 0.92 at k = 9: with sizes in so narrow a range the
    distance hardly matters. With 6- to 48-pixel objects and k = 3 the IoU distance spaces its
    centroids more evenly in ratio (sides of about 12, 24, 39 pixels against Euclidean's 14,
    27, 41) and gives the small boxes 0.03 to 0.05 more mean IoU (seeds 0, 1, 2: 0.696 against
    0.666, 0.688 against 0.639, 0.714 against 0.668), while the large boxes lose at most 0.01:
    overall a gain of 0 to 0.008, of the order of the paper's Table 1 (61.0 against 58.7 for
    5 priors on VOC).

    Returns:
        ``{"curve_iou": {k: mean IoU}, "curve_euclidean": {k: ...}, "wide": {"iou": {...},
        "euclidean": {...}}}`` where ``wide`` holds ``all``, ``small``, ``large`` mean IoUs and
        the centroids' sides for k = 3.
    """
    sizes = box_sizes(num_images, seed)
    result = {"curve_iou": {}, "curve_euclidean": {}}
    print(f"mean IoU with the closest prior, {len(sizes)} boxes of the chapter (seed {seed})")
    print(f"{'k':>3} {'d = 1 - IoU':>12} {'Euclidean':>10}")
    for k in ks:
        result["curve_iou"][k] = priors.kmeans_anchors(sizes, k, seed=seed)[1]
        centroids = euclidean_kmeans(sizes, k, seed=seed)
        result["curve_euclidean"][k] = float(priors.shape_iou(sizes, centroids).max(1).mean())
        print(f"{k:>3} {result['curve_iou'][k]:>12.3f} {result['curve_euclidean'][k]:>10.3f}")

    wide = box_sizes(num_images, seed, wide=True)
    side = np.sqrt(wide.prod(axis=1))
    small, large = side < 16, side > 32
    result["wide"] = {}
    print(f"objects of 6 to 48 pixels: {len(wide)} boxes, {small.sum()} small (< 16 px), "
          f"{large.sum()} large (> 32 px); k = 3")
    for name, centroids in (("iou", priors.kmeans_anchors(wide, 3, seed=seed)[0]),
                            ("euclidean", euclidean_kmeans(wide, 3, seed=seed))):
        best = priors.shape_iou(wide, centroids).max(axis=1)
        sides = np.sort(np.sqrt(centroids.prod(axis=1)))
        result["wide"][name] = {"all": float(best.mean()), "small": float(best[small].mean()),
                                "large": float(best[large].mean()), "sides": sides.tolist()}
        r = result["wide"][name]
        print(f"  {name:>9}: centroid sides {', '.join(f'{v:.1f}' for v in sides)} px, mean IoU all "
              f"{r['all']:.3f}, small {r['small']:.3f}, large {r['large']:.3f}")
    return result


def solution_2(seed: int = 0, num_images: int = 100) -> dict:
    """Exercise 2, direct location prediction: where can an untrained YOLOv2 put its boxes?

    **Exercise.** With Faster R-CNN's offsets the centre is ``(c_x + 1/2) s + t_x p_w``; with
    YOLOv2's direct prediction ``(c_x + sigmoid(t_x)) s``. Build the notebook's final detector
    (``yolo_v2`` with 3 k-means priors), untrained, run it on test scenes and decode its raw
    ``t_x, t_y`` both ways: what share of the predicted centres leaves the cell that predicts
    them, and how far from the cell centre do they land on average? How many pixels does a
    change of ``t_x`` by 1 move the centre in each case?

    **Method.** The two decodings of ``yolov2``'s docstring on the same raw outputs. The slope
    of the direct one is ``s sigmoid'(t) <= s / 4 = 2`` pixels per unit of ``t``, of the offset
    one ``p_w``, 16 to 30 pixels.

    **Expected outcome.** Direct: no centre ever leaves its cell (share 0, exactly), 0.7 to 1.8
    pixels from the cell centre on average. Offsets: 66% to 95% of the centres leave their cell
    at initialisation (seeds 0, 1, 2: 0.66, 0.95, 0.94; mean distance 8 to 23 pixels, on a
    64-pixel image), and each unit of ``t_x`` moves the centre 8 to 15 times further than the
    sigmoid can at its steepest. That is
    the paper's "model instability, especially during the early iterations": every anchor can
    start by predicting, and being trained on, objects far from it.

    Returns:
        ``{"outside_direct", "outside_offset", "mean_shift_direct", "mean_shift_offset",
        "slope_direct_max", "slope_offset": [p_w ...], "raw_std"}``.
    """
    sizes = box_sizes(500, seed)
    anchors, _ = priors.kmeans_anchors(sizes, 3, seed=seed)
    keras.utils.set_random_seed(seed)
    model = yolov2.yolo_v2((64, 64, 3), 3, anchors=anchors)
    images = make_scenes(num_images, seed=data.SPLIT_SEEDS["test"], **data.SCENE_SETTINGS).images
    raw = np.asarray(model(images.astype("float32"), training=False))
    t = raw[..., 0:2].astype(np.float64)  # (N, S, S, A, 2): t_x, t_y
    direct = (1.0 / (1.0 + np.exp(-t)) - 0.5) * STRIDE  # pixels from the cell centre
    offset = t * anchors[None, None, None].astype(np.float64)
    half = STRIDE / 2.0
    result = {
        "raw_std": float(t.std()),
        "outside_direct": float(np.mean(np.abs(direct).max(-1) >= half)),
        "outside_offset": float(np.mean(np.abs(offset).max(-1) > half)),
        "mean_shift_direct": float(np.linalg.norm(direct, axis=-1).mean()),
        "mean_shift_offset": float(np.linalg.norm(offset, axis=-1).mean()),
        "slope_direct_max": STRIDE / 4.0,
        "slope_offset": anchors[:, 0].tolist(),
    }
    shapes = ", ".join(f"{w:.1f} x {h:.1f}" for w, h in anchors)
    print(f"untrained YOLOv2 (seed {seed}), 3 k-means priors ({shapes} pixels), "
          f"{num_images} test scenes; raw t_x, t_y: std {result['raw_std']:.2f}")
    print(f"{'':<38} {'direct':>8} {'offsets':>9}")
    print(f"{'centres outside their cell (share)':<38} {result['outside_direct']:>8.3f} "
          f"{result['outside_offset']:>9.3f}")
    print(f"{'mean distance to the cell centre (px)':<38} {result['mean_shift_direct']:>8.2f} "
          f"{result['mean_shift_offset']:>9.2f}")
    print(f"{'pixels per unit of t_x':<38} {'<= 2':>8} "
          f"{'/'.join(f'{v:.0f}' for v in result['slope_offset']):>9}")
    return result


def space_to_depth_by_hand(x, block: int = 2) -> np.ndarray:
    """YOLOv2's "reorg" written with NumPy indexing: output channel ``(i * b + j) * C + c``
    takes pixel ``(b y + i, b x + j)``, channel ``c`` (TensorFlow's order)."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    out = np.empty((n, h // block, w // block, block * block * c), x.dtype)
    for i in range(block):
        for j in range(block):
            k = (i * block + j) * c
            out[..., k:k + c] = x[:, i::block, j::block, :]
    return out


def solution_3(seed: int = 0) -> dict:
    """Exercise 3, the passthrough layer by hand.

    **Exercise.** Write space-to-depth with NumPy slicing (channel ``(i * 2 + j) * C + c`` of
    output cell ``(y, x)`` is input pixel ``(2y + i, 2x + j)``, channel ``c``) and check it
    against ``yolov2.SpaceToDepth`` and ``tf.nn.space_to_depth`` on a random 16 x 16 x 16 map.
    Show that it loses nothing (the inverse rearrangement gives the input back), unlike a 2 x 2
    max pooling to the same 8 x 8 grid. Then count by hand the parameters the passthrough adds
    to the notebook's detector (a 1 x 1 convolution from the backbone's 48 stride-4 channels
    to 16, with batch norm, and 64 more input channels for the 3 x 3 head convolution of 64
    filters) and compare with ``yolo_v2(passthrough=True)`` minus ``passthrough=False``.

    **Expected outcome.** The three rearrangements agree exactly; the inverse restores the
    map exactly, while max pooling, repeated back to 16 x 16, is exact on a quarter of the pixels
    only (mean absolute error 0.29 on uniform [0, 1) values). Parameters:
    ``48 * 16 + 4 * 16 + 3 * 3 * 64 * 64 = 768 + 64 + 36,864 = 37,696`` (batch norm's 4
    vectors included), exactly the models' difference (251,496 - 213,800): the notebook's
    "about 38,000".

    Returns:
        ``{"max_error_keras", "max_error_tf", "inverse_error", "pooling_error",
        "params_by_hand", "params_models"}``.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.random((1, 16, 16, 16)).astype(np.float32)
    mine = space_to_depth_by_hand(x)
    layer = np.asarray(yolov2.SpaceToDepth(2)(x))
    reference = tf.nn.space_to_depth(x, 2).numpy()
    back = mine.reshape(1, 8, 8, 2, 2, 16).transpose(0, 1, 3, 2, 4, 5).reshape(x.shape)
    pooled = x.reshape(1, 8, 2, 8, 2, 16).max(axis=(2, 4))
    pooled_up = np.repeat(np.repeat(pooled, 2, axis=1), 2, axis=2)
    by_hand = 48 * 16 + 4 * 16 + 3 * 3 * 64 * 64
    models = (yolov2.yolo_v2((64, 64, 3), 3, passthrough=True).count_params()
              - yolov2.yolo_v2((64, 64, 3), 3, passthrough=False).count_params())
    result = {"shape": mine.shape, "max_error_keras": float(np.abs(mine - layer).max()),
              "max_error_tf": float(np.abs(mine - reference).max()),
              "inverse_error": float(np.abs(back - x).max()),
              "pooling_error": float(np.abs(pooled_up - x).mean()),
              "pooling_exact_share": float(np.mean(pooled_up == x)),
              "params_by_hand": by_hand, "params_models": int(models)}
    print(f"16x16x16 -> {mine.shape[1:]}: largest difference from SpaceToDepth "
          f"{result['max_error_keras']:g}, from tf.nn.space_to_depth {result['max_error_tf']:g}")
    print(f"inverse rearrangement: largest error {result['inverse_error']:g}; 2x2 max pooling "
          f"(repeated back): mean error {result['pooling_error']:.3f}, "
          f"{result['pooling_exact_share']:.0%} of the pixels exact")
    print(f"parameters the passthrough adds: by hand 48*16 + 4*16 + 3*3*64*64 = {by_hand:,}; "
          f"the models' difference {models:,}")
    return result
