"""Offline tests of the PASCAL VOC 2007 loader, with ``tfds.testing.mock_data`` (no data, no
network): hand-made examples whose boxes are worked out by hand, and random mock data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError  # noqa: E402
from bestiary_keras.datasets.tfds_detection import (  # noqa: E402
    VOC_CLASSES,
    box_masks,
    load_voc_detection,
)

USE_CODE = tfds.testing.MockPolicy.USE_CODE
PERSON, CAR, DOG, CAT, BIRD, COW = (VOC_CLASSES.index(c) for c in
                                    ("person", "car", "dog", "cat", "bird", "cow"))

# (label, bbox [y_min, x_min, y_max, x_max] normalised, difficult) per object; images 100 x 200
HAND_MADE = [
    [
        (PERSON, [0.1, 0.2, 0.5, 0.6], False),
        (CAR, [0.0, 0.0, 1.0, 0.25], False),
        (DOG, [0.5, 0.5, 1.0, 1.0], True),    # difficult
        (CAT, [0.3, 0.3, 0.3, 0.5], False),   # zero height
        (BIRD, [0.2, 0.5, 0.4, 0.502], False),  # 0.128 px wide at 64 px: covers no pixel centre
    ],
    [(COW, [0.2, 0.2, 0.8, 0.8], False)],
    [],  # no object at all
]


def hand_made_voc(self, split, decoders=None, read_config=None, **kwargs):
    """The three ``voc/2007`` examples of ``HAND_MADE`` (replaces ``_as_dataset``)."""
    del self, split, decoders, read_config, kwargs

    def generate():
        for objects in HAND_MADE:
            labels = np.array([o[0] for o in objects], np.int64)
            yield {
                "image": np.full((100, 200, 3), 200, np.uint8),
                "image/filename": b"000001.jpg",
                "objects": {
                    "label": labels,
                    "bbox": np.array([o[1] for o in objects], np.float32).reshape(-1, 4),
                    "pose": np.zeros(len(objects), np.int64),
                    "is_truncated": np.zeros(len(objects), bool),
                    "is_difficult": np.array([o[2] for o in objects], bool),
                },
                "labels": labels,
                "labels_no_difficult": labels,
            }

    signature = {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "image/filename": tf.TensorSpec((), tf.string),
        "objects": {
            "label": tf.TensorSpec((None,), tf.int64),
            "bbox": tf.TensorSpec((None, 4), tf.float32),
            "pose": tf.TensorSpec((None,), tf.int64),
            "is_truncated": tf.TensorSpec((None,), tf.bool),
            "is_difficult": tf.TensorSpec((None,), tf.bool),
        },
        "labels": tf.TensorSpec((None,), tf.int64),
        "labels_no_difficult": tf.TensorSpec((None,), tf.int64),
    }
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def test_box_masks_count_the_pixel_centres_inside():
    masks = box_masks([[0, 0, 2, 1], [12.8, 6.4, 38.4, 32.0], [32.0, 0, 32.128, 64]], 64, 64)
    assert masks.shape == (3, 64, 64) and masks.dtype == bool
    assert np.argwhere(masks[0]).tolist() == [[0, 0], [0, 1]]
    # columns 13..37 (centres 13.5..37.5 in [12.8, 38.4)), rows 6..31: 25 x 26 pixels
    assert masks[1].sum() == 25 * 26
    assert masks[1][6:32, 13:38].all()
    assert not masks[2].any()  # narrower than a pixel, between two centres


def test_boxes_labels_and_masks_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_voc):
        scenes = load_voc_detection("train", 64, data_dir=tmp_path)
    # image 3 has no object; image 1 keeps its cow; in image 0 the difficult dog, the zero-height
    # cat and the bird narrower than a pixel are dropped; the larger car comes first
    assert len(scenes) == 2 and scenes.class_names == VOC_CLASSES
    assert scenes.images.shape == (2, 64, 64, 3) and scenes.images.dtype == np.uint8
    assert (scenes.images == 200).all()
    assert scenes.labels.shape == (2, 10) and scenes.labels.dtype == np.int32
    np.testing.assert_array_equal(scenes.labels[0], [CAR, PERSON] + [-1] * 8)
    np.testing.assert_array_equal(scenes.labels[1], [COW] + [-1] * 9)
    # stretched to 64 x 64: x = x_norm * 64, y = y_norm * 64
    assert scenes.boxes.dtype == np.float32
    np.testing.assert_allclose(scenes.boxes[0, :2], [[0, 0, 16, 64], [12.8, 6.4, 38.4, 32.0]],
                               atol=1e-4)
    np.testing.assert_allclose(scenes.boxes[1, 0], [12.8, 12.8, 51.2, 51.2], atol=1e-4)
    assert (scenes.boxes[0, 2:] == 0).all() and (scenes.boxes[1, 1:] == 0).all()  # padding
    # masks are the boxes filled in: the car 16 x 64, the person 25 x 26 (see box_masks)
    assert scenes.masks.shape == (2, 10, 64, 64)
    np.testing.assert_array_equal(scenes.areas[0, :3], [1024, 650, 0])
    assert scenes.masks[0, 0][:, :16].all() and not scenes.masks[0, 0][:, 16:].any()
    assert not scenes.masks[0, 2:].any()
    # semantic: class + 1; the smaller person is painted over the car where they overlap
    assert scenes.semantic[0, 40, 5] == CAR + 1
    assert scenes.semantic[0, 10, 14] == PERSON + 1
    assert scenes.semantic[0, 10, 30] == PERSON + 1
    assert scenes.semantic[0, 40, 40] == 0
    assert scenes.num_objects.tolist() == [2, 1]


def test_class_filter_difficult_objects_and_max_objects(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_voc):
        # labels are positions in `classes`; the cow's image is left empty and dropped
        scenes = load_voc_detection("validation", 64, classes=("person", "car"),
                                    data_dir=tmp_path)
        assert len(scenes) == 1 and scenes.class_names == ("person", "car")
        np.testing.assert_array_equal(scenes.labels[0], [1, 0] + [-1] * 8)
        assert scenes.semantic[0, 40, 5] == 2 and scenes.semantic[0, 10, 30] == 1
        # the difficult dog is kept when asked: car and dog (both 1024 pixels, in their
        # order), then the person
        scenes = load_voc_detection("test", 64, include_difficult=True, data_dir=tmp_path)
        np.testing.assert_array_equal(scenes.labels[0, :4], [CAR, DOG, PERSON, -1])
        np.testing.assert_allclose(scenes.boxes[0, 1], [32, 32, 64, 64], atol=1e-4)
        # max_objects keeps the largest
        scenes = load_voc_detection("test", 64, include_difficult=True, max_objects=2,
                                    data_dir=tmp_path)
        assert scenes.labels.shape == (2, 2) and scenes.masks.shape == (2, 2, 64, 64)
        np.testing.assert_array_equal(scenes.labels, [[CAR, DOG], [COW, -1]])
        scenes = load_voc_detection("test", 64, classes=["dog"], include_difficult=True,
                                    data_dir=tmp_path)
        np.testing.assert_array_equal(scenes.labels[:, :2], [[0, -1]])
        # max_examples reads only the first image
        assert len(load_voc_detection("train", 64, max_examples=1, data_dir=tmp_path)) == 1


def test_keep_aspect_and_rectangular_output_on_hand_made_examples(tmp_path):
    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=hand_made_voc):
        # 100 x 200 into 64 x 64 keeping the aspect: 32 x 64 content, 16 rows of padding on top
        scenes = load_voc_detection("train", 64, keep_aspect=True, data_dir=tmp_path)
        np.testing.assert_allclose(scenes.boxes[0, :2], [[0, 16, 16, 48],
                                                         [12.8, 19.2, 38.4, 32.0]], atol=1e-4)
        assert scenes.images[0, :16].max() == 0 and scenes.images[0, 16:48].min() == 200
        # (height, width) = (50, 80): x scales by 80, y by 50
        scenes = load_voc_detection("train", (50, 80), data_dir=tmp_path)
        assert scenes.images.shape == (2, 50, 80, 3) and scenes.masks.shape == (2, 10, 50, 80)
        np.testing.assert_allclose(scenes.boxes[0, 1], [16.0, 5.0, 48.0, 25.0], atol=1e-4)


def test_random_mock_data_gives_valid_scene_sets(tmp_path):
    with tfds.testing.mock_data(num_examples=24, policy=USE_CODE):
        scenes = load_voc_detection("train[:50%]", 48, max_objects=6, data_dir=tmp_path)
        few = load_voc_detection("validation", 32, classes=("person", "car", "dog", "cat", "bird"),
                                 data_dir=tmp_path)
    for s, size, m, k in ((scenes, 48, 6, 20), (few, 32, 10, 5)):
        assert len(s) > 0 and s.images.shape == (len(s), size, size, 3)
        assert s.labels.shape == (len(s), m) and s.boxes.shape == (len(s), m, 4)
        assert s.masks.shape == (len(s), m, size, size) and s.semantic.shape == (len(s), size, size)
        assert s.num_classes == k and s.labels.max() < k and (s.num_objects >= 1).all()
        real = s.labels >= 0
        b = s.boxes[real]
        assert (b >= 0).all() and (b <= size).all()  # clipped to the image
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()  # degenerate ones dropped
        assert (s.areas[real] > 0).all() and (s.areas[~real] == 0).all()
        np.testing.assert_array_equal(s.masks[real], box_masks(b, size, size))
        assert s.semantic.max() <= k
        # padding sits at the end of each row, objects largest first
        assert (np.diff(real.astype(int), axis=1) <= 0).all()
        assert (np.diff(np.where(real, s.areas, -1), axis=1) <= 0).all()


def test_missing_data_says_how_to_prepare_it(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(DatasetNotAvailableError, match=f"tfds build voc/2007 --data_dir {tmp_path}"):
        load_voc_detection("train", 64, data_dir=tmp_path)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotAvailableError, match="tfds build voc/2007"):
        load_voc_detection("test[:10]", 64, classes=("person",))
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_bad_arguments():
    with pytest.raises(ValueError, match="not VOC class names"):
        load_voc_detection("train", 64, classes=("person", "giraffe"))
    with pytest.raises(ValueError, match="string 'person'"):
        load_voc_detection("train", 64, classes="person")
    with pytest.raises(ValueError, match="once"):
        load_voc_detection("train", 64, classes=("cat", "cat"))
    with pytest.raises(ValueError, match="max_objects"):
        load_voc_detection("train", 64, max_objects=0)
    with pytest.raises(ValueError, match="image_size"):
        load_voc_detection("train", "big")
