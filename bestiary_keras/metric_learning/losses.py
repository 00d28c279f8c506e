"""The descriptor chapter's losses, each written once, as on the slides (notebooks 15 to 17).

- ``euclidean_distance``: ``||a - b||_2`` per row, with the square root guarded so that the
  gradient stays finite (zero) at zero distance. An unguarded ``sqrt`` has the derivative
  ``1 / (2 sqrt(0)) = inf`` there, and ``inf * 0`` gives NaN: a pair of identical images, which
  the first steps of a Siamese network produce all the time, would poison the whole batch.
- ``contrastive_loss`` / ``ContrastiveLoss`` (Siamese networks, notebook 15; Hadsell, Chopra and
  LeCun, CVPR 2006, in the slides' non-squared form), ``hardest_negative_contrastive_loss``
  (the same loss with each matching pair's hardest in-batch non-matching pair: HardNet-style
  mining, Mishchuk et al., NIPS 2017) and ``mined_contrastive_loss`` (Simo-Serra et al.'s
  mining, ICCV 2015: forward many pairs, back-propagate only the highest-loss fraction).
- ``triplet_ratio_loss`` / ``pair_loss`` / ``wohlhart_lepetit_loss`` (triplet descriptors for
  object recognition and 3D pose, notebook 16; Wohlhart and Lepetit, CVPR 2015).
- ``lift_global_cost`` (LIFT, notebook 17; Yi, Trulls, Lepetit and Fua, ECCV 2016), in the
  margin form (plain distances, margin ``C``) or the slide's squared-norm form.

Label convention, everywhere in this package: ``y = 1`` means *the same* (same class, same
scene point: a matching pair), ``y = 0`` means *different*. Hadsell et al. use the opposite
(their ``Y = 0`` is "similar"), and a well-known public example once paired the paper's formula
with the other convention, which silently trains the network backwards (keras-team/keras#16935,
fixed in keras-team/keras-io#1050). Check which convention a loss expects before you reuse it.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "contrastive_loss", "ContrastiveLoss", "detector_class_loss", "DISTANCE_EPSILON",
    "euclidean_distance", "hardest_negative_contrastive_loss", "HardestNegativeContrastiveLoss",
    "lift_global_cost", "mined_contrastive_loss", "MinedContrastiveLoss", "pair_loss", "triplet_ratio_loss", "wohlhart_lepetit_loss",
]

DISTANCE_EPSILON = 1e-12
"""Squared distances below this are clamped before the square root (distance >= 1e-6)."""


def euclidean_distance(a, b, *, epsilon: float = DISTANCE_EPSILON, keepdims: bool = False):
    """``||a - b||_2`` over the last axis, safe to differentiate at ``a == b``.

    ``sqrt(max(sum((a - b)^2), epsilon))``: where the squared distance is below ``epsilon`` the
    ``maximum`` passes no gradient to it, so the gradient is exactly zero instead of NaN.
    Elsewhere the result is the exact distance.

    Args:
        a, b: tensors of the same shape ``(..., D)``.
        epsilon: clamp of the squared distance (the smallest returned distance is
            ``sqrt(epsilon)``).
        keepdims: keep the reduced last axis (size 1).

    Returns:
        The distances, shape ``(...)`` (or ``(..., 1)`` with ``keepdims``).
    """
    squared = ops.sum(ops.square(a - b), axis=-1, keepdims=keepdims)
    return ops.sqrt(ops.maximum(squared, epsilon))


def contrastive_loss(y_true, distance, margin: float = 1.0):
    r"""The slides' contrastive loss of a Siamese network, one value per pair.

    .. math::
        L(x_1, x_2, y) = y \, \|D(x_1) - D(x_2)\|
                       + (1 - y) \max(0, C - \|D(x_1) - D(x_2)\|)

    ``y = 1``: the pair shows the same class (pulled together); ``y = 0``: different classes
    (pushed apart until they are ``C = margin`` apart, then left alone). Hadsell et al. square
    both terms; the slides (and this function) do not.

    Args:
        y_true: labels, 1 = same, 0 = different, shape ``(N,)`` or ``(N, 1)``.
        distance: ``||D(x_1) - D(x_2)||``, the Siamese network's output, same shape.
        margin: ``C > 0``.

    Returns:
        The loss of each pair, shape ``(N,)`` (Keras averages it over the batch).
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive (it is the distance C beyond which "
                         f"different pairs cost nothing), got margin={margin}.")
    y = ops.reshape(ops.cast(y_true, distance.dtype), (-1,))
    d = ops.reshape(distance, (-1,))
    return y * d + (1.0 - y) * ops.relu(margin - d)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class ContrastiveLoss(keras.losses.Loss):
    """``contrastive_loss`` as a ``keras.losses.Loss`` (``y = 1`` same, ``y = 0`` different).

    Args:
        margin: ``C``, the distance beyond which different pairs cost nothing.
    """

    def __init__(self, margin: float = 1.0, name: str = "contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be positive, got margin={margin}.")
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def hardest_negative_contrastive_loss(point_ids, descriptor_pairs, margin: float = 2.0,
                                      *, epsilon: float = DISTANCE_EPSILON):
    r"""The contrastive loss on a batch of matching pairs, each with its hardest negative.

    Almost all random non-matching patch pairs are already far apart and teach nothing, so hard
    ones are mined. This is the **HardNet-style** miner (Mishchuk et al., NIPS 2017: the
    closest non-matching descriptor of each matching pair in the batch), not Simo-Serra et al.'s
    (for theirs, see ``mined_contrastive_loss``). The mining is within the batch: a batch of ``B`` matching pairs ``(a_i, b_i)`` also holds ``B (B - 1)`` non-matching
    pairs ``(a_i, b_j)``; each matching pair contributes the slides' loss with ``y = 1`` and
    its hardest (closest) non-matching pair, in either direction, with ``y = 0``:

    .. math::
        L_i = \|a_i - b_i\| + \max\big(0, C - \min_{j: id_j \ne id_i}
              \min(\|a_i - b_j\|, \|a_j - b_i\|)\big)

    Args:
        point_ids: ``(B,)`` the scene point of each pair (pairs of the same point are never
            used as negatives of each other).
        descriptor_pairs: ``(B, 2, D)``, the descriptors ``a_i = D(x_i)`` and ``b_i = D(x_i')``
            (see ``siamese.descriptor_pair_network``).
        margin: ``C``.

    Returns:
        Shape ``(B,)``.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got margin={margin}.")
    a = descriptor_pairs[:, 0]
    b = descriptor_pairs[:, 1]
    distances = euclidean_distance(a[:, None, :], b[None, :, :], epsilon=epsilon)  # (B, B)
    ids = ops.reshape(point_ids, (-1,))
    same = ops.equal(ids[:, None], ids[None, :])
    masked = ops.where(same, ops.max(distances) + margin, distances)
    hardest = ops.minimum(ops.min(masked, axis=1), ops.min(masked, axis=0))
    return ops.diagonal(distances) + ops.relu(margin - hardest)


@keras.saving.register_keras_serializable(package="bestiary_keras")
class HardestNegativeContrastiveLoss(keras.losses.Loss):
    """``hardest_negative_contrastive_loss`` as a ``keras.losses.Loss``: ``y_true`` holds the
    point id of each matching pair, ``y_pred`` the ``(B, 2, D)`` descriptor pairs."""

    def __init__(self, margin: float = 2.0, name: str = "hardest_negative_contrastive_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be positive, got margin={margin}.")
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return hardest_negative_contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def mined_contrastive_loss(point_ids, descriptor_pairs, margin: float = 2.0, *,
                           positive_ratio: int = 1, negative_ratio: int = 4,
                           epsilon: float = DISTANCE_EPSILON):
    r"""Simo-Serra et al.'s mining (ICCV 2015): forward many pairs, learn from the hardest.

    They forward a large batch of ``s_p`` matching and ``s_n`` non-matching pairs, compute the
    contrastive loss of every pair and back-propagate only the ``s_p / r_p`` matching and
    ``s_n / r_n`` non-matching pairs of highest loss (mining ratios ``r_p, r_n``, such as 2 or
    4). Here a batch of ``B`` matching pairs ``(a_i, b_i)`` gives the ``s_p = B`` matching
    pairs; the ``s_n = r_n B`` non-matching pairs are ``(a_i, b_{(i + s) mod B})`` for the
    shifts ``s = 1 .. r_n`` (random pairs, as the batch order is random; a pair of the same
    point is skipped), so the ``B`` hardest of them are kept:

    .. math::
        L = \frac{1}{|P|} \sum_{(i, i) \in P} \|a_i - b_i\|
          + \frac{1}{|N|} \sum_{(i, j) \in N} \max(0, C - \|a_i - b_j\|)

    with ``P`` the ``ceil(B / r_p)`` matching pairs and ``N`` the ``ceil(r_n B / r_n) = B``
    non-matching candidates of highest loss (ties broken by position). Unlike the HardNet-style
    ``hardest_negative_contrastive_loss``, a row may contribute several negatives or none, and
    the negatives are a random sample, not the closest of all ``B (B - 1)`` pairs.

    Args:
        point_ids: ``(B,)`` the scene point of each pair.
        descriptor_pairs: ``(B, 2, D)``, the descriptors ``a_i`` and ``b_i``.
        margin: ``C``.
        positive_ratio: ``r_p >= 1`` (1: every matching pair is used).
        negative_ratio: ``r_n >= 1``, the number of shifted pairings forwarded per kept negative
            (1: no mining, one random negative per row).

    Returns:
        Shape ``(B,)``, every entry the batch's loss ``L`` (Keras' mean over the batch is ``L``).
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got margin={margin}.")
    for name, ratio in (("positive_ratio", positive_ratio), ("negative_ratio", negative_ratio)):
        if int(ratio) != ratio or ratio < 1:
            raise ValueError(f"{name} must be an integer >= 1 (forward {name} times as many pairs "
                             f"as are back-propagated), got {name}={ratio}.")
    a = descriptor_pairs[:, 0]
    b = descriptor_pairs[:, 1]
    batch = ops.shape(a)[0]
    ids = ops.reshape(point_ids, (-1,))
    positive = euclidean_distance(a, b, epsilon=epsilon)  # (B,)
    negatives, valid = [], []
    for shift in range(1, int(negative_ratio) + 1):
        rolled = ops.roll(b, shift, axis=0)  # row i pairs with b_(i - shift): a random pairing
        negatives.append(ops.relu(margin - euclidean_distance(a, rolled, epsilon=epsilon)))
        valid.append(ops.not_equal(ids, ops.roll(ids, shift, axis=0)))
    negative = ops.concatenate(negatives)  # (r_n B,)
    valid = ops.cast(ops.concatenate(valid), negative.dtype)

    def hardest_mean(values, mask, keep):
        # the mean of the `keep` largest values where mask = 1 (exactly `keep`: ties by order)
        ranked = ops.where(mask > 0, values, -1.0)
        rank = ops.argsort(ops.argsort(-ranked))  # 0 for the largest
        chosen = ops.cast(rank < keep, values.dtype) * mask
        return ops.sum(values * chosen) / ops.maximum(ops.sum(chosen), 1.0)

    b_int = ops.cast(batch, "int32")
    keep_positive = (b_int + int(positive_ratio) - 1) // int(positive_ratio)
    total = (hardest_mean(positive, ops.ones_like(positive), keep_positive)
             + hardest_mean(negative, valid, b_int))
    return ops.ones_like(positive) * total


