"""Notebook 03's exercises: the worked solutions run and reach the outcomes the notebook states."""

import pytest

from bestiary_keras.exercises import rcnn


def test_max_stretch_closed_form():
    assert rcnn.max_stretch(0.5) == pytest.approx(2.25)
    assert rcnn.max_stretch(1.0) == pytest.approx(1.0)
    assert rcnn.max_stretch(0.7) == pytest.approx((1.7 / 1.4) ** 2)
    with pytest.raises(ValueError, match="threshold"):
        rcnn.max_stretch(0.0)


def test_solution_1_labelling_threshold():
    result = rcnn.solution_1()
    # seeds 0-2: shares 0.46-0.53 / 0.26-0.30 / 0.12-0.14; per object 16-17.5 / 8.3-9.0 / 3.8-4.3
    assert result[0.3]["share"] > result[0.5]["share"] + 0.1 > result[0.7]["share"] + 0.15
    assert 4.0 < result[0.5]["per_object"] < 15.0
    assert result[0.3]["per_object"] > result[0.5]["per_object"] > result[0.7]["per_object"]
    assert result[0.5]["missed"] < 0.15 and result[0.7]["missed"] > result[0.5]["missed"]
    assert 0.1 < result["grey_zone"] < 0.35


def test_solution_2_warp_stretch():
    result = rcnn.solution_2()
    # seeds 0-2: largest 2.10-2.14, median 1.11-1.12, above 1.5: 10.6-11.3%, warp error 1.2-1.5%
    assert result["largest"] <= result["bound"] + 1e-6
    assert result["largest"] > 1.8
    assert result["median"] < 1.3
    assert 0.03 < result["share_above_1_5"] < 0.25
    assert len(result["warp_errors"]) > 50
    assert float(sorted(result["warp_errors"])[len(result["warp_errors"]) // 2]) < 0.05
