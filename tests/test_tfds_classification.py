"""Offline tests of the CIFAR-10, MNIST and smallNORB loaders, with ``tfds.testing.mock_data``
(no data, no network)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from bestiary_keras.datasets.tfds_classification import (  # noqa: E402
    CIFAR10_CLASSES,
    SMALLNORB_CATEGORIES,
    SmallNorbViews,
    load_cifar10,
    load_mnist,
    load_smallnorb,
    smallnorb_triplets,
)
from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError  # noqa: E402

USE_CODE = tfds.testing.MockPolicy.USE_CODE


def hand_made_image_label(shape):
    """An ``as_dataset_fn`` giving three ``image``/``label`` examples: image ``n`` is filled
    with ``10 * (n + 1)`` and labelled ``(3 * n + 2) % 10``."""

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        del self, split, decoders, read_config, kwargs

        def generate():
            for n in range(3):
                yield {"image": np.full(shape, 10 * (n + 1), np.uint8),
                       "label": np.int64((3 * n + 2) % 10), "id": b"x"}

        signature = {"image": tf.TensorSpec(shape, tf.uint8),
                     "label": tf.TensorSpec((), tf.int64), "id": tf.TensorSpec((), tf.string)}
        return tf.data.Dataset.from_generator(generate, output_signature=signature)

    return as_dataset


NORB_EXAMPLES = [
    # (category, instance, azimuth class, elevation class, lighting)
    (0, 4, 0, 0, 0),
    (4, 9, 17, 8, 5),
    (2, 7, 9, 4, 3),
]


def hand_made_norb(self, split, decoders=None, read_config=None, **kwargs):
    """Three smallNORB examples: the first camera's image is black on its left half and 240 on
    its right half, the second camera's is all 255 (it must not be used)."""
    del self, split, decoders, read_config, kwargs
    left = np.zeros((96, 96, 1), np.uint8)
    left[:, 48:] = 240

    def generate():
        for category, instance, azimuth, elevation, lighting in NORB_EXAMPLES:
            yield {"image": left, "image2": np.full((96, 96, 1), 255, np.uint8),
                   "label_category": np.int64(category), "instance": np.int64(instance),
                   "label_azimuth": np.int64(azimuth), "label_elevation": np.int64(elevation),
                   "label_lighting": np.int64(lighting)}

    signature = {"image": tf.TensorSpec((96, 96, 1), tf.uint8),
                 "image2": tf.TensorSpec((96, 96, 1), tf.uint8),
                 **{k: tf.TensorSpec((), tf.int64) for k in (
                     "label_category", "instance", "label_azimuth", "label_elevation",
                     "label_lighting")}}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_cifar10_and_mnist_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_image_label((32, 32, 3))):
        images, labels = load_cifar10("test", data_dir=tmp_path)
        assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, [2, 5, 8])
        np.testing.assert_array_equal(images.reshape(3, -1).min(1), [10, 20, 30])
        np.testing.assert_array_equal(images.reshape(3, -1).max(1), [10, 20, 30])
        images, labels = load_cifar10("train", max_examples=2, data_dir=tmp_path)
        assert images.shape == (2, 32, 32, 3)
        np.testing.assert_array_equal(labels, [2, 5])
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_image_label((28, 28, 1))):
        images, labels = load_mnist("train", data_dir=tmp_path)
        assert images.shape == (3, 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(labels, [2, 5, 8])
        assert images[2].min() == images[2].max() == 30


def test_smallnorb_angles_in_degrees_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_norb):
        views = load_smallnorb("test", 32, data_dir=tmp_path)
        assert len(views) == 3 and views.images.shape == (3, 32, 32, 1)
        assert views.images.dtype == np.uint8
        np.testing.assert_array_equal(views.category, [0, 4, 2])
        np.testing.assert_array_equal(views.instance, [4, 9, 7])
        # azimuth class a -> 20 a degrees: 0, 17, 9 -> 0, 340, 180
        np.testing.assert_allclose(views.azimuth, [0.0, 340.0, 180.0])
        # elevation class e -> 30 + 5 e degrees: 0, 8, 4 -> 30, 70, 50
        np.testing.assert_allclose(views.elevation, [30.0, 70.0, 50.0])
        np.testing.assert_array_equal(views.lighting, [0, 5, 3])
        # object id 10 * category + instance
        np.testing.assert_array_equal(views.object, [4, 49, 27])
        # 96 -> 32 averages 3x3 blocks: columns 0-15 black, 16-31 at 240; image2 (255) unused
        assert (views.images[:, :, :16] == 0).all() and (views.images[:, :, 16:] == 240).all()
        # (height, width) output: 96 -> 48 rows (2x2 blocks), 96 -> 24 columns (4 each)
        views = load_smallnorb("train", (48, 24), data_dir=tmp_path, max_examples=2)
        assert views.images.shape == (2, 48, 24, 1) and len(views.azimuth) == 2
        assert (views.images[..., :12, 0] == 0).all() and (views.images[..., 12:, 0] == 240).all()


