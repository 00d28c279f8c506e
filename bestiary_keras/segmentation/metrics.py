"""Segmentation scores: foreground IoU, per-class IoU and the ISBI-style instance scores.

- ``foreground_iou``: intersection over union of the predicted and true foreground pixels.
- ``instances_from_foreground``: cells recovered from a predicted foreground mask (connected
  components, then grown back over the separating gaps), as the U-Net paper does.
- ``instance_scores``: scikit-image's ``adapted_rand_error`` (the ISBI 2012 challenge's "Rand
  error") and ``variation_of_information`` (split and merge parts), averaged over the images
  that contain cells, plus the share of true cells matched by one predicted cell with IoU > 0.5.
- ``mean_iou``: mean and per-class IoU from ``keras.metrics.MeanIoU``'s confusion matrix
  (notebooks 09 and 10).

Every score takes the truth first: ``(y_true, y_pred)``.
"""

from __future__ import annotations

import keras
import numpy as np
from skimage import measure, metrics, morphology, segmentation

__all__ = [
    "foreground_iou",
    "instance_scores",
    "instances_from_foreground",
    "matched_fraction",
    "mean_iou",
]


def foreground_iou(y_true, y_pred) -> float:
    """IoU of the true and predicted boolean masks over all their pixels (1.0 when both are
    empty)."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} masks differ in shape.")
    union = np.logical_or(y_pred, y_true).sum()
    return 1.0 if union == 0 else float(np.logical_and(y_pred, y_true).sum() / union)


def instances_from_foreground(foreground, *, grow: int = 1, min_size: int = 4) -> np.ndarray:
    """Instance labels from foreground masks: 4-connected components grown by ``grow`` pixels.

    Args:
        foreground: bool (H, W) or (N, H, W).
        grow: pixels by which each component is expanded (``skimage.segmentation.expand_labels``)
            to refill the border that the network was trained to leave as background.
        min_size: components smaller than this many pixels are dropped (noise), with
            ``skimage.morphology.remove_small_objects``.

    Returns:
        int32 labels of the same shape, 0 = background.
    """
    foreground = np.asarray(foreground, bool)
    if foreground.ndim == 3:
        return np.stack([instances_from_foreground(f, grow=grow, min_size=min_size)
                         for f in foreground])
    if foreground.ndim != 2:
        raise ValueError(f"foreground must be (H, W) or (N, H, W), got shape {foreground.shape}.")
    if min_size > 1:  # max_size: the largest size removed (scikit-image >= 0.26)
        foreground = morphology.remove_small_objects(foreground, max_size=min_size - 1,
                                                     connectivity=1)
    labels = measure.label(foreground, connectivity=1)
    if grow > 0:
        labels = segmentation.expand_labels(labels, grow)
    return labels.astype(np.int32)


def matched_fraction(y_true, y_pred, threshold: float = 0.5) -> float:
    """Share of true instances that one predicted instance overlaps with IoU > ``threshold``.

    ``y_true`` and ``y_pred`` are instance labels (0 = background) of the same shape.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    num_true = int(y_true.max())
    if num_true == 0:
        return 1.0
    num_pred = int(y_pred.max())
    joint = np.bincount(y_true.ravel() * (num_pred + 1) + y_pred.ravel(),
                        minlength=(num_true + 1) * (num_pred + 1)).reshape(num_true + 1, -1)
    area_true, area_pred = joint.sum(1), joint.sum(0)
    iou = joint / np.maximum(area_true[:, None] + area_pred[None, :] - joint, 1)
    present = area_true[1:] > 0
    best = iou[1:, 1:].max(axis=1) if num_pred > 0 else np.zeros(num_true)
    return float((best[present] > threshold).mean())


def instance_scores(true_instances, predicted_instances) -> dict:
    """ISBI-style scores of instance labels, averaged over images (lower is better but ``matched``).

    Args:
        true_instances: int (N, H, W) or (H, W), 0 = background.
        predicted_instances: int of the same shape.

    Returns:
        ``{"adapted_rand_error", "voi_split", "voi_merge", "voi", "matched"}``: the adapted Rand
        error (``skimage.metrics.adapted_rand_error``) and the variation of information in bits
        (``skimage.metrics.variation_of_information``: conditional
        entropies H(predicted | true), the *split* part, large when cells are cut into pieces,
        and H(true | predicted), the *merge* part, large when touching cells are fused), both
        on the true cells' pixels (the true background is ignored, as in the ISBI challenge;
        false positives there are what the foreground IoU counts), and the share of true cells matched with IoU > 0.5 (``matched_fraction``).

        An image without any true cell has no pixel these scores look at: its scores are
        undefined (skimage gives NaN), so it is left out of every average (``matched`` too),
        and its false positives are left to the foreground IoU.

    Raises:
        ValueError: no image has a true cell (nothing to score), or the shapes differ.
    """
    true_instances = np.asarray(true_instances)
    predicted_instances = np.asarray(predicted_instances)
    if true_instances.shape != predicted_instances.shape:
        raise ValueError(f"true {true_instances.shape} and predicted {predicted_instances.shape} "
                         "instance labels differ in shape.")
    if true_instances.ndim == 2:
        true_instances, predicted_instances = true_instances[None], predicted_instances[None]
    rows = []
    for true, predicted in zip(true_instances, predicted_instances):
        if not true.any():
            continue  # no true cell: undefined scores, left out of the averages
        are = metrics.adapted_rand_error(true, predicted)[0]
        split, merge = metrics.variation_of_information(true, predicted, ignore_labels=(0,))
        rows.append((are, split, merge, matched_fraction(true, predicted)))
    if not rows:
        raise ValueError(
            f"true_instances has no cell in any of its {len(true_instances)} image(s): the "
            "instance scores are measured on the true cells' pixels and are undefined here. "
            "Score images that contain cells (foreground_iou measures the false positives on "
            "empty ones)."
        )
    are, split, merge, matched = np.mean(rows, axis=0)
    return {"adapted_rand_error": float(are), "voi_split": float(split),
            "voi_merge": float(merge), "voi": float(split + merge), "matched": float(matched)}


def mean_iou(y_true, y_pred, num_classes: int) -> tuple[float, np.ndarray]:
    """Mean and per-class IoU of class label maps, from ``keras.metrics.MeanIoU``'s confusion
    matrix.

    ``MeanIoU.result()`` gives the mean alone; the per-class values that notebooks 09 and 10
    print need its confusion matrix, so both are computed from it here. A class absent from
    both maps gets IoU NaN and is left out of the mean, as Keras 3's ``MeanIoU`` also leaves
    it out: the mean equals ``MeanIoU.result()`` up to Keras' epsilon.

    Args:
        y_true: int (..., H, W) true class labels.
        y_pred: int (..., H, W) predicted class labels (e.g. ``argmax`` of the soft-max).
        num_classes: number of classes (background included).

    Returns:
        ``(mean_iou, per_class_iou)``.
    """
    metric = keras.metrics.MeanIoU(num_classes=num_classes)
    metric.update_state(np.asarray(y_true).ravel(), np.asarray(y_pred).ravel())
    confusion = np.asarray(metric.total_cm, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, intersection / union, np.nan)
    return float(np.nanmean(per_class)), per_class
