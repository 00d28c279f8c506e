"""Instance masks in the image, mask AP (pycocotools ``segm``), and the ablations' mask heads.

- ``paste_masks``: each detection's ``m x m`` mask probabilities, resampled (bilinearly, pixel
  centres) into its box in the image and thresholded at 0.5, as in the paper's inference.
- ``box_filled_masks``: the baseline a mask head must beat: every detection's box, filled.
- ``coco_mask_average_precision``: COCO mask AP with the official evaluator on RLE masks
  (``pycocotools.mask``), at IoU 0.5:0.95 and 0.5, offline and in memory.
- ``train_mask_head`` / ``head_mask_probs``: the notebook's ablations (RoIAlign vs RoI max
  pooling, stride 4 vs 8, sigmoid vs soft-max) train only a mask head, on the frozen features
  of a trained ``MaskRCNN``, and judge it on that detector's boxes: the rows then differ in the
  mask head alone (the paper retrains everything per row; we cannot afford that here).
"""

from __future__ import annotations


import numpy as np

from bestiary_keras import geometry
from bestiary_keras.coco import coco_ap
from bestiary_keras.batching import step_indices
from bestiary_keras.detection.roi_align import interpolation_weights, sample_coordinates

__all__ = [
    "paste_masks",
    "box_filled_masks",
    "scene_mask_ground_truths",
    "coco_mask_average_precision",
    "jittered_rois",
    "train_mask_head",
    "head_mask_probs",
    "best_mask_ious",
    "ablation_mask_ap",
]


