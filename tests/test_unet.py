"""U-Net (notebook 08): architecture, valid sizes, overlap-tile, weight map, elastic deformation,
instance scores."""

import importlib
import math

import keras
import numpy as np
import pytest

from bestiary_keras.batching import step_indices
from bestiary_keras.segmentation import elastic, losses, metrics, tiling
from bestiary_keras.segmentation.unet import (
    count_conv_layers,
    crop_shape,
    get_crop_shape,
    nearest_valid_input_sizes,
    unet,
    unet_upsampling,
    unet_output_size,
    valid_input_sizes,
)


# ``bestiary_keras.segmentation.unet`` is the builder function (re-exported by the package).
unet_module = importlib.import_module("bestiary_keras.segmentation.unet")


def _conv_params(kernel, channels_in, channels_out):
    return kernel * kernel * channels_in * channels_out + channels_out


def test_paper_architecture_572_to_388():
    model = unet()  # the paper's defaults
    assert model.input_shape == (None, 572, 572, 1)
    assert model.output_shape == (None, 388, 388, 2)
    # Figure 1 of the paper, layer by layer.
    widths = [64, 128, 256, 512, 1024]
    expected = 0
    channels = 1
    for width in widths:  # contracting path and bottom: two 3x3 convolutions each
        expected += _conv_params(3, channels, width) + _conv_params(3, width, width)
        channels = width
    for width in reversed(widths[:-1]):  # up-conv 2x2, then two 3x3 on the concatenation
        expected += _conv_params(2, 2 * width, width)
        expected += _conv_params(3, 2 * width, width) + _conv_params(3, width, width)
    expected += _conv_params(1, 64, 2)
    assert expected == 31_030_658
    assert model.count_params() == expected
    # "In total the network has 23 convolutional layers."
    assert count_conv_layers(model) == 23
    crops = [layer for layer in model.layers if isinstance(layer, keras.layers.Cropping2D)]
    assert [layer.cropping for layer in crops] == [((4, 4), (4, 4)), ((16, 16), (16, 16)),
                                                   ((40, 40), (40, 40)), ((88, 88), (88, 88))]
    # The 568 x 568 map of the first level is cropped to 392 x 392, as in the figure.
    assert model.get_layer("up1_crop").output.shape[1:3] == (392, 392)


def test_small_unet_sizes_and_parameters():
    model = unet((92, 92, 1), 2, depth=2, filters=16)
    assert model.output_shape == (None, 52, 52, 2)
    assert count_conv_layers(model) == 13
    assert model.count_params() == 116_770
    out = model(np.zeros((2, 92, 92, 1), np.float32))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).sum(-1), 1.0, rtol=1e-5)


def test_same_padding_variant_keeps_the_size():
    model = unet((90, 90, 3), 4, depth=2, filters=8, padding="same")
    assert model.output_shape == (None, 90, 90, 4)
    names = [layer.name for layer in model.layers]
    assert "pad_to_input" in names  # 90 -> 45 -> 22 -> 44 -> 88, padded back to 90
    assert model.get_layer("up2_crop").cropping == ((0, 1), (0, 1))
    even = unet((64, 64, 1), 2, depth=3, filters=4, padding="same")
    assert even.output_shape == (None, 64, 64, 2)
    assert "pad_to_input" not in [layer.name for layer in even.layers]


def test_valid_sizes():
    assert unet_output_size(572, 4) == 388
    assert unet_output_size(570, 4) is None
    assert unet_output_size(92, 2) == 52
    assert valid_input_sizes(4, max_size=600)[:3] == [188, 204, 220]
    assert 572 in valid_input_sizes(4, max_size=600)
    assert all(unet_output_size(s, 2) is not None for s in valid_input_sizes(2, max_size=200))
    assert nearest_valid_input_sizes(570, 4) == (556, 572)
    assert nearest_valid_input_sizes(572, 4) == (572, 572)
    assert nearest_valid_input_sizes(10, 2) == (None, 44)


def test_untileable_input_is_refused_with_the_nearest_sizes():
    with pytest.raises(ValueError, match="556 or 572"):
        unet((570, 572, 1))
    with pytest.raises(ValueError, match="padding"):
        unet((572, 572, 1), padding="full")
    with pytest.raises(ValueError, match="fixed height"):
        unet((None, None, 1))


