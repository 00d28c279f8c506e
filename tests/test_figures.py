"""Tests of bestiary_keras.figures (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bestiary_keras.datasets.scenes import make_scenes  # noqa: E402
from bestiary_keras.figures import (  # noqa: E402
    MAX_WIDTH,
    add_colorbar,
    as_display,
    class_colors,
    class_legend,
    draw_boxes,
    draw_keypoints,
    label_colors,
    label_legend,
    moving_average,
    overlay,
    plot_curves,
    show_scenes,
)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(10, 48, min_objects=1, max_objects=3, object_size=(10, 20), seed=0,
                       cache=False)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


# ----------------------------------------------------------------------------- palette
def test_palette_stable_and_distinct():
    # class k has the same colour whatever the number of classes
    many = class_colors(40)
    for n in (1, 4, 10, 11, 20, 25):
        np.testing.assert_array_equal(class_colors(n), many[:n])
    assert many.shape == (40, 4) and np.all(many[:, 3] == 1.0)
    assert len({tuple(np.round(c, 3)) for c in many}) == 40  # all distinct
    np.testing.assert_allclose(many[0], matplotlib.colormaps["tab10"](0))  # tab10 first
    # label maps: 0 is black background, label k is class k - 1
    labels = label_colors(5)
    np.testing.assert_array_equal(labels[0], [0, 0, 0, 1])
    np.testing.assert_array_equal(labels[1:], class_colors(4))
    legend = label_legend(["background", "cell", "border"])
    assert list(legend) == ["cell", "border"]  # overlay leaves the background untinted
    np.testing.assert_array_equal(legend["border"], label_colors(3)[2])
    with pytest.raises(ValueError, match="num_labels"):
        label_colors(0)


def test_as_display():
    np.testing.assert_allclose(as_display(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    np.testing.assert_allclose(as_display(np.array([[0.0, 127.5]])), [[0.0, 0.5]])
    np.testing.assert_allclose(as_display(np.array([[0.25, 1.2]])), [[0.25 / 255, 1.2 / 255]])
    np.testing.assert_allclose(as_display(np.array([[-0.5, 0.5]])), [[0.0, 0.5]])
    assert as_display(np.zeros((4, 5, 1))).shape == (4, 5)


def test_overlay_tints_labels_only():
    image = np.full((2, 2), 0.5, np.float32)
    labels = np.array([[0, 1], [2, 0]])
    colors = np.array([[0, 0, 0, 1], [1, 0, 0, 1], [0, 0, 1, 1]], np.float32)
    out = overlay(image, labels, alpha=0.5, colors=colors)
    np.testing.assert_allclose(out[0, 0], [0.5, 0.5, 0.5])  # background untouched
    np.testing.assert_allclose(out[0, 1], [0.75, 0.25, 0.25])
    np.testing.assert_allclose(out[1, 0], [0.25, 0.25, 0.75])


# ----------------------------------------------------------------------------- boxes and grid
def test_show_scenes_grid_boxes_and_masks(scenes):
    fig = show_scenes(scenes.images, scenes.boxes, scenes.labels, scenes.class_names,
                      masks=scenes.masks, ncols=4, title="ground truth")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 12  # 3 rows x 4 columns, the last two empty
    for i in range(10):
        ax = fig.axes[i]
        assert len(rectangles(ax)) == scenes.num_objects[i]  # padding is skipped
        assert len(ax.images) == 1  # photo with the masks tinted on it
        captions = {t.get_text() for t in ax.texts}
        names = {scenes.class_names[k] for k in scenes.labels[i] if k >= 0}
        assert captions == names
        # a pixel of the first object's mask carries its class colour
        y, x = np.argwhere(scenes.masks[i, 0])[0]
        shown = ax.images[0].get_array()[y, x]
        expected = overlay(scenes.images[i], scenes.masks[i, 0].astype(int),
                           colors=[[0, 0, 0, 1], class_colors(10)[scenes.labels[i, 0]]])[y, x]
        np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert len(fig.axes[10].patches) == 0 and not fig.axes[10].images and not fig.axes[10].axison
    assert fig._suptitle.get_text() == "ground truth"
    # colour carries the class: a legend names every class
    assert legend_texts(fig) == list(scenes.class_names)


def test_show_scenes_width_keeps_fonts_readable(scenes):
    # 16 columns of 1.8 inches would be 28.8 inches: the grid is capped at MAX_WIDTH
    wide = show_scenes(scenes.images[:16].repeat(2, 0), ncols=16)
    assert wide.get_figwidth() == pytest.approx(MAX_WIDTH)
    narrow = show_scenes(scenes.images[:3], ncols=3)
    assert narrow.get_figwidth() == pytest.approx(3 * 1.8)  # small grids keep their cell size


def test_show_scenes_float_images_and_scores(scenes):
    images = scenes.images.astype(np.float32) / 255.0
    scores = np.full(scenes.labels.shape, 0.875, np.float32)
    fig = show_scenes(images[:3], scenes.boxes[:3], scenes.labels[:3], scenes.class_names,
                      scores=scores[:3], ncols=8)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert all(t.get_text().endswith("0.88") for t in ax.texts)
    assert not fig.legends  # boxes carry their captions: no legend by default
    fig = show_scenes(scenes.images[:2])  # images alone
    assert len(fig.axes) == 2 and all(not rectangles(ax) for ax in fig.axes)


def test_show_scenes_single_box_per_image(scenes):
    """(N, 4) boxes and (N,) labels, as make_classification_data returns them."""
    fig = show_scenes(scenes.images[:4], scenes.boxes[:4, 0], scenes.labels[:4, 0],
                      scenes.class_names, ncols=2)
    assert len(fig.axes) == 4 and all(len(rectangles(ax)) == 1 for ax in fig.axes)


def test_draw_boxes_geometry():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((20, 20, 3)))
    draw_boxes(ax, [[2, 3, 10, 7], [0, 0, 0, 0]], labels=[1, -1], class_names=["a", "b"])
    (rect,) = rectangles(ax)
    # pixel columns 2..9 span [1.5, 9.5] in imshow coordinates: width 8 = x_max - x_min
    assert rect.get_xy() == (1.5, 2.5) and rect.get_width() == 8 and rect.get_height() == 4
    assert [t.get_text() for t in ax.texts] == ["b"]


def test_box_labels_at_the_top_edge_stay_inside():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((48, 48, 3)))
    draw_boxes(ax, [[4, 0, 20, 12], [4, 30, 20, 44]], labels=[0, 1], class_names=["top", "low"])
    top, low = ax.texts
    # at the top edge: just below it, hanging down into the image
    assert top.get_position()[1] == -0.5 and top.get_va() == "top"
    # elsewhere: above the box's top edge, standing on it
    assert low.get_position()[1] == 29.0 and low.get_va() == "bottom"
    fig.canvas.draw()
    extent = top.get_window_extent()
    image_extent = ax.get_window_extent()
    assert extent.y1 <= image_extent.y1 + 1  # inside the image (display y grows upwards)


def test_show_scenes_rows_colorbar_and_legend():
    rng = np.random.default_rng(0)
    image = rng.random((16, 16))
    labels = rng.integers(0, 3, (16, 16))
    weights = 10 * rng.random((16, 16))
    fig = show_scenes([[image, overlay(image, labels)], [weights, 2 * weights]],
                      row_labels=["image", "weights"], titles=["a", "b", "c", "d"],
                      cmap=["gray", "viridis"], colorbar="weight",
                      legend={"background": "black", "cell": label_colors(3)[1],
                              "border": label_colors(3)[2]})
    (bar,) = colorbars(fig)
    assert bar.get_ylabel() == "weight"
    # the two weight maps share one scale, the bar's
    clims = {fig.axes[k].images[0].get_clim() for k in (2, 3)}
    assert clims == {(weights.min(), 2 * weights.max())}
    assert legend_texts(fig) == ["background", "cell", "border"]
    assert [fig.axes[k].get_title() for k in range(4)] == ["a", "b", "c", "d"]
    assert fig.axes[2].get_ylabel() == "weights"
    # no colour bar unless asked
    assert not colorbars(show_scenes([[weights]], cmap="viridis"))


def test_show_scenes_keypoints():
    images = np.zeros((2, 20, 20, 3), np.uint8)
    keypoints = np.array([[[5.5, 5.5, 2], [10.5, 10.5, 2], [0, 0, 0]]] * 2, np.float32)
    predicted = keypoints + [1, 1, 0]
    fig = show_scenes(images, keypoints=keypoints, predicted_keypoints=predicted,
                      limbs=[(0, 1), (1, 2)], limb_colors=["red", "blue"],
                      legend={"right": "red", "left": "blue"})
    ax = fig.axes[0]
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    # ground truth: one limb (joint 2 is not labelled); predictions: both limbs drawn
    assert len(solid) == 1 and len(dashed) == 2
    np.testing.assert_allclose(solid[0].get_xydata(), [[5, 5], [10, 10]])
    assert legend_texts(fig) == ["right", "left"]


def test_draw_keypoints_errors():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="limbs"):
        draw_keypoints(ax, np.zeros((3, 3)), [(0, 5)])
    with pytest.raises(ValueError, match="keypoints must be"):
        draw_keypoints(ax, np.zeros((3, 4)))


def test_class_legend_and_colorbar_helpers():
    fig, ax = plt.subplots()
    legend = class_legend(ax, ["a", "b"])
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    np.testing.assert_allclose(legend.legend_handles[1].get_facecolor(), class_colors(2)[1])
    bar = add_colorbar(ax.imshow(np.eye(3)), ax, "score")
    assert bar.ax.get_ylabel() == "score"


def test_empty_images_raise():
    with pytest.raises(ValueError, match="no images"):
        show_scenes(np.zeros((0, 8, 8, 3), np.uint8))


# ----------------------------------------------------------------------------- curves
def test_moving_average():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])
    np.testing.assert_allclose(moving_average([1, 2], 5), [1, 2])
    with pytest.raises(ValueError, match="width"):
        moving_average([1], 0)


def test_plot_curves_per_batch_and_labelled_average():
    ax = plot_curves({"run": {"loss": [4.0, 2.0, 3.0, 1.0]}}, smooth=2, title="t")
    raw, average = ax.lines
    np.testing.assert_allclose(raw.get_xydata(), [[1, 4], [2, 2], [3, 3], [4, 1]])
    np.testing.assert_allclose(average.get_xydata(), [[2, 3.0], [3, 2.5], [4, 2.0]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "run (per batch)", "run (moving average of 2 steps)"]
    ax = plot_curves({"a": {"loss": [1.0, 0.5]}, "b": {"loss": [2.0, 1.0]}})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    # several runs: one entry per moving average and one for all the faint per-batch lines
    ax = plot_curves({"a": {"loss": [1.0, 0.5, 0.2]}, "b": {"loss": [2.0, 1.0, 0.4]}}, smooth=2)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "a (moving average of 2 steps)", "b (moving average of 2 steps)",
        "per batch (faint lines)"]
    np.testing.assert_allclose(ax.lines[2].get_xydata(), [[1, 2.0], [2, 1.0], [3, 0.4]])
    with pytest.raises(ValueError, match="no metric 'acc'"):
        plot_curves({"a": {"loss": [1.0]}}, "acc")
    with pytest.raises(ValueError, match="smooth"):
        plot_curves({"a": {"loss": [1.0]}}, smooth=0)


def test_plot_curves_keeps_a_run_colour_across_axes():
    import matplotlib.colors as mcolors
    colors = {"plain": "tab:red", "resnet": "tab:green"}
    first = plot_curves({"plain": {"loss": [3.0, 2.0, 1.0]}, "resnet": {"loss": [2.0, 1.0, 0.5]}},
                        smooth=2, colors=colors)
    second = plot_curves({"resnet": {"loss": [2.0, 1.0, 0.5]}}, smooth=2, colors=colors)
    red, green = mcolors.to_rgba("tab:red"), mcolors.to_rgba("tab:green")
    assert [mcolors.to_rgba(line.get_color()) for line in first.lines[:4]] == [red, red, green, green]
    assert [mcolors.to_rgba(line.get_color()) for line in second.lines] == [green, green]
    # runs not named keep the axis' own colour cycle, without raw values
    third = plot_curves({"other": {"loss": [1.0, 0.5]}}, colors=colors)
    assert mcolors.to_rgba(third.lines[0].get_color()) not in (red, green)
