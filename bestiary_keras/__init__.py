"""bestiary_keras: the code behind the notebooks of "Deep Learning: Bestiary".

Families, one per lecture part (a model module holds architecture, loss and decoding; each
notebook imports its builders from one obvious place; import the submodules directly):

- ``classification``: VGG (notebook 01) and ResNet (notebook 02).
- ``detection``: R-CNN, Fast and Faster R-CNN, YOLO, YOLOv2, Mask R-CNN (notebooks 03-07, 11).
- ``segmentation``: U-Net, SegNet, RefineNet (notebooks 08-10).
- ``pose``: Convolutional Pose Machines and OpenPose (notebooks 12, 13).
- ``depth``: depth and ego-motion from video (notebook 14).
- ``metric_learning``: Siamese networks, triplet descriptors, LIFT (notebooks 15-17).

Shared pieces (they import no family):

- ``geometry``: boxes (IoU, encodings, clipping) shared by localisation and detection.
- ``batching``: seeded, step-indexed batches (``SeededBatches``, ``GatheredBatches``,
  ``step_indices``) and the tf.data options for Python-made batches.
- ``augment``: flips, crops, resizes of images with their boxes, masks and keypoints.
- ``figures``: palette, image grids with overlays, legends, colour bars, training curves.
- ``training``: optimiser building, per-batch history; ``distributed``: the training helper
  for the ``full`` profile and several devices (``tf.distribute``).
- ``coco``: COCO-style AP through pycocotools (boxes, masks, keypoints).
- ``datasets``: the offline generators (scenes, cells, figures, video), bundled photos and
  real-data (TFDS) loaders.
- ``pretrained``: ImageNet weights when cached, random weights (and a message) offline.
- ``runtime``: profiles (``ci``/``default``/``full``), seeding, ``report`` of measured results.
- ``runner`` (with ``runner_execution``): the ``bestiary`` console command that executes the
  notebooks headless; ``publish``: offline slides and the site; ``bench``: the benchmark.
"""

__version__ = "0.1.0"

__all__ = [
    "augment", "batching", "bench", "classification", "coco", "datasets", "depth", "detection",
    "distributed", "figures", "geometry", "metric_learning", "pose", "pretrained", "publish",
    "runner", "runner_execution", "runtime", "segmentation", "training", "__version__",
]
