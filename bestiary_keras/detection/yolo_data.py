"""Training data of the YOLO notebooks (06, 07): the target grids and the batches.

``encode_yolo_v1_targets`` / ``encode_yolo_v2_targets`` write each object into the grid cell
(and, for YOLOv2, the anchor) responsible for it, in the layout the losses of ``yolo`` and
``yolov2`` read; ``check_object_boxes`` refuses boxes a grid cannot hold.

``YoloBatches`` (a ``batching.SeededBatches``) takes each step's scenes, applies a random
symmetry of the square (``augment.flip_scenes``), resizes them (``augment.resize_scenes``,
YOLOv2's multi-scale training) and encodes their targets with the detector's own encoder (e.g.
``encode_yolo_v1_targets`` or ``encode_yolo_v2_targets``).
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import augment, geometry
from bestiary_keras.batching import SeededBatches, fixed_tf_data_options
from bestiary_keras.detection import priors

__all__ = [
    "check_object_boxes",
    "encode_yolo_v1_targets",
    "count_dropped_objects",
    "encode_yolo_v2_targets",
    "YoloBatches",
]


# ----------------------------------------------------------------------------- YOLO targets
def _check_square(image_size) -> int:
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(
            f"image_size must be a positive int (square images), got {image_size!r}; resize "
            "non-square images first."
        )
    return int(image_size)


def _valid_objects(boxes, labels, image_size: int):
    boxes = np.asarray(boxes, np.float32)
    labels = np.asarray(labels)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, M, 4), got {boxes.shape}.")
    if labels.shape != boxes.shape[:2]:
        raise ValueError(f"labels must have shape {boxes.shape[:2]} (N, M), got {labels.shape}.")
    check_object_boxes(boxes, labels, image_size)
    area = geometry.box_area(boxes)
    return boxes, labels, (labels >= 0) & (area > 0)


def check_object_boxes(boxes, labels, image_size: int) -> None:
    """Refuses object boxes that a target encoder would drop or misplace without a word.

    Padding (label -1) is not looked at, nor are objects of zero area (``x_max == x_min``, as
    a crop leaves an object it cut away): the encoders skip those.

    Args:
        boxes: float ``(N, M, 4)`` boxes, meant as xyxy pixels.
        labels: int ``(N, M)`` class indices, -1 for padding.
        image_size: side of the square image the boxes belong to.

    Raises:
        ValueError: an object's box has ``x_max < x_min`` or ``y_max < y_min`` (its area would
            count as 0 and it would be skipped: boxes given as centre/size, not xyxy), or the
            centre of an encoded box lies outside the image (a box wholly or mostly outside:
            no cell holds it; it used to land in a cell on the opposite edge).
    """
    boxes, objects = np.asarray(boxes, np.float32), np.asarray(labels) >= 0
    inverted = objects & ((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1]))
    if inverted.any():
        n, m = np.argwhere(inverted)[0]
        raise ValueError(
            f"boxes[{n}, {m}] = {boxes[n, m].tolist()} has x_max < x_min or y_max < y_min "
            f"({int(inverted.sum())} such object box(es)): boxes must be xyxy, "
            "[x_min, y_min, x_max, y_max] in pixels. Convert centre/size boxes with "
            "geometry.cxcywh_to_xyxy; give padding slots the label -1."
        )
    valid = objects & (geometry.box_area(boxes) > 0)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    outside = valid & ((centre < 0) | (centre > image_size)).any(axis=-1)
    if outside.any():
        n, m = np.argwhere(outside)[0]
        raise ValueError(
            f"boxes[{n}, {m}] = {boxes[n, m].tolist()} has its centre outside the {image_size}x"
            f"{image_size} image, so no grid cell can hold it: the box lies wholly (or mostly) "
            f"outside ({int(outside.sum())} such object box(es)). Boxes must be in pixels of the "
            f"image_size={image_size} input: resize them with their images, clip them "
            "(geometry.clip_boxes), or drop those objects (label -1)."
        )


def encode_yolo_v1_targets(boxes, labels, image_size: int, grid_size: int,
                           num_classes: int) -> np.ndarray:
    """Training targets of YOLO v1 for a batch of scenes.

    The object whose box centre falls in cell ``(row, col)`` is that cell's object:
    ``has_object = 1``, ``(x, y)`` = centre offset inside the cell (0..1), ``(w, h)`` = size as
    a fraction of the image, and the class one-hot. A cell holds one object only: when several
    centres fall in the same cell, the largest box is kept (YOLO v1's known weakness with
    small objects in groups, see ``count_dropped_objects``). Padding (label -1) and zero-area
    boxes are skipped; an object box that is not xyxy (``x_max < x_min``: centre/size boxes)
    or whose centre lies outside the image is refused (``check_object_boxes``).

    Args:
        boxes: ``(N, M, 4)`` xyxy pixel boxes (the scene generator's).
        labels: ``(N, M)`` class indices, -1 for padding.
        image_size: side of the square images in pixels.
        grid_size: ``S``.
        num_classes: ``C``.

    Returns:
        float32 ``(N, S, S, 5 + C)``: ``[has_object, x, y, w, h, one-hot]`` per cell.
    """
    image_size = _check_square(image_size)
    boxes, labels, valid = _valid_objects(boxes, labels, image_size)
    if np.any(labels[valid] >= num_classes):
        raise ValueError(f"labels go up to {labels.max()}, beyond num_classes={num_classes}.")
    cell = image_size / grid_size
    targets = np.zeros((len(boxes), grid_size, grid_size, 5 + num_classes), np.float32)
    centre = geometry.xyxy_to_cxcywh(boxes)
    area = geometry.box_area(boxes)
    for n in range(len(boxes)):
        # ascending area: a larger object in the same cell overwrites a smaller one
        for m in sorted(np.flatnonzero(valid[n]), key=lambda k: area[n, k]):
            cx, cy, w, h = centre[n, m]
            col = min(int(cx // cell), grid_size - 1)
            row = min(int(cy // cell), grid_size - 1)
            targets[n, row, col] = 0.0
            targets[n, row, col, 0] = 1.0
            targets[n, row, col, 1:5] = (cx / cell - col, cy / cell - row,
                                          w / image_size, h / image_size)
            targets[n, row, col, 5 + labels[n, m]] = 1.0
    return targets


def count_dropped_objects(boxes, labels, image_size: int, grid_size: int) -> int:
    """How many objects lose their cell to a larger one (their centres share a cell)."""
    image_size = _check_square(image_size)
    boxes, labels, valid = _valid_objects(boxes, labels, image_size)
    cell = image_size / grid_size
    centre = geometry.xyxy_to_cxcywh(boxes)[..., :2]
    cells = np.minimum((centre // cell).astype(int), grid_size - 1)
    dropped = 0
    for n in range(len(boxes)):
        occupied = {tuple(cells[n, m]) for m in np.flatnonzero(valid[n])}
        dropped += int(valid[n].sum()) - len(occupied)
    return dropped


# ----------------------------------------------------------------------------- YOLOv2 targets
def encode_yolo_v2_targets(boxes, labels, image_size: int, anchors, num_classes: int, *,
                           stride: int = 8) -> np.ndarray:
    """Targets of YOLOv2: each object goes to the cell of its centre and, there, to the anchor
    whose shape fits it best (highest ``shape_iou``).

    Args:
        boxes: ``(N, M, 4)`` xyxy pixel boxes at ``image_size``.
        labels: ``(N, M)`` class indices, -1 for padding.
        image_size: side of the square input (a multiple of ``stride``).
        anchors: ``(A, 2)`` anchor shapes in pixels.
        num_classes: ``C``.
        stride: pixels per grid cell.

    Returns:
        float32 ``(N, S, S, A, 5 + C)`` with ``S = image_size / stride``:
        ``[has_object, x_min, y_min, x_max, y_max (pixels), one-hot]`` at the responsible
        (cell, anchor), zeros elsewhere. When two objects want the same (cell, anchor), the
        larger one is kept. Padding (label -1) and zero-area boxes are skipped; object boxes
        that are not xyxy or whose centre lies outside the image are refused
        (``yolo.check_object_boxes``).
    """
    anchors = priors.check_anchors(anchors)
    image_size = int(image_size)
    if image_size % stride:
        raise ValueError(
            f"image_size={image_size} is not a multiple of the stride {stride}: use "
            f"{image_size // stride * stride} or {(image_size // stride + 1) * stride}."
        )
    boxes = np.asarray(boxes, np.float32)
    labels = np.asarray(labels)
    if boxes.ndim != 3 or labels.shape != boxes.shape[:2]:
        raise ValueError(f"boxes must be (N, M, 4) and labels (N, M), got {boxes.shape} and "
                         f"{labels.shape}.")
    check_object_boxes(boxes, labels, image_size)  # xyxy, centre inside the image
    grid = image_size // stride
    targets = np.zeros((len(boxes), grid, grid, len(anchors), 5 + num_classes), np.float32)
    area = geometry.box_area(boxes)
    valid = (labels >= 0) & (area > 0)
    if np.any(labels[valid] >= num_classes):
        raise ValueError(f"labels go up to {labels.max()}, beyond num_classes={num_classes}.")
    centre = geometry.xyxy_to_cxcywh(boxes)
    for n in range(len(boxes)):
        index = np.flatnonzero(valid[n])
        if len(index) == 0:
            continue
        best = np.argmax(priors.shape_iou(centre[n, index, 2:], anchors), axis=1)
        for m, a in sorted(zip(index, best), key=lambda t: area[n, t[0]]):
            col = min(int(centre[n, m, 0] // stride), grid - 1)
            row = min(int(centre[n, m, 1] // stride), grid - 1)
            targets[n, row, col, a] = 0.0
            targets[n, row, col, a, 0] = 1.0
            targets[n, row, col, a, 1:5] = boxes[n, m]
            targets[n, row, col, a, 5 + labels[n, m]] = 1.0
    return targets


# ----------------------------------------------------------------------------- batches
class YoloBatches(SeededBatches):
    """Training batches for YOLO and YOLOv2: augmentation, multi-scale, target encoding.

    A ``batching.SeededBatches``: batch ``step`` takes the examples of that step from the
    shared shuffled passes (``batching.step_indices``) and draws its augmentation from the
    step's generator, so the same seed gives the same batches. Each batch gets one random
    symmetry of the square (``augment=True``: flips and transposition; ``"horizontal"``: a
    left-right mirror only, for photographs, which have an up and a down), is resized to the
    current input size and has its targets encoded with ``encode(boxes, labels, image_size)``.
    With several ``sizes`` the input size changes every ``change_every`` steps (YOLOv2's
    multi-scale training: the paper picks a new size, a multiple of 32, every 10 batches; ours
    are multiples of the network's stride).

    ``dataset(epochs)`` streams the batches to ``model.fit`` as a ``tf.data.Dataset`` whose
    spatial dimensions are left free (the per-cell layout, ``example.shape[3:]``, stays fixed),
    so that one traced training step serves every input size (a Keras ``PyDataset`` would fix
    the shapes of its first batches)::

        model.fit(batches.dataset(10), steps_per_epoch=len(batches), epochs=10)

    Args:
        images: ``(N, S0, S0, 3)`` images, pixel values in [0, 255] (uint8 or float); batches
            are float32 in the same range.
        boxes: ``(N, M, 4)`` xyxy pixel boxes at size ``S0``.
        labels: ``(N, M)`` class indices, -1 for padding.
        encode: ``encode(boxes, labels, image_size) -> targets`` for one batch.
        batch_size: scenes per batch.
        steps: batches per epoch.
        sizes: input sizes to draw from (default: the native size only).
        change_every: batches between two size changes.
        augment: ``True``: a random symmetry of the square (flips, transposition: the
            generated shapes keep their class under all of them); ``"horizontal"``: a random
            left-right mirror only (photographs); ``False``: none.
        seed: fixes the order, the flips and the sizes.
        **kwargs: passed to ``SeededBatches`` (``workers``, ``use_multiprocessing``).
    """

    def __init__(self, images, boxes, labels, encode, *, batch_size: int = 16, steps: int,
                 sizes=None, change_every: int = 10, augment: bool = True, seed: int = 0,
                 **kwargs):
        self.images = np.asarray(images)
        self.boxes = np.asarray(boxes, np.float32)
        self.labels = np.asarray(labels)
        if len(self.images) == 0:
            raise ValueError("YoloBatches got no images.")
        if not len(self.images) == len(self.boxes) == len(self.labels):
            raise ValueError(f"images, boxes and labels must have one row per scene, got "
                             f"{len(self.images)}, {len(self.boxes)} and {len(self.labels)}.")
        if int(change_every) != change_every or change_every < 1:
            raise ValueError(f"change_every must be a whole number >= 1, got {change_every!r}.")
        super().__init__(len(self.images), batch_size=batch_size, steps=steps, seed=seed,
                         **kwargs)
        self.encode = encode
        self.sizes = tuple(int(s) for s in (sizes or (self.images.shape[1],)))
        self.change_every = int(change_every)
        if augment not in (True, False, "horizontal"):
            raise ValueError(f"augment must be True, False or 'horizontal', got {augment!r}.")
        self.augment = augment

    def size_at(self, step: int) -> int:
        """The input size of global step ``step`` (one per block of ``change_every`` steps).

        Drawn from a child (``Generator.spawn``) of the generator of the block's first step,
        so it uses up none of that step's own draws.
        """
        if len(self.sizes) == 1:
            return self.sizes[0]
        first = int(step) // self.change_every * self.change_every
        child = self._step_rng(first).spawn(1)[0]
        return self.sizes[int(child.integers(len(self.sizes)))]

    def batch_at_step(self, step: int):
        """``(images float32, targets)`` of global step ``step``, at ``size_at(step)``."""
        return self.make_batch(self._step_indices(step), self._step_rng(step),
                               self.size_at(step))

    def make_batch(self, indices, rng, size=None):
        """The batch of scenes ``indices``: flips drawn from ``rng``, resized to ``size``
        (default: the first of ``sizes``), targets encoded at that size."""
        size = self.sizes[0] if size is None else int(size)
        images, boxes, labels = self.images[indices], self.boxes[indices], self.labels[indices]
        if self.augment:
            h, v, t = rng.integers(0, 2, 3).astype(bool)  # the same draws in either mode
            if self.augment == "horizontal":
                v = t = False
            images, boxes = augment.flip_scenes(images, boxes, horizontal=h, vertical=v,
                                                transpose=t)
        images, boxes = augment.resize_scenes(images, boxes, size)
        return images.astype(np.float32), self.encode(boxes, labels, size)

    def dataset(self, epochs: int = 1):
        """The batches of ``epochs`` epochs from the current one, as ``tf.data``, in order,
        with batch and spatial dimensions free (the per-cell layout fixed), two batches
        prefetched and the fixed options (``batching.fixed_tf_data_options``)."""
        import tensorflow as tf

        if int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}.")
        first = self.epoch * self.steps
        _, example = self.batch_at_step(first)

        def generate():
            for step in range(first, first + int(epochs) * self.steps):
                yield self.batch_at_step(step)

        signature = (tf.TensorSpec((None, None, None, 3), tf.float32),
                     tf.TensorSpec((None, None, None) + example.shape[3:], tf.float32))
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
        return dataset.with_options(fixed_tf_data_options())  # a fixed buffer of two batches
