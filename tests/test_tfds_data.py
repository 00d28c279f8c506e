"""Offline tests of the TFDS loaders, with ``tfds.testing.mock_data`` (no data, no network)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from bestiary_keras.datasets import tfds_data  # noqa: E402
from bestiary_keras.datasets.tfds_data import (  # noqa: E402
    DatasetNotAvailableError,
    load_pets_localization,
    load_pets_segmentation,
    load_tfds,
)

# USE_CODE: features come from the installed builder's code, no metadata files needed.
USE_CODE = tfds.testing.MockPolicy.USE_CODE


def hand_made_pets(self, split, decoders=None, read_config=None, **kwargs):
    """Three oxford_iiit_pet examples whose ground truth is known (replaces _as_dataset)."""
    del self, split, decoders, read_config, kwargs
    trimap = np.full((100, 200, 1), 2, np.uint8)  # background
    trimap[:, 100:] = 1  # pet on the right half
    trimap[:, 96:100] = 3  # border ring between them
    examples = [
        # (head_bbox [y_min, x_min, y_max, x_max] normalised, species, breed)
        ([0.1, 0.2, 0.5, 0.6], 1, 5),
        ([0.0, 0.0, 0.0, 0.0], 0, 7),  # a test-split style example: empty box, dropped
        ([0.0, 0.5, 1.0, 1.0], 0, 33),
    ]

    def generate():
        for box, species, breed in examples:
            yield {
                "image": np.full((100, 200, 3), 200, np.uint8),
                "label": np.int64(breed),
                "species": np.int64(species),
                "file_name": b"x.jpg",
                "segmentation_mask": trimap,
                "head_bbox": np.array(box, np.float32),
            }

    signature = {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "label": tf.TensorSpec((), tf.int64),
        "species": tf.TensorSpec((), tf.int64),
        "file_name": tf.TensorSpec((), tf.string),
        "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
        "head_bbox": tf.TensorSpec((4,), tf.float32),
    }
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_missing_data_raises_clear_error_without_downloading(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(DatasetNotAvailableError) as info:
        load_tfds("oxford_iiit_pet", "train", data_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert f"tfds build oxford_iiit_pet --data_dir {tmp_path}" in message
    assert "download=True" in message
    with pytest.raises(DatasetNotAvailableError, match="mnist"):
        load_tfds("mnist", "test", data_dir=tmp_path)
    with pytest.raises(DatasetNotAvailableError):
        load_pets_localization("train", 64, data_dir=tmp_path)
    with pytest.raises(DatasetNotAvailableError):
        load_pets_segmentation("train", 64, data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_download_only_when_asked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        lambda self, *a, **k: calls.append(self.name))
    with pytest.raises(DatasetNotAvailableError):  # the fake download prepared nothing
        load_tfds("mnist", "test", data_dir=tmp_path, download=True)
    assert calls == ["mnist"]


def test_data_dir_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert tfds_data.tfds_data_dir() == str(tmp_path)
    assert tfds_data.tfds_data_dir("/somewhere") == "/somewhere"


def test_localization_boxes_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_pets):
        images, labels, boxes = load_pets_localization("train", 64, data_dir=tmp_path)
        assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int32 and boxes.dtype == np.float32
        np.testing.assert_array_equal(labels, [1, 0])  # species; the empty box was dropped
        # stretched to 64x64: x scales by 64 (of 200 px), y by 64 (of 100 px)
        np.testing.assert_allclose(boxes, [[12.8, 6.4, 38.4, 32.0], [32.0, 0.0, 64.0, 64.0]],
                                   atol=1e-4)
        # keep_aspect: 100x200 -> 32x64 content, 16 rows of padding on top
        images, labels, boxes = load_pets_localization("train", 64, label="breed",
                                                       keep_aspect=True, data_dir=tmp_path)
        np.testing.assert_array_equal(labels, [5, 33])
        np.testing.assert_allclose(boxes[0], [12.8, 19.2, 38.4, 32.0], atol=1e-4)
        assert images[0, :16].max() == 0 and images[0, 16:48].min() == 200
        # (height, width) output
        images, _, boxes = load_pets_localization("train", (50, 80), data_dir=tmp_path)
        assert images.shape == (2, 50, 80, 3)
        np.testing.assert_allclose(boxes[0], [16.0, 5.0, 48.0, 25.0], atol=1e-4)


def test_segmentation_trimap_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_pets):
        images, masks = load_pets_segmentation("test", (50, 100), data_dir=tmp_path)
    assert images.shape == (3, 50, 100, 3) and masks.shape == (3, 50, 100)
    assert masks.dtype == np.uint8
    assert (masks[:, :, :47] == 0).all()  # background
    assert (masks[:, :, 48:50] == 2).all()  # border
    assert (masks[:, :, 50:] == 1).all()  # pet


def test_loaders_on_random_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12, policy=USE_CODE):
        images, labels, boxes = load_pets_localization("train[:50%]", 32, data_dir=tmp_path,
                                                       label="breed")
        assert images.shape[1:] == (32, 32, 3) and len(images) == len(labels) == len(boxes)
        assert labels.min() >= 0 and labels.max() < len(tfds_data.PET_BREEDS)
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert boxes.min() >= 0 and boxes.max() <= 32
        images, masks = load_pets_segmentation("test", 24, data_dir=tmp_path, max_examples=5)
        assert images.shape == (5, 24, 24, 3) and masks.shape == (5, 24, 24)
        assert set(np.unique(masks)) <= {0, 1, 2}
        ds = load_tfds("mnist", "test", data_dir=tmp_path, as_supervised=True)
        image, label = next(iter(ds))
        assert image.shape == (28, 28, 1) and label.dtype == tf.int64


def test_bad_arguments():
    with pytest.raises(ValueError, match="species"):
        load_pets_localization("train", 64, label="colour")
    with pytest.raises(ValueError, match="image_size"):
        load_pets_segmentation("train", "big")
