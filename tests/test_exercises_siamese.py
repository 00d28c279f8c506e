"""Notebook 15's exercise solutions (``bestiary_keras.exercises.siamese``) and their stated
outcomes. The trained run's margins hold over seeds 0, 1, 2 (measured: contrastive spread
0.72-0.74, 1-NN 0.91-0.95; matching pairs only: spread <= 0.0007, AUC <= 0.59, 1-NN <= 0.18;
no margin: spread >= 4,500, 1-NN <= 0.57)."""

import pytest

from bestiary_keras.exercises import siamese


def test_solution_1_margin_gradient_closed_form():
    r = siamese.solution_1(seed=0)
    assert r["slide_matching"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert r["slide_non_matching"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-5)
    assert r["squared_matching"] == pytest.approx([0.3, 0.9, 1.5], abs=1e-5)
    assert r["squared_non_matching"] == pytest.approx([0.7, 0.1, 0.0], abs=1e-5)
    # inside the margin the gradient is -u: a descent step moves a straight away from b
    assert r["cosine_non_matching"] == pytest.approx([-1.0, -1.0, 0.0], abs=1e-5)


def test_solution_2_collapse_without_negatives_expansion_without_margin():
    r = siamese.solution_2(seed=0)
    full, collapsed, exploded = r["contrastive"], r["matching_only"], r["no_margin"]
    assert full["nn_accuracy"] > 0.85 and full["auc"] > 0.95
    assert 0.3 < full["spread"] < 3.0
    # matching pairs only: the embedding shrinks to a point and stops telling classes apart
    assert collapsed["spread"] < 0.01 * full["spread"]
    assert collapsed["auc"] < 0.7 and collapsed["nn_accuracy"] < 0.3
    # no margin: the non-matching pairs are pushed apart without end
    assert exploded["spread"] > 100 * full["spread"]
    assert exploded["nn_accuracy"] < full["nn_accuracy"] - 0.2
    assert exploded["auc"] < full["auc"]


def test_solution_3_fpr95_by_hand():
    r = siamese.solution_3()
    assert (r["needed"], r["threshold"], r["by_hand"]) == (10, 0.95, 0.5)
    assert (r["needed_without_outlier"], r["threshold_without_outlier"],
            r["by_hand_without_outlier"]) == (9, 0.62, 0.2)
    assert r["package"] == pytest.approx(r["by_hand"])
    assert r["package_without_outlier"] == pytest.approx(r["by_hand_without_outlier"])
