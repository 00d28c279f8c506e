"""The CelebA landmark loader, offline with ``tfds.testing.mock_data`` (no data, no network)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError  # noqa: E402
from bestiary_keras.datasets.tfds_pose import (  # noqa: E402
    CELEBA_LANDMARKS,
    CELEBA_LIMBS,
    load_celeba_landmarks,
)
from bestiary_keras.pose import heatmaps  # noqa: E402

USE_CODE = tfds.testing.MockPolicy.USE_CODE
# (lefteye, righteye, nose, leftmouth, rightmouth) as CelebA's integer (x, y) pixel indices
MARKS = [
    [(69, 109), (106, 113), (77, 142), (73, 152), (108, 154)],
    [(0, 20), (177, 197), (89, 109), (60, 5), (120, 210)],  # the last two outside the crop
]


def hand_made_faces(self, split, decoders=None, read_config=None, **kwargs):
    """Two celeb_a examples with known landmarks (replaces _as_dataset)."""
    del self, split, decoders, read_config, kwargs

    def generate():
        for k, marks in enumerate(MARKS):
            image = np.zeros((218, 178, 3), np.uint8)
            image[20:198] = 100 + 50 * k  # the central square; the crop keeps only it
            landmarks = {}
            for name, (x, y) in zip(CELEBA_LANDMARKS, marks):
                landmarks[f"{name}_x"], landmarks[f"{name}_y"] = np.int64(x), np.int64(y)
            yield {"image": image, "landmarks": landmarks}

    signature = {
        "image": tf.TensorSpec((218, 178, 3), tf.uint8),
        "landmarks": {f"{n}_{a}": tf.TensorSpec((), tf.int64)
                      for n in CELEBA_LANDMARKS for a in "xy"},
    }
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_missing_data_raises_clear_error_without_downloading(tmp_path):
    with pytest.raises(DatasetNotAvailableError, match="tfds build celeb_a"):
        load_celeba_landmarks("train", 64, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_landmarks_follow_the_crop_and_resize(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_faces):
        images, keypoints = load_celeba_landmarks("test", 64, data_dir=tmp_path)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    assert keypoints.shape == (2, 5, 3) and keypoints.dtype == np.float32
    assert images[0].min() == images[0].max() == 100  # only the central square is kept
    scale = 64 / 178
    x, y = np.array(MARKS[0], np.float32).T
    np.testing.assert_allclose(keypoints[0, :, 0], (x + 0.5) * scale, atol=1e-4)
    np.testing.assert_allclose(keypoints[0, :, 1], (y + 0.5 - 20) * scale, atol=1e-4)
    np.testing.assert_array_equal(keypoints[0, :, 2], 2)
    # a mouth corner above the crop and one below it are not labelled
    np.testing.assert_array_equal(keypoints[1, :, 2], [2, 2, 2, 0, 0])
    assert (keypoints[1, 3:] == 0).all()
    np.testing.assert_allclose(keypoints[1, 0, :2], [0.5 * scale, 0.5 * scale], atol=1e-4)
    # the keypoints feed the heat-map code as they are
    maps = heatmaps.confidence_maps(keypoints, 64, 16, 2.0, num_joints=5)
    assert maps.shape == (2, 16, 16, 5)
    assert max(max(limb) for limb in CELEBA_LIMBS) == 4


def test_random_mock_data_and_rectangular_output(tmp_path):
    with tfds.testing.mock_data(num_examples=6, policy=USE_CODE):
        images, keypoints = load_celeba_landmarks("train", (32, 48), data_dir=tmp_path,
                                                  max_examples=4)
    assert images.shape == (4, 32, 48, 3) and keypoints.shape == (4, 5, 3)
    labelled = keypoints[..., 2] > 0
    assert (keypoints[..., 0][labelled] <= 48).all() and (keypoints[..., 1][labelled] <= 32).all()
    assert set(np.unique(keypoints[..., 2])) <= {0.0, 2.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        load_celeba_landmarks("train", "big")
