"""Exercises of notebook 05 (Faster R-CNN): what the anchors can cover, and how balanced the RPN's
mini-batch really is.

All three solutions count on the chapter's scenes with the package's own anchor code
(``detection.boxes.generate_anchors``, ``assign_anchors``, ``sample_balanced``) and
``geometry.pairwise_iou``; nothing is trained. ``seed`` picks the scenes: seed 0 is the chapter's
training split, 1 its test split, 2 its validation split (``data.SPLIT_SEEDS``).
"""

from __future__ import annotations

import functools

import numpy as np

from bestiary_keras import geometry
from bestiary_keras.datasets.scenes import make_scenes
from bestiary_keras.detection import boxes, data, priors

__all__ = [
    "NOTEBOOK_ANCHORS",
    "best_anchor_iou",
    "scene_boxes",
    "solution_1",
    "solution_2",
    "solution_3",
]

IMAGE_SIZE = 64
STRIDE = 8
NOTEBOOK_ANCHORS = ((12, 20, 32), (0.5, 1.0, 2.0))
"""Notebook 05's anchor scales (pixels) and aspect ratios (h / w)."""


@functools.lru_cache(maxsize=4)
def _scenes(num_images: int, seed: int):
    return make_scenes(int(num_images), seed=int(seed), **data.SCENE_SETTINGS)


def scene_boxes(num_images: int = 500, seed: int = 0):
    """``(boxes (M, 4), labels (M,), image_index (M,))``: every object of ``num_images`` scenes."""
    scenes = _scenes(num_images, seed)
    valid = scenes.labels >= 0
    return (scenes.boxes[valid].astype(np.float32), scenes.labels[valid],
            np.nonzero(valid)[0])


