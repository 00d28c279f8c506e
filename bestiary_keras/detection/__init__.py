"""The detection chapter (notebooks 03 to 07): shared toolkit and the two-stage detectors.

- ``boxes``: the slides' box offsets w.r.t. proposals / anchors, clipping, NMS, anchors,
  anchor-to-ground-truth assignment and balanced sampling (IoU lives in
  ``bestiary_keras.geometry``).
- ``evaluation``: VOC mean average precision, COCO AP through pycocotools, proposal recall.
- ``data``: detection datasets from the shared scene generator.
- ``proposals``: selective search (OpenCV contrib).
- ``rcnn`` (notebook 03), ``fast_rcnn`` (04), ``faster_rcnn`` (05): the two-stage detectors.

Import the submodules directly (``from bestiary_keras.detection import boxes``); the model
modules import TensorFlow, the toolkit only NumPy.
"""