def paste_masks(mask_probs, boxes, image_size, threshold: float = 0.5):
    """Detections' ``m x m`` masks pasted into the image at their boxes.

    Pixel ``(y, x)`` (centre ``(y + 0.5, x + 0.5)``) inside box ``[x0, x1) x [y0, y1)`` reads the
    mask bilinearly at ``((x + 0.5 - x0) m / w - 0.5, ...)``; pixels whose centre is outside the
    box are background.

    Args:
        mask_probs: ``(D, m, m)`` probabilities; boxes: ``(D, 4)`` xyxy pixels.
        image_size: int or ``(height, width)``.
        threshold: a pixel belongs to the instance when its probability is at least this
            (None: return the probabilities).

    Returns:
        bool ``(D, H, W)`` (float32 with ``threshold=None``).
    """
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    probs = np.asarray(mask_probs, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if probs.ndim != 3 or len(probs) != len(boxes):
        raise ValueError(f"mask_probs of shape {probs.shape} must be (D, m, m) for boxes of shape "
                         f"{boxes.shape}: one mask per box.")
    m = probs.shape[1]

    def weights(start, end, size):  # (D, size, m): pixels of the image <- cells of the mask
        extent = np.maximum(end - start, 1e-6)
        first = -start * m / extent - 0.5
        coords = sample_coordinates(first, first + size * m / extent, size, 1, xp=np)
        inside = (coords >= -0.5) & (coords <= m - 0.5)
        return interpolation_weights(coords, m, size, xp=np) * inside[..., None]

    a_y = weights(boxes[:, 1], boxes[:, 3], height)
    a_x = weights(boxes[:, 0], boxes[:, 2], width)
    full = np.einsum("dym,dmn,dxn->dyx", a_y, probs, a_x)
    return full if threshold is None else full >= threshold


def box_filled_masks(boxes, image_size):
    """bool ``(D, H, W)``: every box filled (pixels whose centre lies inside it)."""
    return paste_masks(np.ones((len(np.reshape(boxes, (-1, 4))), 2, 2), np.float32), boxes,
                       image_size)


def scene_mask_ground_truths(scenes):
    """``[(masks (G, H, W) bool, classes (G,)), ...]`` per image from a ``SceneSet``."""
    return [(np.asarray(masks[labels >= 0], bool), np.asarray(labels[labels >= 0], np.int64))
            for masks, labels in zip(scenes.masks, scenes.labels)]


def _rle(mask):
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return rle


def coco_mask_average_precision(instances, ground_truths, num_classes: int | None = None,
                                max_detections: int = 100):
    """COCO mask AP (``iouType="segm"``) with pycocotools, offline.

    Args:
        instances: per image ``(masks (D, H, W) bool, scores (D,), classes (D,))``.
        ground_truths: per image ``(masks (G, H, W) bool, classes (G,))``.
        num_classes: number of classes (default: largest class index seen + 1).
        max_detections: kept per image by score (COCO: 100).

    Returns:
        ``(ap, ap50)``: mask AP over IoU 0.5:0.05:0.95 and at 0.5 (0.0 without detections or
        without ground truth).
    """
    from pycocotools import mask as mask_utils

    instances, ground_truths = list(instances), list(ground_truths)
    if len(instances) != len(ground_truths):
        raise ValueError(f"instances has {len(instances)} images but ground_truths has "
                         f"{len(ground_truths)}: give one entry per image to both.")
    seen = [int(c) for _, _, cs in instances for c in cs] + [
        int(c) for _, cs in ground_truths for c in cs]
    num_classes = num_classes or (max(seen) + 1 if seen else 1)
    images, annotations, results = [], [], []
    for i, ((masks, classes), (dmasks, scores, dclasses)) in enumerate(zip(ground_truths,
                                                                           instances)):
        masks, dmasks = np.asarray(masks, bool), np.asarray(dmasks, bool)
        if masks.ndim != 3 or len(masks) != len(classes):
            raise ValueError(f"ground truth {i}: masks of shape {masks.shape} for classes of "
                             f"shape {np.shape(classes)}; give (G, H, W) masks and (G,) classes.")
        if dmasks.ndim != 3 or not len(dmasks) == len(scores) == len(dclasses):
            raise ValueError(f"instances {i}: masks of shape {dmasks.shape}, scores of shape "
                             f"{np.shape(scores)} and classes of shape {np.shape(dclasses)} "
                             "must have one entry per detection.")
        height, width = masks.shape[1:] if masks.ndim == 3 and len(masks) else dmasks.shape[1:]
        images.append({"id": i + 1, "height": int(height), "width": int(width)})
        for mask, cls in zip(masks, classes):
            rle = _rle(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                "segmentation": rle, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
        for mask, score, cls in zip(dmasks, scores, dclasses):
            results.append({"image_id": i + 1, "category_id": int(cls) + 1,
                            "segmentation": _rle(mask), "score": float(score)})
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return coco_ap(images, categories, annotations, results, "segm",
                   max_detections=max_detections)


# ----------------------------------------------------------------------------- ablation heads
def jittered_rois(boxes, labels, copies: int = 4, noise: float = 0.1, min_iou: float = 0.6,
                  seed: int = 0):
    """Positive RoIs around each object, like the detector's foreground proposals.

    Each of ``copies`` RoIs per object moves the centre by ``noise`` x the box size and scales
    width and height by ``exp(noise * N(0, 1))``; RoIs with IoU below ``min_iou`` are replaced
    by the box itself.

    Returns:
        ``(image_index (R,), object_index (R,), rois (R, 4), labels (R,))``.
    """
    rng = np.random.default_rng(seed)
    boxes, labels = np.asarray(boxes, np.float32), np.asarray(labels)
    image, obj = np.nonzero(labels >= 0)
    image, obj = np.repeat(image, copies), np.repeat(obj, copies)
    gt = boxes[image, obj]
    size = gt[:, 2:] - gt[:, :2]
    centre = (gt[:, :2] + gt[:, 2:]) / 2 + noise * size * rng.normal(size=size.shape)
    size = size * np.exp(noise * rng.normal(size=size.shape))
    rois = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    rois = np.where((geometry.elementwise_iou(rois, gt) >= min_iou)[:, None], rois, gt)
    return image, obj, rois, labels[image, obj]


def train_mask_head(features, masks, rois, image_index, object_index, class_ids, pool, head, *,
                    steps: int, batch_size: int = 64, softmax: bool = False,
                    learning_rate: float = 1e-3, seed: int = 0):
    """Trains ``head`` on ``pool`` of frozen ``features`` for the given positive RoIs.

    Args:
        features: ``(N, H, W, C)`` frozen maps of the training images.
        masks: ``(N, M, H_img, W_img)`` instance masks; rois ``(R, 4)`` with their image and
            object indices ``(R,)`` and classes ``(R,)`` (``jittered_rois``).
        pool: ``RoIAlign`` or ``RoIMaxPooling``; head: ``mask_rcnn.mask_head(...)``.
        steps, batch_size, learning_rate, seed: the training budget.
        softmax: the coupled loss (``mask_rcnn.mask_loss``).

    Returns:
        The per-step losses (list of float).
    """
    import keras
    import tensorflow as tf

    from bestiary_keras.detection.mask_rcnn import mask_loss, mask_targets

    m = int(head.output.shape[1])
    targets = []
    for s in range(0, len(rois), 512):  # (R, 1, m, m), in chunks of 512 instance masks
        chunk = slice(s, s + 512)
        instance = masks[image_index[chunk], object_index[chunk]][:, None].astype(np.float32)
        targets.append(np.asarray(mask_targets(instance, rois[chunk, None],
                                               np.zeros((len(instance), 1), np.int32), m)))
    targets = np.concatenate(targets)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(head.trainable_variables)

    @tf.function(reduce_retracing=True)
    def step(f, r, y, u):
        with tf.GradientTape() as tape:
            logits = head(tf.reshape(pool(f, r), (-1,) + tuple(pool.compute_output_shape(
                f.shape, r.shape)[2:])), training=True)
            loss = mask_loss(u, y[:, 0], logits, softmax)
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables))
        return loss

    losses = []
    for batch in step_indices(len(rois), batch_size, steps, seed):
        loss = step(features[image_index[batch]], rois[batch, None], targets[batch],
                    class_ids[batch] + 1)
        losses.append(float(loss))
    return losses