def test_crop_shape_helper():
    assert crop_shape((None, 64, 64, 8), (None, 56, 55, 8)) == ((4, 4), (4, 5))
    assert crop_shape((10, 10), (10, 10)) == ((0, 0), (0, 0))
    with pytest.raises(ValueError, match="larger"):
        crop_shape((4, 4), (6, 4))


def test_slides_upsampling_variant_crop_arithmetic_by_hand():
    # The slides' snippet at its 572 x 572 input, depth 4, 32 filters. Same padding keeps the
    # sizes; each pooling floors: 572 -> 286 -> 143 -> 71 -> 35. Up-sampling doubles:
    # 35 -> 70 (skip 71: crop 1 = (0, 1)), 70 -> 140 (skip 143: crop 3 = (1, 2)),
    # 140 -> 280 (skip 286: crop 6 = (3, 3)), 280 -> 560 (skip 572: crop 12 = (6, 6));
    # the 560-pixel map is zero-padded by (6, 6) back to 572.
    model = unet_upsampling((572, 572, 1), 2, output_activation=None)
    assert model.output_shape == (None, 572, 572, 2)
    crops = [model.get_layer(f"up{level}_crop").cropping for level in (4, 3, 2, 1)]
    assert crops == [((0, 1), (0, 1)), ((1, 2), (1, 2)), ((3, 3), (3, 3)), ((6, 6), (6, 6))]
    assert model.get_layer("pad_to_input").padding == ((6, 6), (6, 6))
    assert [model.get_layer(f"up{level}_upsample").output.shape[1] for level in (4, 3, 2, 1)] == [
        70, 140, 280, 560]
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in model.layers)
    assert model.layers[-1].name == "classifier"  # the snippet ends on logits
    # Height and width separately: 102 x 86 -> pools 51 x 43, 25 x 21; up 50 x 42 (skip
    # 51 x 43: crop (0, 1) each), up 100 x 84 (skip 102 x 86: crop (1, 1)), padded (1, 1).
    small = unet_upsampling((102, 86, 1), 3, depth=2, filters=4)
    assert small.output_shape == (None, 102, 86, 3)
    assert small.get_layer("up2_crop").cropping == ((0, 1), (0, 1))
    assert small.get_layer("up1_crop").cropping == ((1, 1), (1, 1))
    assert small.get_layer("pad_to_input").padding == ((1, 1), (1, 1))
    out = keras.ops.convert_to_numpy(small(np.zeros((1, 102, 86, 1), np.float32)))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_slides_variant_parameters_by_hand():
    # UpSampling2D has no weights and keeps the channels: the first convolution after each
    # concatenation sees 64 + 32 and 32 + 16 channels (ours sees 32 + 32 and 16 + 16).
    model = unet_upsampling((92, 92, 1), 2, depth=2, filters=16)
    assert model.output_shape == (None, 92, 92, 2)
    expected = (_conv_params(3, 1, 16) + _conv_params(3, 16, 16)
                + _conv_params(3, 16, 32) + _conv_params(3, 32, 32)
                + _conv_params(3, 32, 64) + _conv_params(3, 64, 64)
                + _conv_params(3, 64 + 32, 32) + _conv_params(3, 32, 32)
                + _conv_params(3, 32 + 16, 16) + _conv_params(3, 16, 16)
                + _conv_params(1, 16, 2))
    assert expected == 118_002
    assert model.count_params() == expected
    assert "pad_to_input" not in [layer.name for layer in model.layers]  # 92 = 4 x 23
    assert model.get_layer("up2_concat").output.shape[-1] == 96


def test_get_crop_shape_on_tensors_and_errors():
    target, refer = keras.Input((143, 143, 8)), keras.Input((140, 140, 8))
    assert get_crop_shape(target, refer) == ((1, 2), (1, 2))
    with pytest.raises(ValueError, match="larger"):
        get_crop_shape(refer, target)
    with pytest.raises(ValueError, match="2\\*\\*depth = 16"):
        unet_upsampling((12, 572, 1))
    with pytest.raises(ValueError, match="num_classes"):
        unet_upsampling((64, 64, 1), 0)


