"""The detection chapter (notebooks 03 to 07, 11): the box toolkit and the detectors.

Import the submodules directly (``from bestiary_keras.detection.boxes import
non_max_suppression``); this package imports none of their names.

- ``boxes``: the slides' box offsets w.r.t. proposals / anchors, anchors, the one NMS,
  anchor-to-ground-truth assignment and balanced sampling (IoU, conversions and clipping live
  in ``bestiary_keras.geometry``, flips and resizes in ``bestiary_keras.augment``).
- ``evaluation``: VOC mean average precision, COCO AP through pycocotools, proposal recall,
  padded detections for figures.
- ``data``: the chapter's scenes and their ``tf.data`` pipeline.
- ``proposals``: selective search (OpenCV contrib); ``backbones``: the two-stage detectors'
  conv body.
- ``rcnn`` (notebook 03), ``fast_rcnn`` (04), ``faster_rcnn`` (05): the two-stage detectors.
- ``yolo`` (06), ``yolov2`` (07): the one-stage detectors; ``yolo_data``: their training
  batches; ``priors``: YOLOv2's k-means anchor shapes; ``ablation``: the
  YOLOv2 paper's ablation rows.
- ``roi_pooling`` (04): RoI max pooling; ``roi_align``, ``mask_rcnn``, ``mask_evaluation`` (11):
  Mask R-CNN.
- ``plots``: figures specific to the chapter (YOLO's grid).
"""

__all__ = [
    "ablation",
    "backbones",
    "boxes",
    "data",
    "evaluation",
    "fast_rcnn",
    "faster_rcnn",
    "mask_evaluation",
    "mask_rcnn",
    "plots",
    "priors",
    "proposals",
    "rcnn",
    "roi_align",
    "roi_pooling",
    "yolo",
    "yolo_data",
    "yolov2",
]