def head_mask_probs(features, detections, pool, head, softmax: bool = False,
                    batch_size: int = 256):
    """Per image ``(D, m, m)`` probabilities of each detection's class, from a trained head.

    Args:
        features: ``(N, H, W, C)`` maps of the test images; detections: per image
            ``(boxes, scores, classes, ...)``.
    """
    from keras import ops

    counts = [len(d[0]) for d in detections]
    image = np.repeat(np.arange(len(detections)), counts)
    boxes = np.concatenate([np.reshape(d[0], (-1, 4)) for d in detections]).astype(np.float32)
    classes = np.concatenate([np.reshape(d[2], (-1,)) for d in detections]).astype(np.int32)
    out = []
    for s in range(0, len(boxes), batch_size):
        pooled = pool(features[image[s:s + batch_size]], boxes[s:s + batch_size, None])[:, 0]
        logits = head(pooled, training=False)
        probs = ops.softmax(logits, -1) if softmax else ops.sigmoid(logits)
        pick = classes[s:s + batch_size] + int(softmax)
        out.append(np.take_along_axis(np.asarray(probs), pick[:, None, None, None], -1)[..., 0])
    m = int(head.output.shape[1])
    probs = np.concatenate(out) if out else np.zeros((0, m, m), np.float32)
    return np.split(probs, np.cumsum(counts)[:-1])


def best_mask_ious(pred_masks, gt_masks):
    """``(G,)``: for each ground-truth mask, its best IoU with any predicted mask (0 if none)."""
    if not len(gt_masks) or not len(pred_masks):
        return np.zeros(len(gt_masks), np.float32)
    pred = np.asarray(pred_masks, bool).reshape(len(pred_masks), -1).astype(np.float32)
    gt = np.asarray(gt_masks, bool).reshape(len(gt_masks), -1).astype(np.float32)
    inter = gt @ pred.T
    union = gt.sum(1)[:, None] + pred.sum(1)[None] - inter
    return (inter / np.maximum(union, 1.0)).max(axis=1)


def ablation_mask_ap(features_train, features_test, train, test, detections, *, pool: str,
                     stride: int, softmax: bool = False, steps: int = 200, copies: int = 2,
                     width: int = 32, pool_size: int = 7, seed: int = 0):
    """One ablation row: a fresh mask head on frozen maps, judged on fixed detections.

    Args:
        features_train, features_test: ``(N, H, W, C)`` frozen maps of stride ``stride``.
        train, test: ``SceneSet`` s of those images; detections: per test image
            ``(boxes, scores, classes, ...)`` (the trained detector's).
        pool: ``"align"`` or ``"max"``; softmax: the coupled loss.
        steps, copies, width, pool_size, seed: the head and its training budget.

    Returns:
        ``(mask AP, mask AP@0.5, losses)``.
    """
    from bestiary_keras.detection.roi_pooling import RoIMaxPooling
    from bestiary_keras.detection.mask_rcnn import mask_head
    from bestiary_keras.detection.roi_align import RoIAlign

    if pool not in ("align", "max"):
        raise ValueError(f"pool must be 'align' or 'max', got {pool!r}.")
    layer = (RoIAlign(pool_size, 1.0 / stride) if pool == "align"
             else RoIMaxPooling(pool_size, 1.0 / stride))
    head = mask_head((pool_size, pool_size, features_train.shape[-1]), train.num_classes, width,
                     2, softmax, name=f"mask_head_{pool}_{stride}_{int(softmax)}")
    image, obj, rois, labels = jittered_rois(train.boxes, train.labels, copies, seed=seed)
    losses = train_mask_head(features_train, train.masks, rois, image, obj, labels, layer, head,
                             steps=steps, softmax=softmax, seed=seed)
    probs = head_mask_probs(features_test, detections, layer, head, softmax)
    size = test.images.shape[1:3]
    instances = [(paste_masks(p, d[0], size), d[1], d[2]) for p, d in zip(probs, detections)]
    ap, ap50 = coco_mask_average_precision(instances, scene_mask_ground_truths(test),
                                           train.num_classes)
    return ap, ap50, losses
