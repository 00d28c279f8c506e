"""Tests of the offline scene generator (bestiary_keras.datasets)."""

import time

import numpy as np
import pytest

from bestiary_keras.datasets.photos import PHOTO_NAMES
from bestiary_keras.datasets.scenes import SceneSet, make_classification_data, make_scenes
from bestiary_keras.datasets.shapes import ALL_CLASSES, DIGIT_CLASSES
from bestiary_keras.datasets import cache as cache_module, photos, shapes

FIELDS = ("images", "labels", "boxes", "masks", "semantic", "areas")


def assert_same(a: SceneSet, b: SceneSet):
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.class_names == b.class_names


@pytest.fixture(scope="module")
def crowded():
    """Many objects, occlusion, clutter, all classes: the hardest case for the ground truth."""
    return make_scenes(120, 64, classes=ALL_CLASSES, min_objects=2, max_objects=5,
                       object_size=(10, 28), max_overlap=0.4, clutter=3, seed=3, cache=False)


# ----------------------------------------------------------------------------- sprites
def test_polygon_sdf_hand_values():
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
    points = np.array([[0, 0], [2, 0], [0.5, 0.0], [3, 5]], np.float32)
    np.testing.assert_allclose(shapes.polygon_sdf(points, square),
                               [-1.0, 1.0, -0.5, np.hypot(2, 4)], rtol=1e-6)


@pytest.mark.parametrize("name", ALL_CLASSES)
def test_sprite_longest_side_is_size(name):
    rng = np.random.default_rng(0)
    for size in (12, 30):
        core = shapes.render_alpha(rng, name, size) >= 0.5
        ys, xs = np.nonzero(core)
        extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
        assert size - 2 <= extent <= size + 1, (name, size, extent)


def test_circle_area_matches_pi_r_squared():
    core = shapes.render_alpha(np.random.default_rng(0), "circle", 30) >= 0.5
    assert abs(core.sum() - np.pi * 15**2) < 0.03 * np.pi * 15**2


def test_every_photo_loads_offline():
    for name in PHOTO_NAMES:
        image = photos.load_photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert max(image.shape[:2]) <= 512 and image.std() > 5, name


# ----------------------------------------------------------------------------- scenes
def test_shapes_and_dtypes(crowded):
    n, m, h, w = 120, 5, 64, 64
    assert len(crowded) == n
    assert crowded.images.shape == (n, h, w, 3) and crowded.images.dtype == np.uint8
    assert crowded.labels.shape == (n, m) and crowded.labels.dtype == np.int32
    assert crowded.boxes.shape == (n, m, 4) and crowded.boxes.dtype == np.float32
    assert crowded.masks.shape == (n, m, h, w) and crowded.masks.dtype == bool
    assert crowded.semantic.shape == (n, h, w) and crowded.semantic.dtype == np.uint8
    assert crowded.areas.shape == (n, m) and crowded.areas.dtype == np.int32
    assert crowded.class_names == ALL_CLASSES
    assert crowded.labels.min() >= -1 and crowded.labels.max() < len(ALL_CLASSES)


def test_padding_is_consistent(crowded):
    pad = crowded.labels < 0
    assert not crowded.masks[pad].any()
    assert not crowded.boxes[pad].any()
    assert not crowded.areas[pad].any()
    # padding only at the end of each row
    for row in pad:
        assert not np.any(row[:-1] & ~row[1:])
    np.testing.assert_array_equal(crowded.num_objects, (~pad).sum(1))


def test_min_max_objects_respected(crowded):
    assert crowded.num_objects.min() >= 2 and crowded.num_objects.max() <= 5
    assert set(np.unique(crowded.num_objects)) >= {2, 3, 4}  # the range is actually used


def test_boxes_are_tight_around_visible_masks(crowded):
    for i, j in zip(*np.nonzero(crowded.labels >= 0)):
        m = crowded.masks[i, j]
        assert m.any()
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        # exclusive end: x_max = last column + 1
        expected = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        np.testing.assert_array_equal(crowded.boxes[i, j], expected)


def test_box_convention_on_hand_case():
    """A plain-background square: box width equals the number of mask columns."""
    s = make_scenes(5, 32, classes=("square",), object_size=10, background="plain", cache=False)
    for i in range(5):
        x0, y0, x1, y1 = s.boxes[i, 0]
        assert x1 - x0 == s.masks[i, 0].any(0).sum()
        assert y1 - y0 == s.masks[i, 0].any(1).sum()
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32


def test_semantic_matches_masks_and_labels(crowded):
    for i in range(len(crowded)):
        expected = np.zeros((64, 64), np.uint8)
        for j in np.flatnonzero(crowded.labels[i] >= 0):
            expected[crowded.masks[i, j]] = crowded.labels[i, j] + 1
        np.testing.assert_array_equal(crowded.semantic[i], expected)
    # visible masks never share a pixel
    assert crowded.masks.sum(1).max() <= 1


def test_max_overlap_respected(crowded):
    valid = crowded.labels >= 0
    visible = crowded.masks.sum((2, 3))[valid]
    fraction = visible / crowded.areas[valid]
    assert fraction.min() >= 1.0 - 0.4 - 1e-9
    assert fraction.max() <= 1.0
    assert (fraction < 0.95).any()  # occlusion actually happens
    # the last object of each scene is on top: fully visible
    last = crowded.num_objects - 1
    idx = np.arange(len(crowded))
    np.testing.assert_array_equal(crowded.masks[idx, last].sum((1, 2)), crowded.areas[idx, last])


