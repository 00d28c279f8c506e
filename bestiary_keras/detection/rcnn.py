"""R-CNN (Girshick, Donahue, Darrell, Malik, "Rich feature hierarchies for accurate object
detection and semantic segmentation", CVPR 2014): notebook 03.

The slide's pipeline, one stage after the other:

1. about 2,000 region proposals per image by selective search (``proposals``);
2. each proposal, dilated by a few pixels of context, is **warped** to the CNN's fixed input
   size (``warp_regions``) and passed through the CNN (``region_cnn``), which is first trained
   ("fine-tuned") to classify warped regions into ``K`` classes + background;
3. per-class **linear SVMs** (scikit-learn) score its fc7 features;
4. per-class **linear box regression** (ridge, on pool5 features) corrects the box;
5. per-class greedy NMS.

Every proposal goes through the whole CNN separately: that is what Fast R-CNN removes.
"""

from __future__ import annotations

import time

import keras
import numpy as np
from scipy import special
from keras import layers

from bestiary_keras import geometry
from bestiary_keras.batching import fixed_tf_data_options
from bestiary_keras.detection import boxes as box_utils
from bestiary_keras.detection.backbones import vgg_backbone

__all__ = [
    "warp_regions",
    "region_cnn",
    "label_regions",
    "region_dataset",
    "RCNN",
]


def _context_boxes(boxes, size: int, context: int):
    """Dilates boxes so that, once warped to ``size`` pixels, ``context`` pixels surround the
    original box (R-CNN, Appendix A: ``p = 16`` at 227 pixels)."""
    boxes = np.asarray(boxes, np.float32)
    inner = float(size - 2 * context)
    if inner <= 0:
        raise ValueError(f"context={context} leaves no room in a warp of size {size}.")
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    half = np.maximum(boxes[..., 2:] - boxes[..., :2], 1.0) / 2.0 * (size / inner)
    return np.concatenate([centre - half, centre + half], axis=-1)


def warp_regions(images, boxes, image_index, size: int = 32, context: int = 2):
    """Crops and warps (anisotropically) every region to ``size x size`` pixels.

    Uses ``tf.image.crop_and_resize`` (bilinear; Keras has no crop-and-resize op); parts of a
    dilated box outside the image are filled with the mean grey (the paper fills with the image
    mean).

    Args:
        images: ``(N, H, W, 3)`` images (uint8 or float in [0, 255]).
        boxes: ``(R, 4)`` xyxy pixel boxes.
        image_index: int ``(R,)``: the image each box belongs to.
        size: side of the warped regions.
        context: pixels of context around the box in the warped region.

    Returns:
        float32 ``(R, size, size, 3)`` in [0, 255].
    """
    import tensorflow as tf

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    image_index = np.asarray(image_index, np.int32).reshape(-1)
    if len(boxes) != len(image_index):
        raise ValueError(
            f"boxes ({len(boxes)}) and image_index ({len(image_index)}) must have the same length."
        )
    if len(boxes) == 0:
        return np.zeros((0, size, size, 3), np.float32)
    height, width = np.shape(images)[1:3]
    dilated = _context_boxes(boxes, size, context)
    # crop_and_resize samples pixel centres: box [x0, x1) maps to centres x0 + 0.5 ... x1 - 0.5
    normalised = np.stack([
        (dilated[:, 1] + 0.5 * (dilated[:, 3] - dilated[:, 1]) / size - 0.5) / (height - 1),
        (dilated[:, 0] + 0.5 * (dilated[:, 2] - dilated[:, 0]) / size - 0.5) / (width - 1),
        (dilated[:, 3] - 0.5 * (dilated[:, 3] - dilated[:, 1]) / size - 0.5) / (height - 1),
        (dilated[:, 2] - 0.5 * (dilated[:, 2] - dilated[:, 0]) / size - 0.5) / (width - 1),
    ], axis=1)
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    warped = tf.image.crop_and_resize(images, normalised, image_index, (size, size),
                                      extrapolation_value=127.5)
    return warped.numpy()