def best_anchor_iou(gt_boxes, scales, ratios, *, stride: int = STRIDE,
                    image_size: int = IMAGE_SIZE) -> np.ndarray:
    """``(M,)`` the IoU of each box with its best anchor (anchors of ``generate_anchors``)."""
    anchors = boxes.generate_anchors(image_size // stride, stride, scales, ratios)
    return geometry.pairwise_iou(gt_boxes, anchors).max(axis=1)


def solution_1(seed: int = 0, num_images: int = 500) -> dict:
    """Exercise 1, anchor coverage: which objects can the anchors alone cover?

    **Exercise.** Before any training, an object can only become a positive anchor at IoU
    >= 0.7 if some anchor already overlaps it that well. For every object of the scenes compute
    the IoU with its best anchor, for anchor sets of 1 or 3 scales times 1 or 3 aspect ratios
    (the notebook's is 3 x 3 on a stride-8 grid) and for 5 scales x 3 ratios. What share of the
    objects reaches 0.7, and 0.5? What do the ratios add, what do the scales add?

    **Method.** ``boxes.generate_anchors`` on the 8 x 8 map, ``geometry.pairwise_iou`` with the
    ground-truth boxes, the maximum per object.

    **Expected outcome.** Our shapes are nearly square, so the three ratios add almost nothing
    (mean best IoU 0.562 -> 0.562 for one scale, seed 0), while three scales add 0.11
    (0.56 -> 0.67). With the notebook's 9 anchors only 37% of the objects reach IoU 0.7 (seeds
    0, 1, 2: 0.377, 0.366, 0.387): the "best anchor of an object" rule of ``assign_anchors``,
    not the 0.7 threshold, gives most objects their positive anchor. About 95% reach 0.5; five
    scales lift the share at 0.7 to about half.

    Returns:
        ``{set name: {"anchors": A, "mean": ..., "at_0.7": ..., "at_0.5": ...}}``.
    """
    gt, _, _ = scene_boxes(num_images, seed)
    sets = {
        "1 scale (20) x 1 ratio": ((20,), (1.0,)),
        "1 scale (20) x 3 ratios": ((20,), (0.5, 1.0, 2.0)),
        "3 scales x 1 ratio": ((12, 20, 32), (1.0,)),
        "3 scales x 3 ratios (notebook)": NOTEBOOK_ANCHORS,
        "5 scales x 3 ratios": ((12, 16, 20, 26, 32), (0.5, 1.0, 2.0)),
    }
    results = {}
    print(f"{len(gt)} objects in {num_images} scenes (seed {seed}); anchors on the stride-8 grid")
    print(f"{'anchor set':<32} {'A':>3} {'mean best IoU':>14} {'>= 0.7':>7} {'>= 0.5':>7}")
    for name, (scales, ratios) in sets.items():
        best = best_anchor_iou(gt, scales, ratios)
        results[name] = {"anchors": len(scales) * len(ratios), "mean": float(best.mean()),
                         "at_0.7": float(np.mean(best >= 0.7)),
                         "at_0.5": float(np.mean(best >= 0.5))}
        r = results[name]
        print(f"{name:<32} {r['anchors']:>3} {r['mean']:>14.3f} {r['at_0.7']:>7.3f} "
              f"{r['at_0.5']:>7.3f}")
    return results


def solution_2(seed: int = 0, num_images: int = 500) -> dict:
    """Exercise 2, the price of translation invariance: the stride, not the shapes.

    **Exercise.** The same anchors sit at every position of the feature map, 8 pixels apart.
    (a) Take a 20 x 20 box, exactly the shape of the middle square anchor, and move its centre
    by ``(d, d)`` pixels from an anchor centre, ``d = 0 ... 8``: compute its best IoU by hand
    and with the anchors. (b) On the scenes, compare the mean best IoU of the notebook's
    anchors at strides 8 (the notebook), 4 and 2 with the IoU of the shapes alone (every box and
    anchor centred at the same point, ``priors.shape_iou``).

    **Method.** Two equal squares of side ``s`` offset by ``(e, e)`` overlap by ``(s - e)^2``:
    IoU = ``(s - e)^2 / (2 s^2 - (s - e)^2)``, with ``e = min(d, 8 - d)`` the distance to the
    nearest anchor centre: a shift by a whole stride lands on the next anchor, so the best IoU
    is periodic with period 8 pixels.

    **Expected outcome.** (a) The 20 x 20 anchors give exactly the hand values: 1.0 at ``d = 0``
    and ``d = 8``, falling to ``16^2 / (800 - 256) = 0.471`` at ``d = 4``, half the stride; the
    other eight anchors help little (0.485 at ``d = 4``). A perfectly shaped object between two
    anchor centres misses 0.7 by far. (b) The grid costs more than the shapes: mean best IoU
    0.67 at stride 8, 0.76 at stride 4, 0.79 at stride 2, against 0.79 for the shapes alone
    (seeds 0, 1, 2 agree within 0.005).

    Returns:
        ``{"offsets": [...], "by_hand": [...], "measured": [...], "by_stride": {stride: mean},
        "shape_only": mean}``.
    """
    side = 20.0
    offsets = list(range(STRIDE + 1))
    scales, ratios = NOTEBOOK_ANCHORS
    square = boxes.generate_anchors(IMAGE_SIZE // STRIDE, STRIDE, (side,), (1.0,))
    nine = boxes.generate_anchors(IMAGE_SIZE // STRIDE, STRIDE, scales, ratios)
    centre = 3.5 * STRIDE  # the centre of cell (3, 3), an anchor centre
    by_hand, measured, measured_nine = [], [], []
    for d in offsets:
        nearest = min(d, STRIDE - d)  # pixels to the nearest anchor centre, in x and in y
        overlap = (side - nearest) ** 2
        by_hand.append(overlap / (2 * side**2 - overlap))
        c = centre + d
        box = np.array([[c - side / 2, c - side / 2, c + side / 2, c + side / 2]], np.float32)
        measured.append(float(geometry.pairwise_iou(box, square).max()))
        measured_nine.append(float(geometry.pairwise_iou(box, nine).max()))
    print("(a) a 20 x 20 box moved by (d, d) pixels from an anchor centre, stride 8:")
    print("    d                    " + " ".join(f"{d:>6d}" for d in offsets))
    print("    by hand              " + " ".join(f"{v:>6.3f}" for v in by_hand))
    print("    the 20 x 20 anchors  " + " ".join(f"{v:>6.3f}" for v in measured))
    print("    the notebook's 9     " + " ".join(f"{v:>6.3f}" for v in measured_nine))

    gt, _, _ = scene_boxes(num_images, seed)
    by_stride = {}
    for stride in (8, 4, 2):
        by_stride[stride] = float(best_anchor_iou(gt, scales, ratios, stride=stride).mean())
    sizes = gt[:, 2:] - gt[:, :2]
    shape_only = float(priors.shape_iou(sizes, boxes.anchor_shapes(scales, ratios))
                       .max(axis=1).mean())
    print(f"(b) mean best IoU of {len(gt)} objects (seed {seed}), the notebook's 9 anchors:")
    for stride, value in by_stride.items():
        print(f"    stride {stride}: {value:.3f}")
    print(f"    shapes alone (no position error): {shape_only:.3f}")
    return {"offsets": offsets, "by_hand": by_hand, "measured": measured,
            "measured_nine": measured_nine, "by_stride": by_stride, "shape_only": shape_only}


def solution_3(seed: int = 0, num_images: int = 500) -> dict:
    """Exercise 3, how balanced is the RPN's mini-batch?

    **Exercise.** The paper samples 256 anchors per image "with up to 1:1" positives and
    negatives. Label the 576 anchors of every scene with ``assign_anchors`` (IoU >= 0.7 or best
    anchor: positive; < 0.3: negative) and draw the 256-anchor mini-batch with
    ``sample_balanced``. How many positives does an image have, and what share of the sampled
    anchors are positive, for mini-batches of 256, 64 and 16? At initialisation (every
    objectness 0.5) each sampled anchor contributes the same gradient magnitude
    ``|p - p^*| = 0.5`` to the log loss: what share of the classification gradient comes from
    the objects?

    **Method.** Counts over the scenes; the share of positives in the sample is the positives'
    share of the gradient at initialisation.

    **Expected outcome.** Per image (2.4 to 2.5 objects): about 2.9 positive anchors (1.9 of
    them only as an object's best anchor, below IoU 0.7), 495 negative and 78 ignored. All the
    positives fit in the 128 allowed, so the 1:1 ratio is never reached and the sampler only
    drops negatives: positives are 0.6% of the labelled anchors and 1.1% of a 256-anchor
    mini-batch (4.5% of 64, 18% of 16; seeds 0, 1, 2 within 0.01). Balance comes from the cap
    only when an image has more positives than half the mini-batch, which few images have, in
    the paper's data as in ours. Without sampling, a classifier that says "no object"
    everywhere would already be right on 99.4% of the labelled anchors.

    Returns:
        ``{"positives": ..., "negatives": ..., "ignored": ..., "forced": ..., "objects": ...}``
        (means per image), ``"share_labelled"`` and ``{"share_sampled": {n: share}}``.
    """
    scenes = _scenes(num_images, seed)
    anchors = boxes.generate_anchors(IMAGE_SIZE // STRIDE, STRIDE, *NOTEBOOK_ANCHORS)
    valid = scenes.labels >= 0
    labels, _, max_iou = boxes.assign_anchors(anchors, scenes.boxes.astype(np.float32), valid)
    positives = (labels == 1).sum(axis=1)
    negatives = (labels == 0).sum(axis=1)
    forced = ((labels == 1) & (max_iou < 0.7)).sum(axis=1)
    result = {"anchors": len(anchors), "objects": float(valid.sum(axis=1).mean()),
              "positives": float(positives.mean()), "negatives": float(negatives.mean()),
              "ignored": float((labels == -1).sum(axis=1).mean()),
              "forced": float(forced.mean()),
              "share_labelled": float(positives.sum() / (positives.sum() + negatives.sum())),
              "share_sampled": {}}
    print(f"{num_images} scenes (seed {seed}), {len(anchors)} anchors each, "
          f"{result['objects']:.2f} objects per image on average")
    print(f"per image: {result['positives']:.1f} positive ({result['forced']:.1f} of them only "
          f"as an object's best anchor, IoU < 0.7), {result['negatives']:.1f} negative, "
          f"{result['ignored']:.1f} ignored")
    print(f"positive share of all labelled anchors: {result['share_labelled']:.3f}")
    for num_samples in (256, 64, 16):
        _, sampled = boxes.sample_balanced(labels, num_samples, 0.5, seed=seed)
        sampled = np.asarray(sampled)
        pos, neg = (sampled == 1).sum(), (sampled == 0).sum()
        share = float(pos / (pos + neg))
        result["share_sampled"][num_samples] = share
        print(f"mini-batch of {num_samples:>3} (at most {num_samples // 2} positive): "
              f"positive share {share:.3f} = the objects' share of the gradient at p = 0.5")
    return result
