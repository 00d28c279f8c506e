"""The generated cell images of notebook 08 (``bestiary_keras.datasets.cells``)."""

import numpy as np
import pytest

from bestiary_keras.datasets.cells import CELL_CLASSES, border_class, make_cells


def test_shapes_dtypes_and_value_ranges():
    cells = make_cells(5, 64, seed=3)
    assert len(cells) == 5
    assert cells.images.shape == (5, 64, 64) and cells.images.dtype == np.float32
    assert cells.instances.shape == (5, 64, 64) and cells.instances.dtype == np.int32
    assert cells.semantic.shape == (5, 64, 64) and cells.semantic.dtype == np.uint8
    assert 0.0 <= cells.images.min() and cells.images.max() <= 1.0
    assert set(np.unique(cells.semantic)) <= {0, 1, 2}
    assert cells.class_names == CELL_CLASSES


def test_labels_agree_with_each_other():
    cells = make_cells(6, seed=1)
    # Background exactly where there is no cell; border pixels are cell pixels of the instances.
    np.testing.assert_array_equal(cells.semantic == 0, cells.instances == 0)
    np.testing.assert_array_equal(cells.foreground, cells.semantic == 1)
    for instances in cells.instances:
        # Instances are numbered 1..K without gaps.
        labels = np.unique(instances)
        np.testing.assert_array_equal(labels, np.arange(labels.max() + 1))


def test_cells_touch_and_are_brighter_than_background():
    cells = make_cells(20, seed=0)
    touching = (cells.semantic == 2).reshape(20, -1).any(axis=1)
    assert touching.mean() >= 0.8, "most images must contain touching cells"
    assert cells.num_cells.min() >= 2
    inside = cells.images[cells.instances > 0].mean()
    outside = cells.images[cells.instances == 0].mean()
    assert inside > outside + 0.2
    # The membrane rim makes the touching border darker than the cells' interiors.
    assert cells.images[cells.semantic == 2].mean() < cells.images[cells.semantic == 1].mean() - 0.05


def test_deterministic_and_independent_of_the_number_of_images():
    a = make_cells(3, 48, seed=7)
    b = make_cells(5, 48, seed=7)
    np.testing.assert_array_equal(a.images, b.images[:3])
    np.testing.assert_array_equal(a.instances, b.instances[:3])
    c = make_cells(3, 48, seed=8)
    assert not np.array_equal(a.images, c.images)


def test_subset_and_read_only():
    cells = make_cells(4, 48, seed=2)
    part = cells.subset([1, 3])
    np.testing.assert_array_equal(part.images, cells.images[[1, 3]])
    with pytest.raises(ValueError):
        cells.images[0, 0, 0] = 1.0


def test_border_class_hand_case():
    instances = np.array([
        [0, 1, 1, 2, 2],
        [0, 1, 1, 2, 2],
        [0, 0, 0, 0, 3],
    ])
    expected = np.array([
        [0, 1, 2, 2, 1],
        [0, 1, 2, 2, 2],
        [0, 0, 0, 0, 2],
    ])
    np.testing.assert_array_equal(border_class(instances), expected)
    # A single cell has no border; only other cells count, the background does not.
    single = np.zeros((4, 4), int)
    single[1:3, 1:3] = 5
    np.testing.assert_array_equal(border_class(single), (single > 0).astype(np.uint8))


@pytest.mark.parametrize("kwargs, word", [
    (dict(num_images=0), "num_images"),
    (dict(num_images=2, image_size=8), "image_size"),
    (dict(num_images=2, cells=(5, 2)), "cells"),
    (dict(num_images=2, radius=(1, 5)), "radius"),
    (dict(num_images=2, touch_probability=1.5), "touch_probability"),
])
def test_bad_arguments_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_cells(**kwargs)


def test_renumbering_is_relabel_sequential_and_gives_the_old_labels():
    """``_one_image`` renumbers with ``skimage.segmentation.relabel_sequential``: the visible
    cells become 1..K in the order they were placed, as the former hand-written lookup did."""
    import hashlib

    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.choice([0, 2, 3, 7, 9], size=(6, 7)).astype(np.int32)
        # the former code: a lookup from the labels present to 1..K
        present = np.unique(labels)
        present = present[present > 0]
        lookup = np.zeros(10, np.int32)
        lookup[present] = np.arange(1, len(present) + 1)
        relabelled, forward, _ = relabel_sequential(labels)
        np.testing.assert_array_equal(relabelled, lookup[labels])
        np.testing.assert_array_equal(forward[np.arange(1, 10)], lookup[1:])
    # the generator's labels are those of the former code (hash and counts recorded with it)
    data = make_cells(12, 92, seed=0)
    digest = hashlib.sha256(np.ascontiguousarray(data.instances, np.int32).tobytes()).hexdigest()
    assert digest[:16] == "c9be74afcc3f0854"
    assert data.instances.max(axis=(1, 2)).tolist() == [13, 10, 14, 10, 10, 12, 10, 13, 8, 8, 8, 7]