@pytest.mark.parametrize("height, width", [(104, 104), (100, 120), (37, 50)])
def test_overlap_tile_equals_whole_image_prediction(height, width):
    keras.utils.set_random_seed(0)
    model = unet((92, 92, 1), 2, depth=2, filters=4)
    image = np.random.default_rng(1).random((height, width)).astype(np.float32)
    tiled = tiling.predict_tiled(model, image, batch_size=3)
    assert tiled.shape == (height, width, 2)
    # One big tile over the whole mirrored image: the same weights at a larger valid size.
    big_h = nearest_valid_input_sizes(height + 40, 2)[1]
    big_w = nearest_valid_input_sizes(width + 40, 2)[1]
    big = unet((big_h, big_w, 1), 2, depth=2, filters=4)
    big.set_weights(model.get_weights())
    padded = np.pad(image, ((20, big_h - height - 20), (20, big_w - width - 20)), mode="reflect")
    whole = keras.ops.convert_to_numpy(big(padded[None, ..., None]))[0, :height, :width]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_tile_layout_steps_by_whole_pooling_cells():
    layout = tiling.tile_layout((500, 700), 572, 388, 4)
    assert layout.margin == 92
    assert layout.stride == 384  # 388 is not a multiple of 16: tiles overlap by 4 pixels
    assert [y for y, x in layout.offsets if x == 0] == [0, 384]
    assert [x for y, x in layout.offsets if y == 0] == [0, 384]
    assert layout.padding == ((92, 92 + 384 + 388 - 500), (92, 92 + 384 + 388 - 700))
    with pytest.raises(ValueError, match="even"):
        tiling.tile_layout((10, 10), 93, 52, 2)


def test_weight_map_on_two_touching_cells():
    # Two 3-pixel-wide cells separated by a one-pixel gap (column 5).
    instances = np.zeros((5, 11), np.int32)
    instances[:, 2:5] = 1
    instances[:, 6:9] = 2
    term = losses.border_weight_term(instances, w0=10.0, sigma=5.0)
    # Gap pixel: d1 = d2 = 1 -> 10 exp(-(1 + 1)^2 / (2 * 25)).
    np.testing.assert_allclose(term[:, 5], 10 * math.exp(-4 / 50), rtol=1e-6)
    # Column 0: 2 pixels to cell 1, 6 pixels to cell 2.
    np.testing.assert_allclose(term[:, 0], 10 * math.exp(-64 / 50), rtol=1e-6)
    # Column 10: 2 pixels to cell 2, 6 pixels to cell 1.
    np.testing.assert_allclose(term[:, 10], 10 * math.exp(-64 / 50), rtol=1e-6)
    assert np.all(term[instances > 0] == 0)
    # w_c: 30 cell pixels, 25 background pixels of 55 -> 55 / (2 * 30) and 55 / (2 * 25).
    full = losses.unet_weight_map(instances, w0=10.0, sigma=5.0)
    np.testing.assert_allclose(full[0, 2], 55 / 60, rtol=1e-6)
    np.testing.assert_allclose(full[0, 5], 55 / 50 + 10 * math.exp(-4 / 50), rtol=1e-6)
    # A lone cell gets no border term; the margin approximation changes nothing that matters.
    assert losses.border_weight_term(instances * (instances == 1)).max() == 0
    approximate = losses.border_weight_term(instances, sigma=0.5)
    exact = losses.border_weight_term(instances, sigma=0.5, margin=100)
    np.testing.assert_allclose(approximate, exact, atol=1e-6)


def test_class_balance_map():
    labels = np.array([[0, 0, 0, 1]])
    np.testing.assert_allclose(losses.class_balance_map(labels), [[2 / 3, 2 / 3, 2 / 3, 2.0]])
    np.testing.assert_allclose(losses.class_balance_map(labels, 2, [0.5, 0.5]), [[1, 1, 1, 1]])
    with pytest.raises(ValueError, match="frequencies"):
        losses.class_balance_map(labels, 2, [0.2, 0.3, 0.5])


def test_weighted_crossentropy_matches_keras_sample_weight():
    labels = np.array([[[0, 1], [1, 0]]])
    probabilities = np.array([[[[0.9, 0.1], [0.2, 0.8]], [[0.5, 0.5], [0.7, 0.3]]]], np.float32)
    weights = np.array([[[1.0, 2.0], [10.0, 0.5]]], np.float32)
    ours = float(losses.weighted_pixel_crossentropy(labels, probabilities, weights))
    by_hand = (-math.log(0.9) - 2 * math.log(0.8) - 10 * math.log(0.5) - 0.5 * math.log(0.7)) / 4
    assert ours == pytest.approx(by_hand, rel=1e-5)
    keras_loss = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities,
                                                              sample_weight=weights)
    assert float(keras_loss) == pytest.approx(by_hand, rel=1e-5)


