"""Tests of bestiary_keras.plotting (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bestiary_keras.datasets import make_scenes  # noqa: E402
from bestiary_keras.plotting import draw_boxes, show_scenes, show_semantic  # noqa: E402


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(10, 48, min_objects=1, max_objects=3, object_size=(10, 20), seed=0,
                       cache=False)


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_show_scenes_grid_boxes_and_masks(scenes):
    fig = show_scenes(scenes.images, scenes.boxes, scenes.labels, scenes.class_names,
                      masks=scenes.masks, ncols=4, title="ground truth")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 12  # 3 rows x 4 columns, the last two empty
    for i in range(10):
        ax = fig.axes[i]
        assert len(rectangles(ax)) == scenes.num_objects[i]  # padding is skipped
        assert len(ax.images) == 2  # photo + mask overlay
        captions = {t.get_text() for t in ax.texts}
        names = {scenes.class_names[k] for k in scenes.labels[i] if k >= 0}
        assert captions == names
    assert len(fig.axes[10].patches) == 0 and not fig.axes[10].images and not fig.axes[10].axison
    assert fig._suptitle.get_text() == "ground truth"
    plt.close(fig)


def test_show_scenes_float_images_and_scores(scenes):
    images = scenes.images.astype(np.float32) / 255.0
    scores = np.full(scenes.labels.shape, 0.875, np.float32)
    fig = show_scenes(images[:3], scenes.boxes[:3], scenes.labels[:3], scenes.class_names,
                      scores=scores[:3], ncols=8)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert all(t.get_text().endswith("0.88") for t in ax.texts)
    plt.close(fig)
    fig = show_scenes(scenes.images[:2])  # images alone
    assert len(fig.axes) == 2 and all(not rectangles(ax) for ax in fig.axes)
    plt.close(fig)


def test_show_scenes_single_box_per_image(scenes):
    """(N, 4) boxes and (N,) labels, as make_classification_data returns them."""
    fig = show_scenes(scenes.images[:4], scenes.boxes[:4, 0], scenes.labels[:4, 0],
                      scenes.class_names, ncols=2)
    assert len(fig.axes) == 4 and all(len(rectangles(ax)) == 1 for ax in fig.axes)
    plt.close(fig)


def test_draw_boxes_geometry():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((20, 20, 3)))
    draw_boxes(ax, [[2, 3, 10, 7], [0, 0, 0, 0]], labels=[1, -1], class_names=["a", "b"])
    (rect,) = rectangles(ax)
    # pixel columns 2..9 span [1.5, 9.5] in imshow coordinates: width 8 = x_max - x_min
    assert rect.get_xy() == (1.5, 2.5) and rect.get_width() == 8 and rect.get_height() == 4
    assert [t.get_text() for t in ax.texts] == ["b"]
    plt.close(fig)


def test_show_semantic(scenes):
    fig = show_semantic(scenes.images[:3], scenes.semantic[:3], scenes.class_names, ncols=4)
    assert len(fig.axes) == 8  # 2 rows x 4 columns: (photo, map) pairs, 2 empty cells
    assert [len(ax.images) for ax in fig.axes] == [1] * 6 + [0] * 2
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), scenes.semantic[0])
    assert len(fig.legends[0].get_texts()) == len(scenes.class_names)
    plt.close(fig)


def test_empty_images_raise():
    with pytest.raises(ValueError, match="no images"):
        show_scenes(np.zeros((0, 8, 8, 3), np.uint8))
