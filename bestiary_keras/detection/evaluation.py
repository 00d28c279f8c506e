"""Detection metrics: PASCAL VOC mean average precision and COCO AP (through pycocotools).

Both take the same inputs, one entry per image:

- ``detections[i] = (boxes, scores, classes)``: ``(D, 4)`` xyxy pixel boxes, ``(D,)`` scores,
  ``(D,)`` int class indices (``D`` may be 0);
- ``ground_truths[i] = (boxes, classes)``: ``(G, 4)`` xyxy boxes and ``(G,)`` class indices;
  rows with a negative class (the scene generator's ``-1`` padding) are ignored, so
  ``list(zip(scenes.boxes, scenes.labels))`` (``scene_ground_truths``) can be passed directly.

``voc_average_precision`` is the VOC 2010+ protocol (all-point interpolated area under the
precision/recall curve; a detection is a true positive when the object of its class it overlaps
most has IoU at least 0.5 with it and was not matched by a higher-scoring detection; a second
detection of a matched object is a false positive).
``coco_average_precision`` runs the official ``pycocotools`` evaluator on in-memory objects:
AP averaged over IoU thresholds 0.5:0.05:0.95 (COCO's headline "AP") and AP at 0.5 ("AP50",
101-point interpolation, at most 100 detections per image).
"""

from __future__ import annotations


import numpy as np

from bestiary_keras import geometry
from bestiary_keras.coco import coco_ap

__all__ = [
    "scene_ground_truths",
    "match_detections",
    "average_precision",
    "voc_average_precision",
    "coco_average_precision",
    "proposal_recall",
    "pad_detections",
]


def scene_ground_truths(scenes):
    """``[(boxes, classes), ...]`` per image from a ``SceneSet`` (padding rows removed)."""
    out = []
    for boxes, labels in zip(scenes.boxes, scenes.labels):
        keep = labels >= 0
        out.append((np.asarray(boxes[keep], np.float32), np.asarray(labels[keep], np.int64)))
    return out


def _check_lists(detections, ground_truths):
    detections, ground_truths = list(detections), list(ground_truths)
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"detections has {len(detections)} images but ground_truths has "
            f"{len(ground_truths)}: give one entry per image to both (an image without "
            "detections is (empty boxes, empty scores, empty classes))."
        )
    dets = [_entry(det, f"detections[{i}]", ("boxes", "scores", "classes"))
            for i, det in enumerate(detections)]
    gts = []
    for i, gt in enumerate(ground_truths):
        boxes, classes = _entry(gt, f"ground_truths[{i}]", ("boxes", "classes"))
        keep = classes >= 0
        gts.append((boxes[keep], classes[keep]))
    return dets, gts


_DTYPES = {"boxes": np.float32, "scores": np.float32, "classes": np.int64}


def _entry(entry, where: str, fields):
    """One image's ``(boxes, [scores,] classes)`` as arrays of one length (a ValueError
    otherwise)."""
    try:
        values = tuple(entry)
    except TypeError:
        values = ()
    if len(values) != len(fields):
        raise ValueError(f"{where} must be a tuple ({', '.join(fields)}), got {type(entry)}.")
    arrays = tuple(np.asarray(v, _DTYPES[f]).reshape((-1, 4) if f == "boxes" else -1)
                   for v, f in zip(values, fields))
    if len({len(a) for a in arrays}) > 1:
        counts = " and ".join(f"{len(a)} {f}" for a, f in zip(arrays, fields))
        raise ValueError(f"{where} has {counts}: they must have the same length.")
    return arrays


def _num_classes(dets, gts, num_classes):
    if num_classes is not None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}.")
        return int(num_classes)
    largest = -1
    for _, _, c in dets:
        largest = max(largest, int(c.max()) if c.size else -1)
    for _, c in gts:
        largest = max(largest, int(c.max()) if c.size else -1)
    return largest + 1


def match_detections(detections, ground_truths, class_index: int, iou_threshold: float = 0.5):
    """VOC matching of one class: every detection labelled true or false positive.

    Detections of all images are sorted by score (descending); each is matched to the object of
    its image with the largest IoU; it is a true positive if that IoU is at least
    ``iou_threshold`` and the object was not matched before, otherwise a false positive
    (a duplicate detection of one object is a false positive).

    Returns:
        ``(scores, is_true_positive, num_objects)``: sorted scores ``(D,)``, bool ``(D,)`` and the
        number of ground-truth objects of the class.
    """
    dets, gts = _check_lists(detections, ground_truths)
    image_ids, scores, boxes = [], [], []
    for i, (b, s, c) in enumerate(dets):
        keep = c == class_index
        image_ids.append(np.full(int(keep.sum()), i))
        scores.append(s[keep])
        boxes.append(b[keep])
    image_ids = np.concatenate(image_ids) if image_ids else np.zeros(0, int)
    scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    order = np.argsort(-scores, kind="stable")
    image_ids, scores, boxes = image_ids[order], scores[order], boxes[order]
    objects = [b[c == class_index] for b, c in gts]
    used = [np.zeros(len(o), bool) for o in objects]
    num_objects = int(sum(len(o) for o in objects))
    is_tp = np.zeros(len(scores), bool)
    for d in range(len(scores)):
        gt = objects[image_ids[d]]
        if len(gt) == 0:
            continue
        iou = geometry.pairwise_iou(boxes[d : d + 1], gt)[0]
        j = int(iou.argmax())
        if iou[j] >= iou_threshold and not used[image_ids[d]][j]:
            is_tp[d] = True
            used[image_ids[d]][j] = True
    return scores, is_tp, num_objects