def test_elastic_deformation_moves_image_and_labels_together():
    field = elastic.random_displacement((40, 50), grid=3, sigma=0.0, rng=0)
    assert field.shape == (2, 40, 50) and np.all(field == 0)
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    np.testing.assert_allclose(elastic.warp(image, field, order=3), image, atol=1e-5)
    # A constant displacement dx = +2 shifts the content two pixels to the left.
    shift = np.zeros((2, 40, 50), np.float32)
    shift[1] = 2.0
    np.testing.assert_allclose(elastic.warp(image, shift, order=1)[:, :-2], image[:, 2:],
                               atol=1e-6)
    labels = np.zeros((40, 50), np.int32)
    labels[10:30, 10:20] = 3
    labels[10:30, 25:40] = 7
    deformed_image, deformed_labels, field = elastic.elastic_deform(image, labels, sigma=3.0,
                                                                    rng=5)
    assert np.abs(field).max() > 0.5
    assert set(np.unique(deformed_labels)) == {0, 3, 7}  # nearest neighbour invents no label
    np.testing.assert_array_equal(deformed_labels, elastic.warp(labels, field, order=0))
    np.testing.assert_allclose(deformed_image,
                               np.clip(elastic.warp(image, field, order=3), image.min(),
                                       image.max()), atol=1e-6)
    assert not np.array_equal(deformed_labels, labels)
    # Smooth: neighbouring displacements differ by much less than the displacements themselves.
    assert np.abs(np.diff(field, axis=2)).max() < 0.2 * np.abs(field).max()
    with pytest.raises(ValueError, match="displacement"):
        elastic.warp(image, field[:, :10])


