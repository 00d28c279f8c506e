"""Siamese networks (notebook 15): contrastive loss, weight sharing, pair data, pair metrics."""

import numpy as np
import pytest
import tensorflow as tf

import keras
from bestiary_keras.metric_learning import data, evaluation, losses, siamese


# --- the loss -------------------------------------------------------------------------------

def test_euclidean_distance_hand_values():
    a = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    b = np.array([[3.0, 4.0], [1.0, 1.0]], np.float32)
    d = np.asarray(losses.euclidean_distance(a, b))
    np.testing.assert_allclose(d, [5.0, 1e-6], rtol=1e-5)


def test_contrastive_loss_hand_values():
    # y = 1 (same): the distance itself; y = 0 (different): max(0, C - d), with C = 2.
    y = np.array([1, 1, 0, 0, 0], np.float32)
    d = np.array([0.5, 3.0, 0.5, 2.0, 3.0], np.float32)
    loss = np.asarray(losses.contrastive_loss(y, d, margin=2.0))
    np.testing.assert_allclose(loss, [0.5, 3.0, 1.5, 0.0, 0.0], atol=1e-6)


def test_contrastive_loss_class_averages_and_serialises():
    loss = losses.ContrastiveLoss(margin=2.0)
    value = float(loss(np.array([1.0, 0.0]), np.array([0.5, 0.5])))
    assert value == pytest.approx((0.5 + 1.5) / 2)
    assert losses.ContrastiveLoss.from_config(loss.get_config()).margin == 2.0


