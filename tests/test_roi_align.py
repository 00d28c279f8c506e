"""RoIAlign against hand-computed values and a loop-by-loop NumPy reference."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bestiary_keras.detection.roi_pooling import RoIMaxPooling  # noqa: E402
from bestiary_keras.detection.roi_align import RoIAlign, roi_align_reference  # noqa: E402


def ramps(size=8):
    """A (1, size, size, 2) map: channel 0 is x + 1, channel 1 is y + 1 (cell centres)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([x + 1.0, y + 1.0], -1)[None]


def align(rois, pool=2, scale=1.0, sampling_ratio=2, aligned=True, features=None):
    features = ramps() if features is None else features
    layer = RoIAlign(pool, scale, sampling_ratio, aligned)
    return np.asarray(layer(features, np.asarray(rois, np.float32)[None]))[0]


def test_half_pixel_offset_on_a_ramp():
    # RoI x in [2, 6) px at stride 1: continuous coordinates 1.5 .. 5.5 (cell i centred at i);
    # two bins of two points each: (2.0, 3.0) -> 2.5 and (4.0, 5.0) -> 4.5, plus one (x + 1)
    out = align([[2, 1, 6, 5]])
    np.testing.assert_allclose(out[0, :, :, 0], [[3.5, 5.5], [3.5, 5.5]], atol=1e-5)
    np.testing.assert_allclose(out[0, :, :, 1], [[2.5, 2.5], [4.5, 4.5]], atol=1e-5)
    # the legacy layer reads half a cell too far right and down
    legacy = align([[2, 1, 6, 5]], aligned=False)
    np.testing.assert_allclose(legacy[0, :, :, 0], [[4.0, 6.0], [4.0, 6.0]], atol=1e-5)
    # at stride 2 the same RoI covers cells 0.5 .. 2.5: bins at 1.0 and 2.0 (+1)
    out = align([[2, 2, 6, 6]], scale=0.5)
    np.testing.assert_allclose(out[0, :, :, 0], [[2.0, 3.0], [2.0, 3.0]], atol=1e-5)


def test_translation_is_exact_with_align_and_quantised_with_max_pooling():
    features = ramps(16)
    shifts = np.arange(0, 8, dtype=np.float32)  # pixels, at stride 4: quarters of a cell
    rois = np.stack([[16 + s, 16, 32 + s, 32] for s in shifts]).astype(np.float32)
    aligned = np.asarray(RoIAlign(2, 0.25)(features, rois[None]))[0, :, 0, 0, 0]
    np.testing.assert_allclose(np.diff(aligned), 0.25, atol=1e-5)  # moves with the RoI
    pooled = np.asarray(RoIMaxPooling(2, 0.25)(features, rois[None]))[0, :, 0, 0, 0]
    assert len(np.unique(pooled)) <= 3  # RoI pooling moves in whole cells only


def test_rois_at_the_border_and_outside():
    # x: -4.5 .. 1.5 with one bin and two points: -3 (more than one cell out: reads 0) and 0
    out = align([[-4, -4, 2, 2]], pool=1)
    np.testing.assert_allclose(out[0, 0, 0], [0.25, 0.25], atol=1e-6)  # 1 of 4 points reads 1
    # a point within one cell outside reads the border cell: x = -0.5 -> cell 0
    out = align([[0, 0, 0, 0]], pool=1, sampling_ratio=1)
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0], atol=1e-6)
    # beyond the far border the same: cell 7 up to x = 8, zero beyond
    out = align([[8.4, 8.4, 8.6, 8.6]], pool=1, sampling_ratio=1)
    np.testing.assert_allclose(out[0, 0, 0], [8.0, 8.0], atol=1e-6)
    assert np.all(align([[20, 20, 30, 30]]) == 0)  # wholly outside the map


def test_rois_smaller_than_a_bin_and_zero_size():
    # x: 1.5 .. 2.0, bins of 0.25: points 1.5625, 1.6875 -> 1.625; 1.8125, 1.9375 -> 1.875
    out = align([[2, 2, 2.5, 2.5]])
    np.testing.assert_allclose(out[0, 0, :, 0], [2.625, 2.875], atol=1e-5)
    # a zero-size RoI is the bilinear value at its point, in every bin
    out = align([[4, 3, 4, 3]], pool=3)
    np.testing.assert_allclose(out[0, :, :, 0], 4.5, atol=1e-5)
    np.testing.assert_allclose(out[0, :, :, 1], 3.5, atol=1e-5)
    # the legacy layer stretches it to one cell
    legacy = align([[4, 3, 4, 3]], pool=1, aligned=False)
    np.testing.assert_allclose(legacy[0, 0, 0], [5.5, 4.5], atol=1e-5)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_matches_the_reference_on_random_maps(aligned, sampling_ratio):
    rng = np.random.default_rng(sampling_ratio)
    features = rng.normal(size=(2, 8, 6, 3)).astype(np.float32)
    rois = np.concatenate([rng.uniform(-10, 60, (2, 6, 2)), rng.uniform(0, 30, (2, 6, 2))], -1)
    rois[..., 2:] += rois[..., :2]
    rois[:, 0] = [0, 0, 48, 64]  # the whole map (6 x 8 cells at stride 8)
    rois[:, 1] = [5, 5, 5, 5]  # zero size
    rois = rois.astype(np.float32)
    layer = RoIAlign(5, 1 / 8, sampling_ratio, aligned)
    out = np.asarray(layer(features, rois))
    assert out.shape == (2, 6, 5, 5, 3)
    for b in range(2):
        ref = roi_align_reference(features[b], rois[b], 5, 1 / 8, sampling_ratio, aligned)
        np.testing.assert_allclose(out[b], ref, atol=1e-5)


def test_gradient_reaches_the_features_with_unit_total_weight():
    import tensorflow as tf

    features = tf.Variable(np.zeros((1, 8, 8, 1), np.float32))
    layer = RoIAlign(3, 1.0)
    with tf.GradientTape() as tape:
        out = layer(features, np.array([[[1.3, 2.2, 6.1, 7.0]]], np.float32))
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, features).numpy()
    np.testing.assert_allclose(grad.sum(), 9.0, rtol=1e-5)  # each of 3 x 3 bins averages
    assert (grad >= 0).all() and (grad > 0).sum() > 9


def test_save_and_load(tmp_path):
    features = keras.Input((8, 8, 4))
    rois = keras.Input((3, 4))
    out = RoIAlign(4, 1 / 8, 2, name="align")(features, rois)
    model = keras.Model([features, rois], out)
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(2, 8, 8, 4)).astype(np.float32),
         rng.uniform(0, 64, (2, 3, 4)).astype(np.float32)]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("align"), RoIAlign)
    assert loaded.get_layer("align").get_config()["sampling_ratio"] == 2
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(7, 1 / 8, sampling_ratio=0)
    with pytest.raises(ValueError, match="pool_size"):
        RoIAlign(0)
    with pytest.raises(ValueError, match="spatial_scale"):
        RoIAlign(7, -1.0)
