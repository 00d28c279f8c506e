"""Worked solutions of notebook 15's exercises (Siamese networks and the contrastive loss).

- ``solution_1``: the contrastive loss's gradient for pairs inside and outside the margin
  (where the margin stops pushing), next to Hadsell et al.'s squared form.
- ``solution_2``: the digit Siamese network trained without its negative term, and with its
  margin removed (collapse and expansion of the embedding).
- ``solution_3``: FPR95 counted by hand on a short list of distances, checked against
  ``evaluation.fpr_at_recall``.

Run one with ``from bestiary_keras.exercises import siamese; siamese.solution_1()``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["solution_1", "solution_2", "solution_3"]


def solution_1(seed: int = 0, margin: float = 1.0, distances=(0.3, 0.9, 1.5)) -> dict:
    r"""Exercise 1: where does the margin stop pushing?

    **Exercise.** For a pair of descriptors ``a, b`` at distance ``d = ||a - b||``, compute the
    gradient of the slide's contrastive loss with respect to ``a`` for a matching pair
    (``y = 1``) and for a non-matching pair (``y = 0``) at ``d = 0.3, 0.9, 1.5`` with margin
    ``C = 1``, by hand and with ``tf.GradientTape``. Compare with Hadsell et al.'s squared form
    ``1/2 d^2`` and ``1/2 max(0, C - d)^2``.

    **Method.** ``L = y d + (1 - y) max(0, C - d)`` gives ``dL/da = y u - (1 - y) [d < C] u``
    with ``u = (a - b) / d`` the unit vector from ``b`` to ``a``: a gradient of norm exactly 1
    for a matching pair at any distance and for a non-matching pair inside the margin, and 0
    outside it. The squared form gives norms ``d`` (matching) and ``C - d`` (non-matching, inside
    the margin). ``b`` is drawn at random (``seed``), ``a = b + d v`` with a random unit ``v``.

    **Expected outcome.** Slide's form: norms 1, 1, 1 (matching) and 1, 1, 0 (non-matching);
    the gradient of a non-matching pair is ``-u`` (cosine -1 with ``u``: a descent step moves
    ``a`` straight away from ``b``) and does not shrink as the pair approaches the margin: it stops abruptly at ``d = C``. The
    squared form: 0.3, 0.9, 1.5 and 0.7, 0.1, 0: it fades out towards the margin, and a
    matching pair that is almost right is pulled only weakly.

    Returns:
        ``{"distances", "slide_matching", "slide_non_matching", "squared_matching",
        "squared_non_matching", "cosine_non_matching"}``: lists of gradient norms (and the
        cosine between the non-matching gradient and ``u``, 0 where the gradient is 0) per
        distance.
    """
    import tensorflow as tf

    from bestiary_keras.metric_learning import losses

    rng = np.random.default_rng(seed)
    out = {"distances": [float(d) for d in distances], "slide_matching": [],
           "slide_non_matching": [], "squared_matching": [], "squared_non_matching": [],
           "cosine_non_matching": []}
    for d in distances:
        b = rng.normal(size=(1, 4)).astype(np.float32)
        v = rng.normal(size=(1, 4))
        v = (v / np.linalg.norm(v)).astype(np.float32)
        a = tf.Variable(b + d * v)
        for y in (1.0, 0.0):
            with tf.GradientTape(persistent=True) as tape:
                dist = losses.euclidean_distance(a, tf.constant(b))
                slide = losses.contrastive_loss(tf.constant([y]), dist, margin)
                squared = (y * 0.5 * tf.square(dist)
                           + (1 - y) * 0.5 * tf.square(tf.nn.relu(margin - dist)))
            g_slide = tape.gradient(slide, a).numpy()[0]
            g_squared = tape.gradient(squared, a).numpy()[0]
            kind = "matching" if y == 1 else "non_matching"
            out[f"slide_{kind}"].append(float(np.linalg.norm(g_slide)))
            out[f"squared_{kind}"].append(float(np.linalg.norm(g_squared)))
            if y == 0:
                norm = np.linalg.norm(g_slide)
                out["cosine_non_matching"].append(
                    float(g_slide @ v[0] / norm) if norm > 0 else 0.0)
    print(f"margin C = {margin}: norm of dL/da")
    print(f"{'distance':>9s} {'slide, y=1':>11s} {'slide, y=0':>11s} {'squared, y=1':>13s} "
          f"{'squared, y=0':>13s}")
    for k, d in enumerate(distances):
        print(f"{d:9.2f} {out['slide_matching'][k]:11.3f} {out['slide_non_matching'][k]:11.3f} "
              f"{out['squared_matching'][k]:13.3f} {out['squared_non_matching'][k]:13.3f}")
    return out


def solution_2(seed: int = 0, steps: int = 250) -> dict:
    """Exercise 2: what keeps the embedding from collapsing or exploding?

    **Exercise.** Train the notebook's digit Siamese network (2-D descriptor) three times for
    the same number of steps: with the contrastive loss (``C = 1``), on matching pairs only
    (no negative term), and with the margin removed (``C = 10^4``, so that
    every non-matching pair is pushed apart with a constant force). Measure the median test
    distances of matching and non-matching pairs, the spread of the embedding (mean standard
    deviation of the descriptor coordinates), the ROC AUC of the test pairs and 1-NN accuracy.

    **Method.** ``data.load_digits`` and ``make_class_pairs``, ``siamese.digit_branch`` and
    ``siamese_network`` as in the notebook, ``losses.ContrastiveLoss``, Adam 1e-3, batches of
    128 pairs; every run starts from the same initial weights (``seed``).

    **Expected outcome** (``steps = 250``, seeds 0, 1, 2). Matching pairs only: the embedding
    collapses to a point (spread 0.0002-0.0006 against 0.72-0.74 with the full loss), matching
    and non-matching pairs are equally close (ROC AUC 0.51-0.59 against 0.99) and 1-NN accuracy
    falls to 0.15-0.18 (chance: 0.10; full loss: 0.91-0.95). Without the margin: the embedding
    explodes (spread 4,500-4,900 after 250 steps: the loss has no minimum, every step pushes
    the non-matching pairs farther) and separates the classes worse than with the margin (1-NN
    accuracy 0.53-0.57, AUC 0.84-0.89). The negative term prevents the collapse; the margin
    keeps the solution finite and leaves the pairs that are already far enough alone, so the
    network spends its capacity on the ones that are still too close.

    Returns:
        ``{run name: {"median_matching", "median_non_matching", "spread", "auc",
        "nn_accuracy"}}`` for ``"contrastive"``, ``"matching_only"``, ``"no_margin"``.
    """
    import keras

    from bestiary_keras import runtime
    from bestiary_keras.batching import GatheredBatches
    from bestiary_keras.metric_learning import data, evaluation, losses, siamese

    x_train, y_train, x_test, y_test = data.load_digits("sklearn", seed=seed)
    first, second, same = data.make_class_pairs(y_train, steps * 128,
                                                 np.random.default_rng(seed))
    test_a, test_b, test_same = data.make_class_pairs(y_test, 2000,
                                                      np.random.default_rng(seed + 1))
    only_matching = data.make_class_pairs(y_train, steps * 128, np.random.default_rng(seed),
                                          positive_fraction=1.0)
    runs = {
        "contrastive": (1.0, (first, second, same)),
        "matching_only": (1.0, only_matching),
        "no_margin": (1e4, (first, second, same)),
    }
    out = {}
    for name, (margin, (a, b, labels)) in runs.items():
        runtime.seed_everything(seed)  # the same initial weights for every run
        branch = siamese.digit_branch(x_train.shape[1:], embedding_dim=2, filters=(16, 32),
                                      hidden_units=64)
        model = siamese.siamese_network(branch)
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss=losses.ContrastiveLoss(margin=margin))
        model.fit(GatheredBatches([(x_train, a), (x_train, b)], labels, batch_size=128).dataset(),
                  epochs=1, shuffle=False, verbose=0)
        emb_train, emb_test = siamese.embed(branch, x_train), siamese.embed(branch, x_test)
        d = np.linalg.norm(emb_test[test_a] - emb_test[test_b], axis=1)
        out[name] = {
            "median_matching": float(np.median(d[test_same == 1])),
            "median_non_matching": float(np.median(d[test_same == 0])),
            "spread": float(emb_test.std(axis=0).mean()),
            "auc": evaluation.roc_auc(test_same, d),
            "nn_accuracy": evaluation.nearest_neighbor_accuracy(emb_test, y_test, emb_train,
                                                                y_train),
        }
    print(f"{steps} steps of 128 pairs, seed {seed}")
    print(f"{'run':14s} {'median d, same':>15s} {'median d, diff':>15s} {'spread':>10s} "
          f"{'ROC AUC':>8s} {'1-NN acc.':>10s}")
    for name, r in out.items():
        print(f"{name:14s} {r['median_matching']:15.4g} {r['median_non_matching']:15.4g} "
              f"{r['spread']:10.4g} {r['auc']:8.3f} {r['nn_accuracy']:10.3f}")
    return out


MATCHING_DISTANCES = (0.10, 0.15, 0.20, 0.22, 0.30, 0.35, 0.41, 0.50, 0.62, 0.95)
"""Exercise 3's matching pairs (one outlier, 0.95)."""