def _check_num_classes(num_classes):
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (object classes K; the soft-max adds "
                         f"the background), got num_classes={num_classes!r}.")


def region_cnn(input_shape=(32, 32, 3), num_classes: int = 3, *, widths=(16, 32, 64, 128),
               convs_per_stage=(1, 1, 2, 2), fc_units=(256, 128), bn_momentum: float = 0.99,
               name="region_cnn"):
    """The R-CNN network: the same conv body as notebooks 04/05, on one warped region.

    Args:
        input_shape: ``(size, size, 3)`` of the warped regions.
        num_classes: object classes ``K`` (the soft-max has ``K + 1`` outputs, 0 = background).
        widths, convs_per_stage: ``backbones.vgg_backbone`` stages.
        fc_units: widths of fc6 and fc7.
        bn_momentum: momentum of the body's batch-normalisation moving statistics (Keras'
            0.99 averages over about the last 100 steps; 0.9, over about 10, lets them keep up
            with weights that still change fast, as in a training of a few hundred steps).
        name: model name.

    Returns:
        A ``keras.Model`` warped region -> ``[logits (K + 1), fc7 (fc_units[-1]), pool5
        (flattened conv features)]``; train it on the logits (``compile`` with a loss on the
        first output only, see notebook 03).
    """
    _check_num_classes(num_classes)
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1) (the weight of the old moving average), "
                         f"got bn_momentum={bn_momentum!r}.")
    body = vgg_backbone(tuple(input_shape), widths=widths, convs_per_stage=convs_per_stage,
                        name="conv")
    for layer in body.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(bn_momentum)
    inputs = keras.Input(tuple(input_shape), name="region")
    pool5 = layers.Flatten(name="pool5")(layers.MaxPooling2D(2, name="pool")(body(inputs)))
    x = pool5
    for i, units in enumerate(fc_units, start=6):
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    logits = layers.Dense(num_classes + 1, name="cls_score")(x)
    return keras.Model(inputs, [logits, x, pool5], name=name)


def label_regions(proposals, gt_boxes, gt_labels, foreground_iou: float = 0.5,
                  add_ground_truth: bool = True):
    """Labels every proposal of every image for fine-tuning (R-CNN, Sec. 2.3).

    A proposal with IoU >= 0.5 with an object gets that object's class ``k + 1`` (the best
    overlapping one), every other proposal is background (0).

    Args:
        proposals: per image ``(P_i, 4)`` boxes.
        gt_boxes: ``(N, M, 4)``; gt_labels: ``(N, M)`` with -1 padding.
        foreground_iou: the IoU threshold.
        add_ground_truth: include the ground-truth boxes themselves.

    Returns:
        ``image_index (R,)``, ``boxes (R, 4)``, ``labels (R,)`` (``u``), ``max_iou (R,)``,
        ``matched (R, 4)`` (the best overlapping object's box, zeros for none).
    """
    index, boxes, labels, ious, matched = [], [], [], [], []
    for i, props in enumerate(proposals):
        keep = np.asarray(gt_labels[i]) >= 0
        gts, classes = np.asarray(gt_boxes[i], np.float32)[keep], np.asarray(gt_labels[i])[keep]
        props = np.asarray(props, np.float32).reshape(-1, 4)
        if add_ground_truth:
            props = np.concatenate([props, gts])
        if len(gts):
            iou = geometry.pairwise_iou(props, gts)
            best = iou.argmax(axis=1)
            best_iou = iou[np.arange(len(props)), best]
            lab = np.where(best_iou >= foreground_iou, classes[best] + 1, 0)
            match = gts[best]
        else:
            best_iou = np.zeros(len(props), np.float32)
            lab = np.zeros(len(props), np.int64)
            match = np.zeros((len(props), 4), np.float32)
        index.append(np.full(len(props), i))
        boxes.append(props)
        labels.append(lab)
        ious.append(best_iou)
        matched.append(match)
    cat = lambda xs, shape, dtype: (np.concatenate(xs).astype(dtype) if xs  # noqa: E731
                                    else np.zeros(shape, dtype))
    return (cat(index, (0,), np.int32), cat(boxes, (0, 4), np.float32),
            cat(labels, (0,), np.int32), cat(ious, (0,), np.float32),
            cat(matched, (0, 4), np.float32))


