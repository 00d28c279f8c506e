"""The COCO evaluator, offline and in memory: one call for boxes, masks and keypoints.

``pycocotools`` is the field's reference implementation of COCO AP (IoU or OKS 0.50:0.05:0.95,
101-point interpolated precision). Chapters build the ground truth and the results as COCO
dictionaries (``detection.evaluation`` for boxes, ``detection.mask_evaluation`` for masks,
``pose.evaluation`` for keypoints) and hand them to ``coco_ap``; nothing is read from or
written to disk and the evaluator's printout is swallowed.
"""

from __future__ import annotations

import contextlib
import io

__all__ = ["IOU_TYPES", "coco_ap"]

IOU_TYPES = ("bbox", "segm", "keypoints")


def coco_ap(images, categories, annotations, results, iou_type: str, *,
            max_detections: int = 100, oks_sigmas=None) -> tuple[float, float]:
    """COCO AP and AP50 of ``results`` against ``annotations``.

    Args:
        images: ``[{"id": ..., "width": ..., "height": ...}]``.
        categories: ``[{"id": ..., "name": ...}]`` (keypoints: with ``"keypoints"``).
        annotations: the ground truth; each needs ``"iscrowd"`` and ``"area"``.
        results: the detections, with ``"score"``.
        iou_type: ``"bbox"``, ``"segm"`` or ``"keypoints"``.
        max_detections: detections kept per image, by score (COCO: 100 for boxes and masks,
            20 for people).
        oks_sigmas: per-keypoint sigmas of the OKS (keypoints only).

    Returns:
        ``(ap, ap50)``: AP averaged over the thresholds 0.50:0.05:0.95 and AP at 0.5; 0.0 when
        there are no results or no ground truth.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type={iou_type!r} is not one of {', '.join(IOU_TYPES)}.")
    if not annotations or not results:
        return 0.0, 0.0
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": list(images), "categories": list(categories),
                           "annotations": list(annotations)}
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(list(results)), iouType=iou_type)
        if iou_type == "keypoints":
            if oks_sigmas is not None:
                evaluator.params.kpt_oks_sigmas = oks_sigmas
            evaluator.params.maxDets = [int(max_detections)]
        else:
            evaluator.params.maxDets = [1, 10, int(max_detections)]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ap, ap50 = (float(v) for v in evaluator.stats[:2])
    return max(ap, 0.0), max(ap50, 0.0)
