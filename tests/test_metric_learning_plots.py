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
