"""The VGG training recipe: rescale, crop, flip, channel shuffle or PCA colour shift, with boxes
kept consistent."""

import numpy as np
import pytest

from bestiary_keras import augment, batching, geometry


def _scene(height=8, width=10):
    image = np.zeros((height, width, 3), np.uint8)
    image[2:4, 1:4] = (255, 0, 0)  # a red 3x2 block: box [1, 2, 4, 4]
    return image, np.array([[1.0, 2.0, 4.0, 4.0]], np.float32)


def test_flip_maps_a_known_box_to_its_mirror():
    image, boxes = _scene()
    flipped, flipped_boxes = augment.horizontal_flip(image[None], boxes[None])
    # Width 10: x -> 10 - x, so [1, 2, 4, 4] -> [6, 2, 9, 4].
    np.testing.assert_allclose(flipped_boxes, [[[6, 2, 9, 4]]])
    assert flipped[0, 2:4, 6:9, 0].min() == 255 and flipped[0, :, :6, 0].max() == 0
    # Flipping twice is the identity; padding slots stay all-zero.
    padded = np.concatenate([boxes, np.zeros((1, 4), np.float32)])[None]
    twice_images, twice = augment.horizontal_flip(*augment.horizontal_flip(image[None], padded))
    np.testing.assert_array_equal(twice_images[0], image)
    np.testing.assert_allclose(twice, padded)


def test_crop_shifts_and_clips_boxes():
    image, boxes = _scene()
    patch, patch_boxes = augment.crop(image, boxes, x0=2, y0=1, size=(4, 6))
    assert patch.shape == (4, 6, 3)
    np.testing.assert_allclose(patch_boxes, [[0, 1, 2, 3]])  # [1-2, 2-1, 4-2, 4-1], x clipped at 0
    assert patch[1:3, 0:2, 0].min() == 255
    # A box entirely outside becomes degenerate.
    _, outside = augment.crop(image, boxes, x0=5, y0=4, size=4)
    assert geometry.box_area(outside)[0] == 0
    with pytest.raises(ValueError, match="does not fit"):
        augment.crop(image, boxes, x0=7, y0=0, size=4)


def test_rescale_isotropic_keeps_aspect_ratio_and_scales_boxes():
    image, boxes = _scene(8, 10)
    big, big_boxes = augment.rescale_isotropic(image, boxes, 16)
    assert big.shape == (16, 20, 3)
    np.testing.assert_allclose(big_boxes, boxes * 2)
    # The block's centre is still red after the rescale.
    assert tuple(big[6, 5]) == (255, 0, 0)
    same, same_boxes = augment.rescale_isotropic(image, boxes, 8)
    assert same is image and np.array_equal(same_boxes, boxes)


