"""Multi-person pose metrics: COCO's OKS-based AP (pycocotools, offline) and a baseline.

The object keypoint similarity of a predicted person with a true one (COCO)::

    OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] / sum_i [v_i > 0],

with ``d_i`` the distance of joint ``i`` to its true position, ``s^2`` the person's area
(here the area of the figure's mask) and ``k_i = 2 sigma_i`` the joint's falloff
(``sigma_i``: ``figures.OKS_SIGMAS``, the per-joint constants that pycocotools calls
``kpt_oks_sigmas``). AP averages the precision over OKS thresholds 0.50:0.05:0.95, like box AP
over IoU thresholds; AP50 uses OKS 0.5 alone.
"""

from __future__ import annotations


import numpy as np

from bestiary_keras.coco import coco_ap
from bestiary_keras.datasets.figures import check_keypoints

__all__ = [
    "mean_pose_baseline",
    "oks",
    "oks_average_precision",
    "true_people",
]


def true_people(keypoints, num_people, areas=None) -> list[list[dict]]:
    """Ground truth per image as ``[{"keypoints": (J, 3) (x, y, v), "area": float}, ...]``.

    Args:
        keypoints: ``(N, P_max, J, 3)``.
        num_people: ``(N,)`` people per image (the rest are padding).
        areas: ``(N, P_max)`` person areas in pixels (default: the keypoints' bounding box).
    """
    keypoints = check_keypoints(keypoints, num_joints=None)
    num_people = np.asarray(num_people).reshape(-1)
    if keypoints.ndim != 4 or len(num_people) != len(keypoints):
        raise ValueError(
            f"keypoints must be (N, P_max, J, 3) with one num_people per image, got "
            f"{keypoints.shape} and {num_people.shape}."
        )
    out = []
    for n, count in enumerate(num_people):
        people = []
        for k in range(int(count)):
            kp = keypoints[n, k]
            if areas is None:
                xy = kp[kp[:, 2] > 0, :2]
                span = xy.max(0) - xy.min(0) if len(xy) else np.zeros(2)
                area = float(max(span[0] * span[1], 1.0))
            else:
                area = float(areas[n][k])
            people.append({"keypoints": kp, "area": area})
        out.append(people)
    return out


def oks(predicted, true, area: float, sigmas) -> float:
    """The object keypoint similarity of one predicted person ``(J, 2+)`` with a true one.

    ``true`` is ``(J, 3)`` with visibility; only labelled joints (``v > 0``) count.
    """
    predicted, true = np.asarray(predicted, np.float32), np.asarray(true, np.float32)
    sigmas = np.asarray(sigmas, np.float32)
    if len(predicted) != len(sigmas) or len(true) != len(sigmas):
        raise ValueError(
            f"predicted ({len(predicted)}), true ({len(true)}) joints and sigmas "
            f"({len(sigmas)}) must have the same length: one sigma per joint of the skeleton."
        )
    labelled = true[:, 2] > 0
    if not labelled.any():
        return 0.0
    d2 = np.sum((predicted[:, :2] - true[:, :2]) ** 2, axis=1)
    k2 = (2 * sigmas) ** 2
    e = d2 / (2.0 * k2 * (area + np.spacing(1)))  # pycocotools: d^2 / vars / (area + eps) / 2
    return float(np.mean(np.exp(-e[labelled])))


def _person_keypoints(person, num_joints, where):
    kp = np.asarray(person["keypoints"], np.float64)
    if kp.shape != (num_joints, 3):
        raise ValueError(f"{where} has a person with keypoints of shape {kp.shape}: expected "
                         f"({num_joints}, 3), one row per sigma.")
    return kp