@keras.saving.register_keras_serializable(package="bestiary_keras")
class MinedContrastiveLoss(keras.losses.Loss):
    """``mined_contrastive_loss`` (Simo-Serra et al.'s mining) as a ``keras.losses.Loss``:
    ``y_true`` holds the point id of each matching pair, ``y_pred`` the ``(B, 2, D)`` pairs."""

    def __init__(self, margin: float = 2.0, positive_ratio: int = 1, negative_ratio: int = 4,
                 name: str = "mined_contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be positive, got margin={margin}.")
        for arg, ratio in (("positive_ratio", positive_ratio), ("negative_ratio", negative_ratio)):
            if int(ratio) != ratio or ratio < 1:
                raise ValueError(f"{arg} must be an integer >= 1, got {arg}={ratio}.")
        self.margin = float(margin)
        self.positive_ratio, self.negative_ratio = int(positive_ratio), int(negative_ratio)

    def call(self, y_true, y_pred):
        return mined_contrastive_loss(y_true, y_pred, self.margin,
                                      positive_ratio=self.positive_ratio,
                                      negative_ratio=self.negative_ratio)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin,
                "positive_ratio": self.positive_ratio, "negative_ratio": self.negative_ratio}


def triplet_ratio_loss(anchor, positive, negative, margin: float = 0.01,
                       *, epsilon: float = DISTANCE_EPSILON):
    r"""The triplet term of Wohlhart and Lepetit (CVPR 2015), as on the slides, per triplet.

    .. math::
        c(x_i, x_j, x_k) = \max\Big(0,\; 1 - \frac{\|f(x_i) - f(x_k)\|}
                                                   {\|f(x_i) - f(x_j)\| + m}\Big)

    ``x_j`` is the same object as ``x_i`` at a close pose, ``x_k`` a different object or the same
    object at a distant pose. The cost is zero once the negative is at least ``d_+ + m`` away
    (the ratio reaches 1): the margin ``m`` is what keeps the descriptor from collapsing to a
    point. (The paper squares both norms; the slides do not, and neither does this function.)

    Args:
        anchor, positive, negative: descriptors ``f(x_i), f(x_j), f(x_k)``, shape ``(N, D)``.
        margin: ``m > 0``.

    Returns:
        The cost of each triplet, shape ``(N,)``.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive (it keeps the ratio finite and the descriptors "
                         f"apart), got margin={margin}.")
    d_pos = euclidean_distance(anchor, positive, epsilon=epsilon)
    d_neg = euclidean_distance(anchor, negative, epsilon=epsilon)
    return ops.relu(1.0 - d_neg / (d_pos + margin))


def pair_loss(anchor, same):
    r"""The pair term of Wohlhart and Lepetit: ``||f(x_i) - f(x_i')||_2^2`` per pair.

    ``x_i'`` is the same object under (nearly) the same pose, with other noise, lighting or
    background: its descriptor should coincide with ``f(x_i)``.
    """
    return ops.sum(ops.square(anchor - same), axis=-1)


def wohlhart_lepetit_loss(anchor, positive, negative, same, margin: float = 0.01,
                          pair_weight: float = 1.0):
    r"""The full cost of Wohlhart and Lepetit, per sample (without the weight decay).

    .. math::
        L = \sum_{(i,j,k)} c(x_i, x_j, x_k) + \lambda \sum_{(i, i')} \|f(x_i) - f(x_{i'})\|^2

    Args:
        anchor, positive, negative: descriptors of the triplet (see ``triplet_ratio_loss``).
        same: descriptor of ``x_i'``, the anchor's object at the same pose (other rendering).
        margin: ``m`` of the triplet term.
        pair_weight: ``lambda``.

    Returns:
        The cost of each sample, shape ``(N,)``.
    """
    return (triplet_ratio_loss(anchor, positive, negative, margin)
            + pair_weight * pair_loss(anchor, same))


def detector_class_loss(labels, scores, weights=None):
    r"""LIFT's detector classification term: ``alpha_i max(0, 1 - s_i y_i)^2`` per patch.

    Args:
        labels: ``y_i = +1`` for a patch centred on a feature point, ``-1`` for one without
            (``y_true``).
        scores: the detector's score of each patch (the soft maximum of its score map),
            shape ``(N,)`` (``y_pred``).
        weights: ``alpha_i`` (default 1).

    Returns:
        Shape ``(N,)``.
    """
    y = ops.cast(labels, scores.dtype)
    cost = ops.square(ops.relu(1.0 - scores * y))
    return cost if weights is None else cost * ops.cast(weights, scores.dtype)


def lift_global_cost(desc_1, desc_2, desc_3, scores=None, score_labels=None, *,
                     margin: float = 4.0, gamma: float = 1.0, terms=("pair", "negative", "class"),
                     squared: bool = False):
    r"""The single global cost of LIFT (Yi et al., ECCV 2016), one value per quadruplet.

    A quadruplet is ``P1, P2`` (the same 3D point seen in two images), ``P3`` (another point) and
    ``P4`` (a patch without a feature point). With ``d_k = h_rho(G(P_k, S_k))`` the descriptor
    of the crop that the detector ``S`` chose and the orientation network rotated:

    .. math::
        L = \underbrace{\|d_1 - d_2\|}_{\text{pair}}
          + \underbrace{\max(0, C - \|d_1 - d_3\|)}_{\text{negative}}
          + \gamma \underbrace{\sum_{i=1}^{4} \max(0, 1 - s_i y_i)^2}_{\text{class}}

    where ``s_i`` is the detector score of ``P_i`` and ``y = (1, 1, 1, -1)``. That is the
    **margin form** (plain distances, as in the paper's descriptor loss, with margin ``C``).
    With ``squared=True`` it is **the slide's global cost**, with squared norms and a margin of
    1 on the squared distance (``margin`` is then that margin; the slide's is 1):

    .. math::
        L = \|d_1 - d_2\|^2 + \max(0, 1 - \|d_1 - d_3\|^2)
          + \gamma \sum_{i=1}^{4} \max(0, 1 - s_i y_i)^2

    The stages are
    trained one after the other on parts of this one cost, as the paper does: DESC with
    ``pair + negative`` (the contrastive loss), ORI with ``pair`` (the best orientation is the
    one whose rotated crops give equal descriptors), DET with ``class + pair``.

    Args:
        desc_1, desc_2, desc_3: descriptors ``(N, D)`` of ``P1``, ``P2``, ``P3``.
        scores: detector scores ``(N, 4)`` of ``P1..P4`` (needed for the ``"class"`` term).
        score_labels: ``(N, 4)`` of +-1; default ``(1, 1, 1, -1)`` for every row.
        margin: ``C`` of the negative term.
        gamma: weight of the classification term.
        terms: which terms to add (a subset of ``("pair", "negative", "class")``).
        squared: the slide's squared-norm form of the pair and negative terms.

    Returns:
        Shape ``(N,)``.
    """
    if margin <= 0:
        raise ValueError(f"margin must be positive, got margin={margin}.")
    unknown = set(terms) - {"pair", "negative", "class"}
    if unknown or not terms:
        raise ValueError(f"terms must be a non-empty subset of ('pair', 'negative', 'class'), "
                         f"got {terms!r}.")
    cost = 0.0
    if "pair" in terms:
        cost = cost + (ops.sum(ops.square(desc_1 - desc_2), axis=-1) if squared
                       else euclidean_distance(desc_1, desc_2))
    if "negative" in terms:
        cost = cost + (ops.relu(margin - ops.sum(ops.square(desc_1 - desc_3), axis=-1)) if squared
                       else ops.relu(margin - euclidean_distance(desc_1, desc_3)))
    if "class" in terms:
        if scores is None:
            raise ValueError("the 'class' term needs the detector scores (N, 4) of P1..P4; "
                             "pass scores=... or drop 'class' from terms.")
        if score_labels is None:
            score_labels = ops.ones_like(scores) * ops.convert_to_tensor(
                [1.0, 1.0, 1.0, -1.0], dtype=scores.dtype)
        cost = cost + gamma * ops.sum(detector_class_loss(score_labels, scores), axis=-1)
    return cost