def test_channel_shuffle_permutes_channels():
    images = np.zeros((2, 2, 2, 3), np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 10, 20, 30
    out = augment.shuffle_channels(images, [[2, 0, 1], [0, 1, 2]])
    np.testing.assert_array_equal(out[0, 0, 0], [30, 10, 20])
    np.testing.assert_array_equal(out[1, 0, 0], [10, 20, 30])
    shuffled, perms = augment.random_channel_shuffle(images, np.random.default_rng(0))
    for image, perm in zip(shuffled, perms):
        np.testing.assert_array_equal(image[0, 0], np.array([10, 20, 30])[perm])
        assert sorted(perm) == [0, 1, 2]
    with pytest.raises(ValueError, match="permutations"):
        augment.shuffle_channels(images, [[0, 0, 1], [0, 1, 2]])


def test_random_crop_origin_keeps_object_centre():
    rng = np.random.default_rng(0)
    box = np.array([80.0, 2.0, 90.0, 12.0])  # centre (85, 7) near the top-right corner
    for _ in range(200):
        x0, y0 = augment.random_crop_origin(rng, (96, 96), 64, keep_centre_of=box)
        assert 0 <= x0 <= 32 and 0 <= y0 <= 32
        assert x0 <= 85 < x0 + 64 and y0 <= 7 < y0 + 64
    # Without the constraint every origin is possible.
    origins = {augment.random_crop_origin(rng, (66, 66), 64) for _ in range(200)}
    assert origins == {(x, y) for x in range(3) for y in range(3)}


def test_augment_batch_boxes_follow_the_pixels():
    # Objects are solid white squares on black: after any augmentation the box must be the
    # bounding box of the white pixels (up to interpolation at the border).
    rng = np.random.default_rng(1)
    images = np.zeros((16, 64, 64, 3), np.uint8)
    boxes = np.zeros((16, 2, 4), np.float32)  # second slot: padding
    for n in range(16):
        x, y, s = rng.integers(0, 40), rng.integers(0, 40), rng.integers(12, 24)
        images[n, y:y + s, x:x + s] = 255
        boxes[n, 0] = [x, y, x + s, y + s]
    out, out_boxes = augment.augment_batch(images, boxes, rng, crop_size=48,
                                           scale_range=(48, 80))
    assert out.shape == (16, 48, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out_boxes[:, 1], 0)
    for image, box in zip(out, out_boxes[:, 0]):
        ys, xs = np.nonzero(image[..., 0] > 127)
        assert len(xs) > 0  # keep_object: the object never disappears
        found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        np.testing.assert_allclose(found, box, atol=1.01)
    with pytest.raises(ValueError, match="scale_range"):
        augment.augment_batch(images, boxes, rng, crop_size=48, scale_range=(40, 64))


def test_augment_batch_single_scale_no_flip_no_shuffle_is_a_crop():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8)
    boxes = np.tile(np.array([[[0, 0, 32, 32]]], np.float32), (4, 1, 1))
    out, out_boxes = augment.augment_batch(images, boxes, rng, crop_size=32, scale_range=(32, 32),
                                           flip=False, channel_shuffle=False)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_allclose(out_boxes, boxes)


def test_augmented_batches_is_deterministic_and_encodes():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, size=(10, 64, 64, 3), dtype=np.uint8)
    labels = np.arange(10)[:, None] % 3
    boxes = np.tile(np.array([[[10, 10, 30, 30]]], np.float32), (10, 1, 1))

    def encode(x, b, y):
        return x.astype(np.float32), {"labels": y[:, 0], "boxes": b[:, 0]}

    data = augment.AugmentedBatches(images, boxes, labels, encode, batch_size=5, steps=3,
                                    seed=7, crop_size=48, scale_range=(48, 64))
    assert len(data) == 3
    x, y = data[1]
    assert x.shape == (5, 48, 48, 3) and y["boxes"].shape == (5, 4)
    x_again, _ = data[1]
    np.testing.assert_array_equal(x, x_again)
    assert not np.array_equal(data[0][0], x)
    with pytest.raises(IndexError):
        data[3]
    # The next epoch brings new batches (Keras calls on_epoch_end).
    first = data[0][0]
    data.on_epoch_end()
    assert not np.array_equal(data[0][0], first)


def test_augmented_batches_epochs_in_fit():
    import keras

    rng = np.random.default_rng(4)
    images = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    boxes = np.tile(np.array([[[4, 4, 20, 20]]], np.float32), (8, 1, 1))
    seen = []

    def encode(x, b, y):
        seen.append(x.sum())
        return x.astype(np.float32) / 255.0, y[:, 0].astype(np.int32)

    data = augment.AugmentedBatches(images, boxes, np.zeros((8, 1), np.int32), encode,
                                    batch_size=4, steps=2, seed=0, crop_size=32,
                                    scale_range=(32, 40))
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, epochs=3, shuffle=False, verbose=0)
    # (Keras may call on_epoch_end once more, e.g. after peeking at the first batch.)
    assert data.epoch >= 3 and len(set(seen)) == len(seen) >= 6