NON_MATCHING_DISTANCES = (0.40, 0.55, 0.70, 0.80, 0.90, 1.00, 1.10, 1.20, 1.30, 1.50)
"""Exercise 3's non-matching pairs."""


def solution_3(matching=MATCHING_DISTANCES, non_matching=NON_MATCHING_DISTANCES) -> dict:
    """Exercise 3: FPR95 by hand.

    **Exercise.** Ten matching pairs have descriptor distances ``MATCHING_DISTANCES`` and ten
    non-matching pairs ``NON_MATCHING_DISTANCES``. Compute FPR95 (the false positive rate of
    the rule "match when the distance is at most t" at the smallest ``t`` that reaches 95%
    recall) by hand, then without the one outlying matching pair (0.95), and check both with
    ``evaluation.fpr_at_recall``. How many non-matching pairs does one step of FPR95 stand for
    in notebook 15's test set (567 non-matching pairs)?

    **Method.** Recall ``k / P`` must reach 0.95: ``k = ceil(0.95 P)`` matching pairs, so the
    threshold is the ``k``-th smallest matching distance; FPR95 is the share of non-matching
    distances at or below it.

    **Expected outcome.** With ``P = 10``, ``ceil(9.5) = 10``: every matching pair must be
    accepted, the threshold is the outlier 0.95, and 5 of the 10 non-matching pairs lie below
    it: FPR95 = 0.5. Without the outlier (``P = 9``, ``ceil(8.55) = 9``) the threshold is 0.62
    and FPR95 = 0.2. FPR95 is set by the hardest 5% of the matching pairs (here, one pair), and
    it moves in steps of one over the number of non-matching pairs (1 / 567 = 0.0018 in the
    notebook: an FPR95 of 0.004 there is two pairs).

    Returns:
        ``{"needed", "threshold", "by_hand", "package", "needed_without_outlier",
        "threshold_without_outlier", "by_hand_without_outlier", "package_without_outlier",
        "notebook_step"}``.
    """
    from bestiary_keras.metric_learning import evaluation

    def by_hand(pos, neg):
        needed = math.ceil(0.95 * len(pos) - 1e-9)
        threshold = sorted(pos)[needed - 1]
        return needed, threshold, sum(d <= threshold for d in neg) / len(neg)

    def package(pos, neg):
        labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        return evaluation.fpr_at_recall(labels, np.r_[pos, neg])

    pos, neg = list(matching), list(non_matching)
    without = [d for d in pos if d != max(pos)]
    needed, threshold, fpr = by_hand(pos, neg)
    needed_2, threshold_2, fpr_2 = by_hand(without, neg)
    out = {"needed": needed, "threshold": threshold, "by_hand": fpr,
           "package": package(pos, neg), "needed_without_outlier": needed_2,
           "threshold_without_outlier": threshold_2, "by_hand_without_outlier": fpr_2,
           "package_without_outlier": package(without, neg), "notebook_step": 1 / 567}
    print(f"{'':22s} {'pairs needed':>12s} {'threshold':>9s} {'FPR95 by hand':>13s} "
          f"{'fpr_at_recall':>13s}")
    print(f"{'all 10 matching pairs':22s} {needed:>12d} {threshold:9.2f} {fpr:13.3f} "
          f"{out['package']:13.3f}")
    print(f"{'without the outlier':22s} {needed_2:>12d} {threshold_2:9.2f} {fpr_2:13.3f} "
          f"{out['package_without_outlier']:13.3f}")
    print(f"one non-matching pair of notebook 15's test set moves FPR95 by "
          f"{out['notebook_step']:.4f}")
    return out
