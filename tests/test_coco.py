"""The shared in-memory COCO evaluator (boxes, masks and keypoints go through it)."""

import pytest

from bestiary_keras.coco import coco_ap

IMAGES = [{"id": 1, "width": 10, "height": 10}]
CATEGORIES = [{"id": 1, "name": "square"}]
TRUTH = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 2.0, 4.0, 4.0], "area": 16.0,
          "iscrowd": 0}]


def test_a_perfect_box_scores_one_and_a_shifted_one_only_at_low_iou():
    exact = [{"image_id": 1, "category_id": 1, "bbox": [2.0, 2.0, 4.0, 4.0], "score": 0.9}]
    assert coco_ap(IMAGES, CATEGORIES, TRUTH, exact, "bbox") == pytest.approx((1.0, 1.0))
    # shifted by one pixel: IoU = 12 / 20 = 0.6, a hit at 0.5, 0.55 and 0.6 of the ten thresholds
    shifted = [{"image_id": 1, "category_id": 1, "bbox": [3.0, 2.0, 4.0, 4.0], "score": 0.9}]
    ap, ap50 = coco_ap(IMAGES, CATEGORIES, TRUTH, shifted, "bbox")
    assert ap50 == pytest.approx(1.0) and ap == pytest.approx(0.3)


def test_empty_results_and_bad_iou_type():
    assert coco_ap(IMAGES, CATEGORIES, TRUTH, [], "bbox") == (0.0, 0.0)
    assert coco_ap(IMAGES, CATEGORIES, [], [{"image_id": 1}], "segm") == (0.0, 0.0)
    with pytest.raises(ValueError, match="iou_type='box' is not one of bbox, segm, keypoints"):
        coco_ap(IMAGES, CATEGORIES, TRUTH, [], "box")