def test_augmented_batch_of_a_step_is_reproducible_and_takes_the_shared_step_indices():
    # scene k is filled with the value k and labelled k: a batch's pixels and labels name
    # its scenes
    images = np.broadcast_to(np.arange(7, dtype=np.uint8)[:, None, None, None],
                             (7, 32, 32, 3)).copy()
    boxes = np.tile(np.array([[[4, 4, 20, 20]]], np.float32), (7, 1, 1))
    labels = np.arange(7)[:, None]
    data = augment.AugmentedBatches(images, boxes, labels, lambda x, b, y: (x, (b, y)),
                                    batch_size=3, steps=4, seed=5, crop_size=24,
                                    scale_range=(24, 40))
    expected = batching.step_indices(7, 3, 8, seed=5)
    for step in range(8):  # two epochs
        x, (b, y) = data.batch_at_step(step)
        again, (b_again, _) = data.batch_at_step(step)
        np.testing.assert_array_equal(x, again)
        np.testing.assert_array_equal(b, b_again)
        np.testing.assert_array_equal(y[:, 0], expected[step])
        np.testing.assert_array_equal(x[:, 12, 12, 0], expected[step])  # crops keep the value
        # the augmentation is augment_batch's, drawn from the step's generator (seed, step)
        reference, reference_boxes = augment.augment_batch(
            images[expected[step]], boxes[expected[step]], np.random.default_rng((5, step)),
            crop_size=24, scale_range=(24, 40))
        np.testing.assert_array_equal(x, reference)
        np.testing.assert_array_equal(b, reference_boxes)
    data.on_epoch_end()  # batch index 1 of epoch 1 is step 5
    np.testing.assert_array_equal(data[1][1][1][:, 0], expected[5])
    np.testing.assert_array_equal(data.indices(1), expected[5])


def test_flip_scenes_moves_boxes_with_the_pixels():
    image = np.zeros((1, 64, 64, 3), np.uint8)
    image[0, 20:40, 10:30] = 255  # rows 20..39, columns 10..29: box [10, 20, 30, 40]
    boxes = np.array([[[10, 20, 30, 40]]], np.float32)
    for h, v, t, expected in [(True, False, False, [34, 20, 54, 40]),
                              (False, True, False, [10, 24, 30, 44]),
                              (False, False, True, [20, 10, 40, 30])]:
        out_image, out_boxes = augment.flip_scenes(image, boxes, horizontal=h, vertical=v,
                                                   transpose=t)
        np.testing.assert_allclose(out_boxes[0, 0], expected)
        rows = np.flatnonzero(out_image[0, ..., 0].any(axis=1))
        cols = np.flatnonzero(out_image[0, ..., 0].any(axis=0))
        np.testing.assert_allclose([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], expected)


def test_resize_scenes_matches_the_former_cv2_loop():
    import cv2

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.uint8)
    boxes = rng.uniform(0, 64, (3, 2, 4)).astype(np.float32)
    for size in (48, 64, 80):
        scale = size / 64
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        old_images = np.stack([cv2.resize(im, (size, size), interpolation=interpolation)
                               for im in images])
        new_images, new_boxes = augment.resize_scenes(images, boxes, size)
        np.testing.assert_array_equal(new_images, old_images)
        np.testing.assert_array_equal(new_boxes, boxes * scale)
        assert new_boxes.dtype == np.float32


def test_horizontal_flip_matches_flip_boxes_and_keeps_padding():
    images = np.zeros((1, 4, 10, 3), np.uint8)
    boxes = np.array([[[1, 0, 3, 2], [4, 1, 4, 3], [0, 0, 0, 0]]], np.float32)  # 2nd: zero width
    _, flipped = augment.horizontal_flip(images, boxes)
    np.testing.assert_array_equal(flipped[0], [[7, 0, 9, 2], [6, 1, 6, 3], [0, 0, 0, 0]])


def test_rgb_principal_components_of_a_grey_ramp():
    # Pixels (v, v, v) for v = 0 and 255, half each: on the [0, 1] scale every channel has
    # variance 1/4 (population) and they are perfectly correlated, so the covariance is
    # 1/4 * ones(3, 3) * n/(n-1): one eigenvalue 3/4 * n/(n-1) along (1, 1, 1)/sqrt(3), two zeros.
    images = np.zeros((1, 2, 2, 3), np.uint8)
    images[0, 0] = 255
    values, vectors = augment.rgb_principal_components(images)
    np.testing.assert_allclose(values, [0.75 * 4 / 3, 0, 0], atol=1e-12)
    np.testing.assert_allclose(np.abs(vectors[:, 0]), np.full(3, 1 / np.sqrt(3)), atol=1e-12)
    with pytest.raises(ValueError, match="pixel_range"):
        augment.rgb_principal_components(images, pixel_range=0)