def test_no_occlusion_when_max_overlap_is_zero():
    s = make_scenes(150, 48, min_objects=3, max_objects=4, object_size=(8, 16), seed=1,
                    cache=False)
    valid = s.labels >= 0
    np.testing.assert_array_equal(s.masks.sum((2, 3))[valid], s.areas[valid])


def test_all_classes_appear_roughly_uniformly():
    s = make_scenes(600, 32, object_size=(8, 20), seed=0, cache=False)
    counts = np.bincount(s.labels[:, 0], minlength=6)
    assert counts.min() > 600 / 6 * 0.7, counts


def test_determinism_and_seed():
    kwargs = dict(min_objects=1, max_objects=3, clutter=2, max_overlap=0.2, cache=False)
    a = make_scenes(40, seed=7, **kwargs)
    b = make_scenes(40, seed=7, **kwargs)
    c = make_scenes(40, seed=8, **kwargs)
    assert_same(a, b)
    assert not np.array_equal(a.images, c.images)
    # scene i does not depend on num_images
    assert_same(make_scenes(10, seed=7, **kwargs), a.subset(np.arange(10)))


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("BESTIARY_CACHE", str(tmp_path))
    assert cache_module.cache_dir() == tmp_path
    first = make_scenes(30, 48, max_objects=2, seed=4)
    files = list(tmp_path.glob("scenes_*.npz"))
    assert len(files) == 1
    second = make_scenes(30, 48, max_objects=2, seed=4)  # loaded from the file
    assert_same(first, second)
    assert_same(first, make_scenes(30, 48, max_objects=2, seed=4, cache=False))
    make_scenes(30, 48, max_objects=2, seed=5)  # other arguments: another file
    assert len(list(tmp_path.glob("scenes_*.npz"))) == 2
    files[0].write_bytes(b"not a zip file")  # a corrupt file is regenerated
    assert_same(first, make_scenes(30, 48, max_objects=2, seed=4))


def test_non_square_images_and_backgrounds():
    for background in ("photo", "plain", "noise"):
        s = make_scenes(6, (40, 72), object_size=(8, 20), background=background, clutter=2,
                        cache=False)
        assert s.images.shape == (6, 40, 72, 3)
        assert s.masks.shape == (6, 1, 40, 72)
        assert s.boxes[..., [0, 2]].max() <= 72 and s.boxes[..., [1, 3]].max() <= 40
    plain = make_scenes(4, 32, object_size=8, background="plain", cache=False)
    # a plain background is one colour: its pixels away from the object all agree
    image, mask = plain.images[0], plain.masks[0, 0]
    far = ~np.pad(mask, 2)[:-4, :-4] & ~np.pad(mask, 2)[4:, 4:] & ~mask
    far &= ~np.pad(mask, 2)[:-4, 4:] & ~np.pad(mask, 2)[4:, :-4]
    assert np.ptp(image[far], axis=0).max() <= 1


def test_subset_and_num_objects(crowded):
    sub = crowded.subset([3, 1])
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.images[0], crowded.images[3])
    np.testing.assert_array_equal(sub.num_objects, crowded.num_objects[[3, 1]])
    assert len(crowded.subset(slice(0, 10))) == 10
    assert len(crowded.subset(crowded.num_objects == 2)) == (crowded.num_objects == 2).sum()


def test_colour_does_not_give_the_class_away():
    """Mean object colour per class is about the same (colour is drawn independently)."""
    s = make_scenes(600, 48, object_size=(14, 24), background="plain", seed=2, cache=False)
    means = np.array([s.images[i][s.masks[i, 0]].mean(0) for i in range(len(s))])
    per_class = np.array([means[s.labels[:, 0] == k].mean(0) for k in range(6)])
    assert np.ptp(per_class, axis=0).max() < 30  # out of 255


def test_make_classification_data():
    images, labels, boxes = make_classification_data(20, 48, classes=DIGIT_CLASSES[:3],
                                                     object_size=(12, 24), cache=False)
    assert images.shape == (20, 48, 48, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.shape == (20,) and labels.dtype == np.int32 and set(labels) <= {0, 1, 2}
    assert boxes.shape == (20, 4) and boxes.dtype == np.float32
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(object_size=(12, 70)), "does not fit"),
        (dict(min_objects=3, max_objects=2), "min_objects=3 is larger than max_objects=2"),
        (dict(classes=("circle", "hexagon")), "hexagon"),
        (dict(classes="circle"), "classes=('circle',)"),
        (dict(classes=()), "classes is empty"),
        (dict(classes=("circle", "circle")), "duplicates"),
        (dict(max_overlap=1.0), "max_overlap"),
        (dict(background="sky"), "photo, plain, noise"),
        (dict(clutter=-1), "clutter"),
        (dict(image_size=(4, 64)), "image_size"),
        (dict(object_size=(20, 10)), "object_size"),
        (dict(image_size="big"), "image_size"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=None) as info:
        make_scenes(2, **{"image_size": 64, **kwargs}, cache=False)
    assert message in str(info.value)
    if "hexagon" in message:
        assert "circle, square" in str(info.value)  # lists the known classes


def test_impossible_crowding_raises():
    with pytest.raises(ValueError, match="Could not place"):
        make_scenes(1, 16, min_objects=6, max_objects=6, object_size=12, cache=False)


def test_speed():
    make_scenes(5, cache=False)  # warm the photo and digit caches
    start = time.perf_counter()
    s = make_scenes(1000, 64, cache=False)
    elapsed = time.perf_counter() - start
    assert len(s) == 1000
    assert elapsed < 20.0, f"1000 scenes took {elapsed:.1f} s"