def test_loaders_on_random_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12, policy=USE_CODE):
        images, labels = load_cifar10("train[:500]", data_dir=tmp_path)
        assert images.shape[1:] == (32, 32, 3) and len(images) == len(labels) > 0
        assert labels.min() >= 0 and labels.max() < len(CIFAR10_CLASSES)
        images, labels = load_mnist("test", max_examples=5, data_dir=tmp_path)
        assert images.shape == (5, 28, 28, 1) and labels.max() < 10
        views = load_smallnorb("train[:10%]", 24, data_dir=tmp_path)
        assert views.images.shape[1:] == (24, 24, 1) and len(views) > 0
        assert views.category.max() < len(SMALLNORB_CATEGORIES) and views.instance.max() < 10
        assert set(np.unique(views.azimuth)) <= set(np.arange(0.0, 360.0, 20.0))
        assert set(np.unique(views.elevation)) <= set(np.arange(30.0, 71.0, 5.0))
        assert views.lighting.min() >= 0 and views.lighting.max() < 6


@pytest.mark.parametrize("load, name", [(load_cifar10, "cifar10"), (load_mnist, "mnist"),
                                        (load_smallnorb, "smallnorb")])
def test_missing_data_says_how_to_prepare_it(load, name, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(DatasetNotAvailableError, match=f"tfds build {name} --data_dir"):
        load("train", data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_bad_image_size():
    with pytest.raises(ValueError, match="image_size"):
        load_smallnorb("train", "small")


def test_smallnorb_triplets_on_a_hand_made_grid():
    # object 4 (category 0, instance 4) at three poses, object 14 (category 1, instance 4) at one
    views = SmallNorbViews(
        images=np.zeros((5, 2, 2, 1), np.uint8),
        category=np.array([0, 0, 0, 0, 1]), instance=np.array([4, 4, 4, 4, 4]),
        azimuth=np.array([0.0, 0.0, 340.0, 60.0, 0.0]),
        elevation=np.array([30.0, 30.0, 35.0, 30.0, 30.0]),
        lighting=np.array([0, 1, 0, 2, 0]))
    # pose steps (azimuth, elevation): 0 and 1 at (0, 0); 2 at (17, 1), one step from them
    # (azimuth is circular: 340 -> 0 is 20 degrees); 3 at (3, 0), three steps from 0 and 1,
    # four from 2.
    samples = smallnorb_triplets(views, 400, np.random.default_rng(0), other_object_fraction=0.0)
    assert samples.shape == (400, 4) and set(samples[:, 0]) == {0, 1, 2, 3, 4}
    expected = {  # anchor: (possible j, possible k, possible i')
        0: ({2}, {3}, {1}),
        1: ({2}, {3}, {0}),
        2: ({0, 1}, {3}, {2}),  # no other lighting at its pose: i' is itself
        3: ({3}, {0, 1, 2}, {3}),  # no pose one step away: j is the same pose
        4: ({4}, {0, 1, 2, 3}, {4}),  # a single pose: the negative comes from the other object
    }
    for i, j, k, twin in samples:
        close, far, same = expected[i]
        assert j in close and k in far and twin in same, (i, j, k, twin)
    samples = smallnorb_triplets(views, 200, np.random.default_rng(1), other_object_fraction=1.0)
    objects = views.object
    assert (objects[samples[:, 2]] != objects[samples[:, 0]]).all()
    np.testing.assert_array_equal(views.take([4, 0]).azimuth, [0.0, 0.0])
    np.testing.assert_array_equal(views.take(views.lighting == 0).instance, [4, 4, 4])
