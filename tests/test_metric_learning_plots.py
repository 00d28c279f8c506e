"""The descriptor chapter's figures use the collection's palette and image grid."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402

from bestiary_keras import figures  # noqa: E402
from bestiary_keras.metric_learning import plots  # noqa: E402


def test_show_pairs_is_a_two_row_grid_titled_same_or_different():
    rng = np.random.default_rng(0)
    same = np.array([1, 0, 1])
    fig = plots.show_pairs(rng.random((5, 8, 8)), rng.random((5, 8, 8, 1)), same, num=3)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 6
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["same", "different", "same"]
    colours = [mcolors.to_hex(ax.title.get_color()) for ax in fig.axes[:3]]
    assert colours == [figures.GT_COLOR, figures.PRED_COLOR, figures.GT_COLOR]


def test_embedding_colours_are_the_class_palette():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 3)
    ax = plots.plot_embedding(rng.normal(size=(36, 2)), labels)
    got = np.array([c.get_facecolor()[0] for c in ax.collections])
    np.testing.assert_allclose(got, figures.class_colors(12))


def test_show_images_titles_are_readable_and_the_figure_fits_the_notebook():
    titles = [f"stairs {k * 10}°" for k in range(24)]
    fig = plots.show_images(np.random.default_rng(0).random((24, 32, 32)), titles, ncols=12,
                            size=1.5, title="views")
    assert fig.get_figwidth() <= figures.MAX_WIDTH + 1e-6
    sizes = [t.get_fontsize() for t in fig.axes[0].texts]
    assert len(sizes) == 24 and min(sizes) >= 8


def test_show_matches_and_score_maps():
    rng = np.random.default_rng(0)
    image = rng.random((32, 48))
    points = rng.uniform(0, 30, (5, 2))
    matches = {"A": (points, points, np.arange(3), np.arange(3), np.array([1, 0, 1]))}
    fig = plots.show_matches(image, image, matches)
    assert fig.axes[0].get_title() == "A: 2 correct of 3 mutual matches"
    assert fig.axes[0].title.get_fontsize() >= 8 and fig.get_dpi() > 60
    fig = plots.show_score_maps(image, {"trained DET": image}, {"trained DET": points})
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "detector score" in labels  # the colour bar names what the colour means


def test_descriptor_curves_3d_show_the_test_views_in_the_legend():
    rng = np.random.default_rng(0)
    ax = plots.plot_descriptor_curves_3d(rng.normal(size=(6, 3)), np.repeat([0, 1], 3),
                                         np.tile([0, 120, 240], 2), ("a", "b"),
                                         query_desc=rng.normal(size=(4, 3)),
                                         query_object=np.array([0, 0, 1, 1]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a test views" in labels and "b templates" in labels