def test_pca_colour_shift_hand_computed():
    # p_1 = (1, 1, 1)/sqrt(3) with lambda_1 = 0.3, p_2 = (1, -1, 0)/sqrt(2) with lambda_2 = 0.1,
    # p_3 = (1, 1, -2)/sqrt(6) with lambda_3 = 0.05; alpha = (0.2, -0.5, 1).
    # shift = 0.2*0.3 p_1 - 0.5*0.1 p_2 + 1*0.05 p_3 on the [0, 1] scale, times 255:
    #   0.06/sqrt(3) = 0.034641, 0.05/sqrt(2) = 0.035355, 0.05/sqrt(6) = 0.020412
    #   R: 0.034641 - 0.035355 + 0.020412 = 0.019698 -> 5.023 grey levels
    #   G: 0.034641 + 0.035355 + 0.020412 = 0.090408 -> 23.054
    #   B: 0.034641 - 0.040825           = -0.006184 -> -1.577
    vectors = np.stack([np.array([1, 1, 1]) / np.sqrt(3), np.array([1, -1, 0]) / np.sqrt(2),
                        np.array([1, 1, -2]) / np.sqrt(6)], axis=1)
    values = np.array([0.3, 0.1, 0.05])
    images = np.zeros((2, 2, 3, 3), np.uint8)
    images[0] = (100, 100, 100)
    images[1] = (250, 0, 1)
    out = augment.pca_colour_shift(images, [0.2, -0.5, 1.0], values, vectors)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out[0], np.broadcast_to([105, 123, 98], (2, 3, 3)))
    np.testing.assert_array_equal(out[1], np.broadcast_to([255, 23, 0], (2, 3, 3)))  # clipped
    # float images keep their fractional shift
    shifted = augment.pca_colour_shift(np.full((1, 1, 1, 3), 100.0), [0.2, -0.5, 1.0], values,
                                       vectors)
    np.testing.assert_allclose(shifted[0, 0, 0], [105.023, 123.054, 98.423], atol=2e-3)


def test_random_pca_colour_shift_draws_alpha_per_image_and_batches_use_it():
    rng = np.random.default_rng(0)
    values, vectors = np.array([0.04, 0.01, 0.0025]), np.eye(3)
    images = np.full((4000, 1, 1, 3), 128.0)
    out, alphas = augment.random_pca_colour_shift(images, rng, values, vectors, alpha_std=0.1)
    assert alphas.shape == (4000, 3)
    assert abs(alphas.std() - 0.1) < 0.005
    # with identity eigenvectors channel k moves by alpha_k * lambda_k * 255
    np.testing.assert_allclose(out[:, 0, 0] - 128.0, alphas * values * 255, atol=1e-9)
    # the batches: augment_batch without the shuffle, then the shift, from the step's generator
    scenes = np.broadcast_to(np.arange(7, dtype=np.uint8)[:, None, None, None] * 30,
                             (7, 32, 32, 3)).copy()
    boxes = np.tile(np.array([[[4, 4, 20, 20]]], np.float32), (7, 1, 1))
    data = augment.PCAColourBatches(scenes, boxes, np.arange(7)[:, None],
                                    lambda x, b, y: (x, (b, y)), eigenvalues=values,
                                    eigenvectors=vectors, batch_size=3, steps=2, seed=5,
                                    crop_size=24, scale_range=(24, 40))
    expected = batching.step_indices(7, 3, 4, seed=5)
    for step in range(4):
        x, (b, y) = data.batch_at_step(step)
        rng = np.random.default_rng((5, step))
        reference, reference_boxes = augment.augment_batch(
            scenes[expected[step]], boxes[expected[step]], rng, crop_size=24,
            scale_range=(24, 40), channel_shuffle=False)
        reference, _ = augment.random_pca_colour_shift(reference, rng, values, vectors)
        np.testing.assert_array_equal(x, reference)
        np.testing.assert_array_equal(b, reference_boxes)
        np.testing.assert_array_equal(y[:, 0], expected[step])
        assert not np.array_equal(x[:, 12, 12], scenes[expected[step], 12, 12])  # shifted
    with pytest.raises(ValueError, match="channel shuffle"):
        augment.PCAColourBatches(scenes, boxes, np.zeros((7, 1)), lambda *a: a,
                                 eigenvalues=values, eigenvectors=vectors, batch_size=1,
                                 steps=1, crop_size=24, scale_range=(24, 24),
                                 channel_shuffle=True)