def oks_average_precision(predictions, ground_truths, sigmas, *, max_detections: int = 20):
    """COCO keypoint AP with the official ``pycocotools`` evaluator, offline and in memory.

    Args:
        predictions: per image, a list of ``{"keypoints": (J, 3) [x, y, score], "score"}``
            (``decoding.decode``'s output; an empty list for an image without people).
        ground_truths: per image, a list of ``{"keypoints": (J, 3) (x, y, v), "area"}``
            (``true_people``).
        sigmas: ``(J,)`` per-joint OKS constants (``figures.OKS_SIGMAS``).
        max_detections: people kept per image, by score (COCO: 20).

    Returns:
        ``(ap, ap50)``: AP averaged over OKS 0.50:0.05:0.95 and AP at OKS 0.5 (0.0 when there
        are no predictions).
    """
    predictions, ground_truths = list(predictions), list(ground_truths)
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"predictions has {len(predictions)} images but ground_truths has "
            f"{len(ground_truths)}: give one (possibly empty) list of people per image."
        )
    sigmas = np.asarray(sigmas, np.float64).reshape(-1)
    num_joints = len(sigmas)
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(len(ground_truths))]
    categories = [{"id": 1, "name": "person", "keypoints": [str(j) for j in range(num_joints)],
                   "skeleton": []}]
    annotations, results = [], []
    for i, people in enumerate(ground_truths):
        for person in people:
            kp = _person_keypoints(person, num_joints, f"ground_truths[{i}]")
            labelled = kp[:, 2] > 0
            xy = kp[labelled, :2]
            x0, y0 = (xy.min(0) if len(xy) else (0.0, 0.0))
            x1, y1 = (xy.max(0) if len(xy) else (0.0, 0.0))
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                "keypoints": [float(v) for v in np.where(labelled[:, None], kp, 0).ravel()],
                "num_keypoints": int(labelled.sum()), "area": float(person["area"]),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "iscrowd": 0,
            })
    for i, people in enumerate(predictions):
        for person in people:
            kp = _person_keypoints(person, num_joints, f"predictions[{i}]")
            results.append({"image_id": i + 1, "category_id": 1,
                            "keypoints": [float(v) for v in kp.ravel()],
                            "score": float(person["score"])})
    return coco_ap(images, categories, annotations, results, "keypoints",
                   max_detections=max_detections, oks_sigmas=sigmas)


def mean_pose_baseline(train_keypoints, train_boxes, train_num_people, boxes,
                       num_people) -> list[list[dict]]:
    """The trivial baseline: the mean training pose, placed in each true person's box.

    Every training pose is normalised by its person box (centre and size); the mean normalised
    pose is scaled into every *true* box of the test images: an oracle for the number and place
    of the people, so only the pose itself is guessed.

    Args:
        train_keypoints: ``(N, P_max, J, 3)`` training keypoints.
        train_boxes: ``(N, P_max, 4)`` their xyxy person boxes.
        train_num_people: ``(N,)``.
        boxes: ``(M, P_max, 4)`` xyxy person boxes of the test images.
        num_people: ``(M,)``.

    Returns:
        Predictions per test image, as ``oks_average_precision`` takes them (score 1).
    """
    train_keypoints = check_keypoints(train_keypoints, num_joints=None)
    train_boxes = np.asarray(train_boxes, np.float32)
    if train_boxes.shape != train_keypoints.shape[:2] + (4,):
        raise ValueError(
            f"train_boxes must be (N, P_max, 4) like train_keypoints {train_keypoints.shape}, "
            f"got {train_boxes.shape}."
        )
    total = np.zeros((train_keypoints.shape[2], 2), np.float64)
    weight = np.zeros((train_keypoints.shape[2], 1), np.float64)
    for kps, bxs, count in zip(train_keypoints, train_boxes,
                               np.asarray(train_num_people).reshape(-1)):
        for kp, (x0, y0, x1, y1) in zip(kps[:int(count)], bxs[:int(count)]):
            size = np.maximum([x1 - x0, y1 - y0], 1.0)
            labelled = (kp[:, 2] > 0)[:, None]
            total += labelled * (kp[:, :2] - [(x0 + x1) / 2, (y0 + y1) / 2]) / size
            weight += labelled
    if not weight.any():
        raise ValueError("train_keypoints has no labelled joint: the baseline needs people.")
    mean = total / np.maximum(weight, 1.0)
    out = []
    for person_boxes, count in zip(np.asarray(boxes, np.float32), np.asarray(num_people)):
        people = []
        for x0, y0, x1, y1 in person_boxes[:int(count)]:
            xy = mean * [x1 - x0, y1 - y0] + [(x0 + x1) / 2, (y0 + y1) / 2]
            people.append({"keypoints": np.concatenate([xy, np.ones((len(xy), 1))], 1)
                           .astype(np.float32), "score": 1.0})
        out.append(people)
    return out