def region_dataset(images, image_index, boxes, labels, batch_size: int = 128,
                   foreground_per_batch: int = 32, size: int = 32, context: int = 2,
                   seed: int = 0):
    """``tf.data`` batches of warped regions for fine-tuning, with a fixed foreground share.

    R-CNN samples 32 foreground and 96 background windows per mini-batch of 128 ("we bias the
    sampling towards positive windows because they are extremely rare"). Regions are warped on
    the fly (``tf.image.crop_and_resize``), with random horizontal flips.

    Returns:
        An infinite ``tf.data.Dataset`` of ``(regions (B, size, size, 3), labels (B,))``.
    """
    import tensorflow as tf

    if not 0 < foreground_per_batch < batch_size:
        raise ValueError(
            f"foreground_per_batch must be in (0, batch_size={batch_size}), got "
            f"{foreground_per_batch}."
        )
    images = tf.constant(np.asarray(images))
    height, width = int(images.shape[1]), int(images.shape[2])
    dilated = _context_boxes(boxes, size, context)
    fg = np.flatnonzero(labels > 0)
    bg = np.flatnonzero(labels == 0)
    if len(fg) == 0 or len(bg) == 0:
        raise ValueError("region_dataset needs both foreground and background regions.")

    def stream(ids, n, s):
        return (tf.data.Dataset.from_tensor_slices(ids.astype(np.int32)).repeat()
                .shuffle(min(len(ids), 20000), seed=s).batch(n))

    table_boxes = tf.constant(dilated, tf.float32)
    table_index = tf.constant(np.asarray(image_index, np.int32))
    table_labels = tf.constant(np.asarray(labels, np.int32))
    scale = tf.constant([height, width, height, width], tf.float32)

    def warp(ids):
        b = tf.gather(table_boxes, ids)
        b = tf.stack([b[:, 1], b[:, 0], b[:, 3], b[:, 2]], axis=1)
        half = tf.stack([(b[:, 2] - b[:, 0]), (b[:, 3] - b[:, 1])] * 2, axis=1) / (2.0 * size)
        b = (b + half * tf.constant([1.0, 1.0, -1.0, -1.0]) - 0.5) / (scale - 1.0)
        img = tf.cast(tf.gather(images, tf.gather(table_index, ids)), tf.float32)
        regions = tf.image.crop_and_resize(img, b, tf.range(tf.shape(ids)[0]), (size, size),
                                           extrapolation_value=127.5)
        flip = tf.random.stateless_uniform((tf.shape(ids)[0], 1, 1, 1), seed=[seed, 1]) < 0.5
        regions = tf.where(flip, regions[:, :, ::-1], regions)
        return regions, tf.gather(table_labels, ids)

    ds = tf.data.Dataset.zip(stream(fg, foreground_per_batch, seed),
                             stream(bg, batch_size - foreground_per_batch, seed + 1))
    return ds.map(lambda a, b: warp(tf.concat([a, b], 0)),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(
        fixed_tf_data_options())  # see there: no idle wait after fit


class RCNN:
    """The R-CNN detector: a region CNN, per-class linear SVMs and box regressors.

    Args:
        cnn: a ``region_cnn`` model (trained on warped regions).
        num_classes: ``K``.
        size, context: warping settings (as used to train ``cnn``).
    """

    def __init__(self, cnn, num_classes: int, size: int = 32, context: int = 2):
        self.cnn = cnn
        self.num_classes = int(num_classes)
        self.size = int(size)
        self.context = int(context)
        self.svms = [None] * self.num_classes
        self.scalers = None
        self.regressors = [None] * self.num_classes
        self._predict = None

    def forward(self, images, image_index, boxes, batch_size: int = 512):
        """The CNN on warped regions: ``logits (R, K + 1)``, ``fc7 (R, F7)``, ``pool5 (R, F5)``."""
        import tensorflow as tf

        if self._predict is None:
            self._predict = tf.function(lambda x: self.cnn(x, training=False),
                                        reduce_retracing=True)
        if len(boxes) == 0:
            return tuple(np.zeros((0, o.shape[-1]), np.float32) for o in self.cnn.outputs)
        outputs = None  # filled in place: no second copy of pool5 for a concatenation
        for start in range(0, len(boxes), batch_size):
            sl = slice(start, start + batch_size)
            warped = warp_regions(images, boxes[sl], image_index[sl], self.size, self.context)
            # float32 for scikit-learn, also when the CNN runs in float16 (a mixed policy)
            values = [np.asarray(v, np.float32) for v in self._predict(warped)]
            if outputs is None:
                outputs = tuple(np.empty((len(boxes),) + v.shape[1:], v.dtype) for v in values)
            for out, value in zip(outputs, values):
                out[sl] = value
        return outputs

    def features(self, images, image_index, boxes, batch_size: int = 512):
        """fc7 and pool5 features of the warped regions: ``(R, F7)``, ``(R, F5)``."""
        return self.forward(images, image_index, boxes, batch_size)[1:]

    def fit_svms(self, fc7, labels, max_iou, negative_iou: float = 0.3, C: float = 0.01,
                 max_negatives: int = 20000, seed: int = 0, skip_missing: bool = False):
        """One linear SVM per class (R-CNN, Sec. 2.3 and Appendix B).

        Positives: the ground-truth boxes of the class (rows with ``max_iou == 1`` and that
        label); negatives: regions overlapping no object of the class by ``negative_iou`` or more
        (a random subset of at most ``max_negatives``; the paper mines hard negatives instead).

        Args:
            fc7: ``(R, F)`` features; labels: ``(R,)`` ``u``; max_iou: ``(R,)`` best IoU with an
                object (the object's class is ``labels``).
            skip_missing: a class without any positive gets no SVM and is never detected
                (``score_regions`` gives it -inf), instead of a ``ValueError`` (for real data
                where a small training subset may lack a class).
        """
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        rng = np.random.default_rng(seed)
        self.scalers = StandardScaler().fit(fc7)
        x = self.scalers.transform(fc7)
        for k in range(self.num_classes):
            positive = (labels == k + 1) & (max_iou >= 0.999)
            negative = ~((labels == k + 1) & (max_iou >= negative_iou))
            negative &= ~positive
            neg_ids = np.flatnonzero(negative)
            if len(neg_ids) > max_negatives:
                neg_ids = rng.choice(neg_ids, max_negatives, replace=False)
            pos_ids = np.flatnonzero(positive)
            if len(pos_ids) == 0:
                if skip_missing:
                    self.svms[k] = None
                    continue
                raise ValueError(f"class {k} has no positive examples to train its SVM "
                                 "(skip_missing=True leaves it undetected).")
            ids = np.concatenate([pos_ids, neg_ids])
            y = np.concatenate([np.ones(len(pos_ids)), np.zeros(len(neg_ids))])
            self.svms[k] = LinearSVC(C=C, class_weight="balanced", max_iter=5000,
                                     random_state=seed).fit(x[ids], y)
        return self

    def fit_regressors(self, pool5, boxes, matched, labels, max_iou, min_iou: float = 0.6,
                       alpha: float = 1000.0):
        """One ridge regression per class from pool5 features to ``(t_x, t_y, t_w, t_h)``
        (R-CNN, Appendix C: proposals within IoU 0.6 of an object, regularisation 1000)."""
        from sklearn.linear_model import Ridge

        for k in range(self.num_classes):
            ids = np.flatnonzero((labels == k + 1) & (max_iou >= min_iou))
            if len(ids) == 0:
                continue
            targets = box_utils.encode_boxes(matched[ids], boxes[ids])
            self.regressors[k] = Ridge(alpha=alpha).fit(pool5[ids], targets)
        return self

    def score_regions(self, fc7, pool5, boxes, logits=None, use_svm=True, use_regression=True):
        """Scores ``(R, K)`` and boxes ``(R, K, 4)`` of regions.

        Args:
            fc7, pool5: features; boxes: ``(R, 4)`` the regions.
            logits: the CNN's ``(R, K + 1)`` logits, needed when ``use_svm=False``.
            use_svm: score with the SVMs (R-CNN) or with the fine-tuned soft-max.
            use_regression: apply the box regressors (else the region itself, for every class).
        """
        if use_svm and self.scalers is None:
            raise ValueError("the SVMs are not trained yet: call fit_svms first.")
        if not use_svm and logits is None:
            raise ValueError("use_svm=False scores with the soft-max: pass the CNN's logits.")
        if len(boxes) == 0:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0, self.num_classes, 4))
        if use_svm:
            x = self.scalers.transform(fc7)
            scores = np.stack([np.full(len(x), -np.inf) if svm is None
                               else svm.decision_function(x) for svm in self.svms], axis=1)
        else:
            scores = special.softmax(logits, axis=1)[:, 1:]
        out = np.repeat(np.asarray(boxes, np.float32)[:, None], self.num_classes, axis=1)
        for k, reg in enumerate(self.regressors):
            if reg is not None and use_regression:
                out[:, k] = box_utils.decode_boxes(reg.predict(pool5).astype(np.float32), boxes)
        return scores.astype(np.float32), out

    def detect(self, images, proposals, score_threshold=None, iou_threshold: float = 0.3,
               max_detections: int = 20, use_svm: bool = True, use_regression: bool = True,
               timings: dict | None = None, outputs=None):
        """Detections per image ``[(boxes, scores, classes), ...]`` (per-class NMS at 0.3).

        Args:
            images: ``(N, H, W, 3)``; proposals: per image ``(P_i, 4)``.
            score_threshold: drop boxes scoring below it (default: SVM margin -1, soft-max 0.01).
            use_svm, use_regression: as in ``score_regions`` (the paper's ablations).
            timings: optional dict that receives the seconds spent in ``cnn`` and ``rest``.
            outputs: the CNN's ``(logits, fc7, pool5)`` on these proposals (``forward``), to
                compare scoring variants without running the CNN again.
        """
        if score_threshold is None:
            score_threshold = -1.0 if use_svm else 0.01
        images = np.asarray(images)
        size = images.shape[1:3]
        index = np.concatenate([np.full(len(p), i) for i, p in enumerate(proposals)]
                               + [np.zeros(0, int)]).astype(np.int32)
        boxes = np.concatenate([np.asarray(p, np.float32).reshape(-1, 4) for p in proposals]
                               + [np.zeros((0, 4), np.float32)])
        t0 = time.perf_counter()
        if outputs is None:
            outputs = self.forward(images, index, boxes)
        logits, fc7, pool5 = outputs
        t1 = time.perf_counter()
        scores, regressed = self.score_regions(fc7, pool5, boxes, logits, use_svm, use_regression)
        out = []
        for i in range(len(images)):
            rows = np.flatnonzero(index == i)
            b = geometry.clip_boxes(regressed[rows], size)  # (R_i, K, 4): a box per class
            s = np.where(box_utils.valid_boxes(b), scores[rows], -np.inf)
            b, s, c, count = box_utils.non_max_suppression(
                b[None], s[None], iou_threshold=iou_threshold, max_output=max_detections,
                score_threshold=score_threshold)
            count = int(count[0])
            out.append((b[0, :count], s[0, :count], c[0, :count]))
        if timings is not None:
            timings["cnn"] = timings.get("cnn", 0.0) + t1 - t0
            timings["rest"] = timings.get("rest", 0.0) + time.perf_counter() - t1
        return out