def test_contrastive_loss_label_convention_pulls_same_pairs_together():
    # The gradient with respect to the distance: +1 for a same pair (make it smaller),
    # -1 for a different pair inside the margin (make it larger).
    d = tf.Variable([1.0, 1.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.contrastive_loss(tf.constant([1.0, 0.0]), d, margin=2.0))
    np.testing.assert_allclose(tape.gradient(loss, d).numpy(), [1.0, -1.0])


def test_gradient_at_zero_distance_is_finite():
    a = tf.Variable([[1.0, 2.0, 3.0]])
    b = tf.constant([[1.0, 2.0, 3.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.contrastive_loss(tf.constant([0.0]),
                                                     losses.euclidean_distance(a, b), 1.0))
    grad = tape.gradient(loss, a).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad, 0.0)
    # An unguarded square root gives NaN there: what the guard is for.
    with tf.GradientTape() as tape:
        raw = tf.sqrt(tf.reduce_sum(tf.square(a - b), -1))
    assert np.isnan(tape.gradient(raw, a).numpy()).all()


def test_gradient_away_from_zero_is_the_unit_direction():
    a = tf.Variable([[3.0, 4.0]])
    with tf.GradientTape() as tape:
        d = losses.euclidean_distance(a, tf.zeros((1, 2)))
    np.testing.assert_allclose(tape.gradient(d, a).numpy(), [[0.6, 0.8]], rtol=1e-6)


def test_contrastive_loss_rejects_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        losses.contrastive_loss(np.ones(2), np.ones(2), margin=0.0)


# --- the networks ---------------------------------------------------------------------------

def test_siamese_network_shares_one_branch():
    keras.utils.set_random_seed(0)
    branch = siamese.digit_branch((8, 8, 1), embedding_dim=3, filters=(4, 8), hidden_units=8)
    model = siamese.siamese_network(branch)
    assert model.count_params() == branch.count_params()  # one set of weights
    x1 = np.random.default_rng(0).random((5, 8, 8, 1)).astype(np.float32)
    x2 = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    d12 = np.asarray(model.predict([x1, x2], verbose=0))
    d21 = np.asarray(model.predict([x2, x1], verbose=0))
    assert d12.shape == (5,)
    np.testing.assert_allclose(d12, d21, rtol=1e-5)
    expected = np.linalg.norm(siamese.embed(branch, x1) - siamese.embed(branch, x2), axis=1)
    np.testing.assert_allclose(d12, expected, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(model.predict([x1, x1], verbose=0)), 1e-6, atol=1e-6)


def test_digit_branch_for_mnist_size_and_bad_arguments():
    branch = siamese.digit_branch((28, 28, 1), embedding_dim=2, filters=(4, 8), hidden_units=8)
    assert branch.output_shape == (None, 2)
    with pytest.raises(ValueError, match="embedding_dim"):
        siamese.digit_branch(embedding_dim=0)
    with pytest.raises(ValueError, match="input_shape"):
        siamese.digit_branch(input_shape=(8, 8))


def test_l2_pooling_hand_case():
    x = np.array([1.0, 2.0, 3.0, 4.0, 0, 0, 0, 0], np.float32).reshape(1, 2, 4, 1)
    # windows 2x2: {1, 2, 0, 0} and {3, 4, 0, 0}
    out = np.asarray(siamese.L2Pooling2D(2, epsilon=0.0)(x)).reshape(-1)
    np.testing.assert_allclose(out, [np.sqrt(5 / 4), np.sqrt(25 / 4)], rtol=1e-6)


def test_patch_descriptor_shapes_and_errors():
    net = siamese.patch_descriptor((32, 32, 1), 16, filters=(4, 8))
    assert net.output_shape == (None, 16)
    out = np.asarray(net(np.zeros((2, 32, 32, 1), np.float32)))
    assert out.shape == (2, 16) and np.all(np.abs(out) <= 1)
    with pytest.raises(ValueError, match=r"input_shape=\(30, 30, 1\).*multiple of 4.*try 28 or 32"):
        siamese.patch_descriptor((30, 30, 1))
    with pytest.raises(ValueError, match="square patch"):
        siamese.patch_descriptor((32, 16, 1))


def test_a_few_steps_reduce_the_loss():
    keras.utils.set_random_seed(0)
    x_train, y_train, _, _ = data.load_digits(seed=0)
    rng = np.random.default_rng(0)
    first, second, same = data.make_class_pairs(y_train, 512, rng)
    branch = siamese.digit_branch(embedding_dim=2, filters=(8, 8), hidden_units=16)
    model = siamese.siamese_network(branch)
    model.compile(keras.optimizers.Adam(3e-3), loss=losses.ContrastiveLoss(1.0))
    before = model.evaluate([x_train[first], x_train[second]], same, verbose=0)
    model.fit([x_train[first], x_train[second]], same, batch_size=64, epochs=3, verbose=0)
    after = model.evaluate([x_train[first], x_train[second]], same, verbose=0)
    assert after < 0.8 * before


# --- data -----------------------------------------------------------------------------------

def test_load_digits_split():
    x_train, y_train, x_test, y_test = data.load_digits(seed=0, test_fraction=0.25)
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == round(0.25 * 1797)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
    with pytest.raises(ValueError, match="source"):
        data.load_digits("cifar")


def test_make_class_pairs_labels_are_right():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    first, second, same = data.make_class_pairs(labels, 400, np.random.default_rng(0))
    np.testing.assert_array_equal(same == 1, labels[first] == labels[second])
    assert np.all(first[same == 1] != second[same == 1])
    assert 0.4 < same.mean() < 0.6
    with pytest.raises(ValueError, match="two classes"):
        data.make_class_pairs(np.zeros(5), 10, np.random.default_rng(0))


def test_mnist_path_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        x_train, y_train, x_test, y_test = data.load_digits("mnist", max_train=10, max_test=5,
                                                            data_dir=tmp_path)
    assert x_train.shape == (10, 28, 28, 1) and x_test.shape == (5, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0 <= x_train.min() and x_train.max() <= 1
    assert y_train.dtype == np.int32 and set(np.unique(y_train)) <= set(range(10))
    branch = siamese.digit_branch((28, 28, 1), embedding_dim=2, filters=(4, 4), hidden_units=8)
    assert siamese.embed(branch, x_test).shape == (5, 2)


def test_mnist_path_never_downloads(tmp_path):
    from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError

    with pytest.raises(DatasetNotAvailableError, match="tfds build mnist"):
        data.load_digits("mnist", data_dir=tmp_path)


# --- pair metrics ---------------------------------------------------------------------------

def test_roc_curve_hand_case():
    # distances of 2 matching (1) and 2 non-matching (0) pairs
    d = [0.1, 0.4, 0.35, 0.8]
    y = [1, 0, 1, 0]
    fpr, tpr, thresholds = evaluation.roc_curve(y, d)
    np.testing.assert_allclose(tpr, [0, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.5, 1.0])
    np.testing.assert_allclose(thresholds[1:], [0.1, 0.35, 0.4, 0.8])
    assert evaluation.roc_auc(y, d) == pytest.approx(1.0)
    assert evaluation.fpr_at_recall(y, d, 0.95) == 0.0


def test_fpr_at_recall_and_best_threshold():
    d = [0.1, 0.5, 0.3, 0.2, 0.4, 0.6]
    y = [1, 1, 0, 1, 0, 0]
    # 95% recall needs the threshold 0.5 (all three matches): 2 of 3 non-matches below it.
    assert evaluation.fpr_at_recall(y, d) == pytest.approx(2 / 3)
    threshold, accuracy = evaluation.best_threshold(y, d)
    assert accuracy == pytest.approx(5 / 6)  # threshold between 0.2 and 0.3
    assert 0.2 < threshold < 0.3
    assert evaluation.verification_accuracy(y, d, threshold) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="both"):
        evaluation.roc_curve([1, 1], [0.1, 0.2])


def test_nearest_neighbor_accuracy_hand_case():
    gallery = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    queries = np.array([[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]])
    np.testing.assert_array_equal(evaluation.nearest_neighbors(queries, gallery), [0, 1, 2, 1])
    acc = evaluation.nearest_neighbor_accuracy(queries, [0, 1, 2, 0], gallery, [0, 1, 2])
    assert acc == pytest.approx(0.75)
    with pytest.raises(ValueError, match="gallery"):
        evaluation.nearest_neighbors(queries, np.zeros((0, 2)))


def test_hardest_negative_contrastive_loss_hand_case():
    # three matching pairs in 1-D: a = (0, 1, 5), b = (0.5, 1, 9); margin 2
    a = np.array([[0.0], [1.0], [5.0]], np.float32)
    b = np.array([[0.5], [1.0], [9.0]], np.float32)
    pairs = np.stack([a, b], axis=1)  # (3, 2, 1)
    loss = np.asarray(losses.hardest_negative_contrastive_loss(np.array([0, 1, 2]), pairs, 2.0))
    # pair 0: d+ = 0.5; negatives |a0 - b1| = 1, |a0 - b2| = 9, |a1 - b0| = 0.5, |a2 - b0| = 4.5
    #   -> hardest 0.5 -> 0.5 + (2 - 0.5) = 2.0
    # pair 1: d+ = 0 (1e-6); |a1 - b0| = 0.5 -> 1e-6 + 1.5
    # pair 2: d+ = 4; |a2 - b0| = 4.5, |a2 - b1| = 4, |a0 - b2| = 9, |a1 - b2| = 8 -> 4 + 0
    np.testing.assert_allclose(loss, [2.0, 1.5, 4.0], atol=1e-5)
    # pairs 0 and 1 of the same point are not each other's negatives
    loss = np.asarray(losses.hardest_negative_contrastive_loss(np.array([7, 7, 2]), pairs, 2.0))
    # pair 0: remaining negatives 9 and 4.5 -> 0.5 + 0; pair 1: 8 and 4 -> 0 + 0
    np.testing.assert_allclose(loss, [0.5, 0.0, 4.0], atol=1e-5)


def test_descriptor_pair_network_stacks_shared_descriptors():
    branch = siamese.patch_descriptor((16, 16, 1), 8, filters=(4, 4))
    model = siamese.descriptor_pair_network(branch)
    x1 = np.random.default_rng(0).normal(size=(3, 16, 16, 1)).astype(np.float32)
    x2 = np.random.default_rng(1).normal(size=(3, 16, 16, 1)).astype(np.float32)
    out = np.asarray(model([x1, x2]))
    assert out.shape == (3, 2, 8) and model.count_params() == branch.count_params()
    np.testing.assert_allclose(out[:, 1], siamese.embed(branch, x2), rtol=1e-5, atol=1e-6)
    model.compile("adam", loss=losses.HardestNegativeContrastiveLoss(2.0))
    assert np.isfinite(model.evaluate([x1, x2], np.arange(3), verbose=0))


def test_mined_contrastive_loss_hand_case():
    # Simo-Serra et al.'s mining on a = (0, 1, 5), b = (0.5, 1, 9), margin 2 (as above)
    a = np.array([[0.0], [1.0], [5.0]], np.float32)
    b = np.array([[0.5], [1.0], [9.0]], np.float32)
    pairs = np.stack([a, b], axis=1)
    # positives d = 0.5, 0, 4; r_p = 2 keeps the ceil(3 / 2) = 2 hardest: (4 + 0.5) / 2 = 2.25
    # negatives, r_n = 2: shift 1 pairs a_i with b_(i-1): |0 - 9|, |1 - 0.5|, |5 - 1| -> costs
    # 0, 1.5, 0; shift 2: |0 - 1|, |1 - 9|, |5 - 0.5| -> 1, 0, 0; the 3 hardest of the 6:
    # (1.5 + 1 + 0) / 3
    loss = np.asarray(losses.mined_contrastive_loss(np.array([0, 1, 2]), pairs, 2.0,
                                                    positive_ratio=2, negative_ratio=2))
    np.testing.assert_allclose(loss, [2.25 + 2.5 / 3] * 3, atol=1e-5)
    # no mining (r_p = r_n = 1): every positive, one shifted negative per row: 1.5 + 1.5 / 3
    loss = losses.mined_contrastive_loss(np.array([0, 1, 2]), pairs, 2.0, positive_ratio=1,
                                         negative_ratio=1)
    np.testing.assert_allclose(np.asarray(loss), [2.0] * 3, atol=1e-5)
    # pairs 0 and 1 show the same point: the candidates (0, 1) and (1, 0) are skipped, and the
    # valid ones all cost 0
    loss = losses.mined_contrastive_loss(np.array([7, 7, 2]), pairs, 2.0, negative_ratio=2)
    np.testing.assert_allclose(np.asarray(loss), [1.5] * 3, atol=1e-5)


def test_mined_contrastive_loss_trains_and_rejects_bad_ratios():
    with pytest.raises(ValueError, match="negative_ratio"):
        losses.mined_contrastive_loss(np.zeros(2), np.zeros((2, 2, 1), np.float32),
                                      negative_ratio=0)
    with pytest.raises(ValueError, match="positive_ratio"):
        losses.MinedContrastiveLoss(positive_ratio=1.5)
    loss = losses.MinedContrastiveLoss(2.0, positive_ratio=2, negative_ratio=4)
    assert losses.MinedContrastiveLoss.from_config(loss.get_config()).negative_ratio == 4
    branch = siamese.patch_descriptor((16, 16, 1), 8, filters=(4, 4))
    model = siamese.descriptor_pair_network(branch)
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype(np.float32)
    model.compile("adam", loss=loss)
    assert np.isfinite(model.evaluate([x, x + 0.1], np.arange(8), verbose=0))