def average_precision(is_true_positive, num_objects: int):
    """All-point interpolated AP (VOC 2010+) of detections already sorted by score.

    Precision is made monotone (each point takes the best precision at any higher recall), then
    integrated over recall exactly, step by step.

    Returns:
        ``(ap, precision, recall)``; ``ap`` is NaN when ``num_objects`` is 0 (undefined).
    """
    is_tp = np.asarray(is_true_positive, bool).reshape(-1)
    if num_objects <= 0:
        return float("nan"), np.zeros(0), np.zeros(0)
    tp = np.cumsum(is_tp)
    fp = np.cumsum(~is_tp)
    recall = tp / float(num_objects)
    precision = tp / np.maximum(tp + fp, 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    ap = float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    return ap, precision, recall


def voc_average_precision(detections, ground_truths, iou_threshold: float = 0.5,
                          num_classes: int | None = None):
    """PASCAL VOC mean average precision (all-point interpolation).

    Args:
        detections: per image ``(boxes (D, 4) xyxy, scores (D,), classes (D,))``.
        ground_truths: per image ``(boxes (G, 4) xyxy, classes (G,))``; negative classes are
            padding and ignored.
        iou_threshold: IoU needed for a true positive (0.5 in VOC).
        num_classes: number of classes (default: the largest class index seen + 1).

    Returns:
        ``(mAP, per_class_ap)``: the mean over the classes that have ground truth (0.0 when no
        image has any object), and a float array ``(num_classes,)`` with NaN for classes without
        ground truth.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}.")
    dets, gts = _check_lists(detections, ground_truths)
    num_classes = _num_classes(dets, gts, num_classes)
    per_class = np.full(max(num_classes, 0), np.nan)
    for k in range(num_classes):
        _, is_tp, count = match_detections(dets, gts, k, iou_threshold)
        per_class[k] = average_precision(is_tp, count)[0]
    defined = per_class[~np.isnan(per_class)]
    return (float(defined.mean()) if defined.size else 0.0), per_class


def coco_average_precision(detections, ground_truths, num_classes: int | None = None,
                           max_detections: int = 100):
    """COCO box AP with the official ``pycocotools`` evaluator, offline and in memory.

    Args:
        detections, ground_truths: as in ``voc_average_precision``.
        num_classes: number of classes (default: largest class index seen + 1).
        max_detections: detections kept per image (COCO: 100, by score).

    Returns:
        ``(ap, ap50)``: AP averaged over IoU 0.5:0.05:0.95 and AP at IoU 0.5 (0.0 when there
        are no detections; 0.0 when there is no ground truth at all).
    """
    dets, gts = _check_lists(detections, ground_truths)
    num_classes = _num_classes(dets, gts, num_classes)
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(len(gts))]
    categories = [{"id": k + 1, "name": str(k)} for k in range(max(num_classes, 1))]
    annotations = []
    for i, (boxes, classes) in enumerate(gts):
        for box, cls in zip(boxes, classes):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0,
            })
    results = []
    for i, (boxes, scores, classes) in enumerate(dets):
        for box, score, cls in zip(boxes, scores, classes):
            results.append({
                "image_id": i + 1, "category_id": int(cls) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                         float(box[3] - box[1])],
            })
    return coco_ap(images, categories, annotations, results, "bbox",
                   max_detections=max_detections)


def proposal_recall(proposals, gt_boxes, iou_threshold: float = 0.5, top_k=None):
    """Fraction of ground-truth objects covered by some proposal with IoU >= ``iou_threshold``.

    Args:
        proposals: per image ``(P, 4)`` xyxy proposals, best first.
        gt_boxes: per image ``(G, 4)`` xyxy boxes (zero-area rows are padding, ignored).
        iou_threshold: IoU needed to count an object as recalled.
        top_k: use only the first ``top_k`` proposals of each image (None: all).

    Returns:
        The recall in [0, 1] (0.0 when there are no objects).
    """
    proposals, gt_boxes = list(proposals), list(gt_boxes)
    if len(proposals) != len(gt_boxes):
        raise ValueError(
            f"proposals has {len(proposals)} images but gt_boxes has {len(gt_boxes)}."
        )
    found = total = 0
    for props, gts in zip(proposals, gt_boxes):
        gts = np.asarray(gts, np.float32).reshape(-1, 4)
        gts = gts[geometry.box_area(gts) > 0]
        props = np.asarray(props, np.float32).reshape(-1, 4)
        if top_k is not None:
            props = props[: int(top_k)]
        total += len(gts)
        if len(gts) and len(props):
            found += int((geometry.pairwise_iou(gts, props).max(axis=1) >= iou_threshold).sum())
    return found / total if total else 0.0


def pad_detections(detections, min_score: float = 0.0, max_boxes: int | None = None):
    """Per-image detections -> padded arrays for ``figures.show_scenes``.

    Args:
        detections: per image ``(boxes, scores, classes)``.
        min_score: drop detections scoring below it.
        max_boxes: columns of the output (default: the most detections kept in one image).

    Returns:
        ``boxes (N, D, 4)``, ``labels (N, D)`` (-1 padding), ``scores (N, D)``.
    """
    kept = []
    for boxes, scores, classes in detections:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= min_score
        kept.append((boxes[keep], scores[keep], np.asarray(classes).reshape(-1)[keep]))
    if max_boxes is None:
        max_boxes = max([len(k[0]) for k in kept] + [1])
    n = len(kept)
    out_boxes = np.zeros((n, max_boxes, 4), np.float32)
    out_labels = np.full((n, max_boxes), -1, np.int32)
    out_scores = np.zeros((n, max_boxes), np.float32)
    for i, (b, s, c) in enumerate(kept):
        m = min(len(b), max_boxes)
        out_boxes[i, :m], out_labels[i, :m], out_scores[i, :m] = b[:m], c[:m], s[:m]
    return out_boxes, out_labels, out_scores