def test_foreground_iou_and_instances():
    true = np.zeros((6, 9), bool)
    true[1:5, 1:4] = True
    true[1:5, 5:8] = True
    predicted = true.copy()
    predicted[1:5, 4] = True  # the gap is filled: the two cells merge
    assert metrics.foreground_iou(true, predicted) == pytest.approx(24 / 28)
    assert metrics.foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    separated = metrics.instances_from_foreground(true, grow=1)
    assert separated.max() == 2
    assert (separated > 0).sum() > true.sum()  # grown over the border
    merged = metrics.instances_from_foreground(predicted, grow=0)
    assert merged.max() == 1
    truth = metrics.instances_from_foreground(true, grow=0)
    perfect = metrics.instance_scores(truth, truth)
    assert perfect["adapted_rand_error"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["voi"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["matched"] == 1.0
    fused = metrics.instance_scores(truth, merged)
    assert fused["voi_merge"] > 0.5 and fused["voi_split"] == pytest.approx(0.0, abs=1e-9)
    assert fused["adapted_rand_error"] > 0.3
    assert fused["matched"] == 0.0


def _old_instances_from_foreground(foreground, grow, min_size):
    """The former hand-written size filter (label, drop components under min_size, relabel)."""
    from skimage import measure, segmentation

    labels = measure.label(foreground, connectivity=1)
    if min_size > 1 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels[small[labels]] = 0
        labels = measure.label(labels > 0, connectivity=1)
    if grow > 0:
        labels = segmentation.expand_labels(labels, grow)
    return labels.astype(np.int32)


@pytest.mark.parametrize("min_size, grow", [(1, 0), (4, 1), (6, 0), (12, 2)])
def test_instances_from_foreground_gives_the_former_labels(min_size, grow):
    """``remove_small_objects`` replaced the hand-written filter: same labels on noisy masks."""
    rng = np.random.default_rng(min_size)
    for _ in range(5):
        foreground = rng.random((40, 50)) < 0.45
        new = metrics.instances_from_foreground(foreground, grow=grow, min_size=min_size)
        np.testing.assert_array_equal(new, _old_instances_from_foreground(foreground, grow,
                                                                          min_size))
    # a component of exactly min_size pixels is kept, one of min_size - 1 pixels is dropped
    mask = np.zeros((5, 16), bool)
    mask[1, 1:1 + min_size] = True
    mask[3, 1:min_size] = True
    kept = metrics.instances_from_foreground(mask, grow=0, min_size=min_size)
    assert kept[1].sum() == min_size and kept[3].sum() == (min_size - 1 if min_size == 1 else 0)


def test_matched_fraction_hand_case():
    true = np.array([[1, 1, 0, 2, 2, 2]])
    predicted = np.array([[1, 1, 0, 0, 3, 0]])
    assert metrics.matched_fraction(true, predicted) == 0.5  # cell 2 only overlaps 1/3


def test_module_documents_the_paper():
    assert "arXiv:1505.04597" in unet_module.__doc__


def test_center_crop():
    labels = np.arange(2 * 6 * 6).reshape(2, 6, 6)
    np.testing.assert_array_equal(tiling.center_crop(labels, 2), labels[:, 2:4, 2:4])
    images = np.zeros((3, 92, 92, 1))
    assert tiling.center_crop(images, 52, axes=(1, 2)).shape == (3, 52, 52, 1)
    with pytest.raises(ValueError, match="even"):
        tiling.center_crop(labels, 3)


def test_elastic_batches_are_reproducible_and_cropped():
    rng = np.random.default_rng(0)
    images = rng.random((10, 92, 92)).astype(np.float32)
    labels = (images > 0.5).astype(np.int32)
    weights = rng.random((10, 92, 92)).astype(np.float32)
    plain = elastic.ElasticBatches(images, labels, weights, output_size=52, batch_size=4, seed=3)
    assert len(plain) == 2
    x, y, w = plain[0]
    assert x.shape == (4, 92, 92, 1) and y.shape == (4, 52, 52) and w.shape == (4, 52, 52)
    # the order the former per-epoch permutation gave: default_rng([seed, epoch]), sliced
    first = np.random.default_rng([3, 0]).permutation(10)[:4]
    np.testing.assert_array_equal(plain.indices(0), first)
    np.testing.assert_array_equal(y, labels[first, 20:72, 20:72])
    np.testing.assert_array_equal(w, weights[first, 20:72, 20:72])
    again = elastic.ElasticBatches(images, labels, weights, output_size=52, batch_size=4, seed=3)
    np.testing.assert_array_equal(again[1][0], plain[1][0])
    plain.on_epoch_end()  # the next steps of the same endless sequence of shuffled passes
    np.testing.assert_array_equal(plain.indices(0), step_indices(10, 4, 3, seed=3)[2])
    assert not np.array_equal(plain.indices(0), again.indices(0))
    # when batches tile the images (notebook 08: 600 / 8), epoch e is the former permutation e
    whole = elastic.ElasticBatches(images, labels, weights, output_size=52, batch_size=5, seed=3)
    for epoch in range(3):
        order = np.random.default_rng([3, epoch]).permutation(10)
        np.testing.assert_array_equal(np.concatenate([whole.indices(0), whole.indices(1)]), order)
        whole.on_epoch_end()
    deformed = elastic.ElasticBatches(images, labels, weights, output_size=52, batch_size=4,
                                      augment=True, sigma=3.0, seed=3)
    xd, yd, _ = deformed[0]
    assert not np.array_equal(xd, x) and set(np.unique(yd)) <= {0, 1}
    with pytest.raises(ValueError, match="same length"):
        elastic.ElasticBatches(images, labels[:5], output_size=52)
    with pytest.raises(ValueError, match="batch_size"):
        elastic.ElasticBatches(images, labels, output_size=52, batch_size=11)


def test_trimap_targets():
    masks = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    labels, weights = losses.trimap_targets(masks)
    np.testing.assert_array_equal(labels, [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(weights, [[1, 1, 0], [0, 1, 1]])
    with pytest.raises(ValueError, match="masks"):
        losses.trimap_targets(np.array([[3]]))


def test_pets_trimaps_train_a_unet_on_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from bestiary_keras.datasets.tfds_data import load_pets_segmentation

    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        images, masks = load_pets_segmentation("train", 92, data_dir=tmp_path)
    assert images.shape == (8, 92, 92, 3) and masks.shape == (8, 92, 92)
    labels, weights = losses.trimap_targets(masks)
    batches = elastic.ElasticBatches(images / 255.0, labels, weights, output_size=52,
                                     batch_size=4, augment=True, seed=0)
    x, y, w = batches[0]
    assert x.shape == (4, 92, 92, 3) and y.shape == (4, 52, 52)
    keras.utils.set_random_seed(0)
    model = unet((92, 92, 3), 2, depth=2, filters=4)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(batches, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
