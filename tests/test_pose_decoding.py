"""OpenPose decoding on hand-made maps: peaks, line integral, matchings, assembly, bad input."""

import numpy as np
import pytest

from bestiary_keras.datasets.figures import LIMBS
from bestiary_keras.pose import decoding
from bestiary_keras.pose.heatmaps import confidence_maps
from bestiary_keras.pose.paf import part_affinity_fields

SIZE = 64


def _template(cx, top=6.5):
    """An upright person (14 joints, the chapter's skeleton) centred on column ``cx``.

    Coordinates are cell centres (``m + 0.5``) so that stride-1 peaks are exact."""
    offsets = [(0, 0), (0, 6), (-5, 7), (-8, 14), (-10, 21), (5, 7), (8, 14), (10, 21),
               (-3, 22), (-4, 32), (-4, 42), (3, 22), (4, 32), (4, 42)]
    person = np.zeros((14, 3), np.float32)
    person[:, 0] = [cx + dx for dx, _ in offsets]
    person[:, 1] = [top + dy for _, dy in offsets]
    person[:, 2] = 2
    return person


def _maps_for(people, limb_width=1.0):
    people = np.asarray(people, np.float32)
    maps = confidence_maps(people[None], SIZE, SIZE, sigma=1.5)[0]
    pafs = part_affinity_fields(people, LIMBS, SIZE, SIZE, limb_width=limb_width)
    return maps, pafs


def _assert_found(decoded, truth, tolerance=0.75):
    """Each true person has one decoded person (matched by the neck) with every labelled joint
    within ``tolerance`` pixels and every unlabelled joint missing."""
    assert len(decoded) == len(truth)
    for person in truth:
        necks = [np.hypot(*(d["keypoints"][1, :2] - person[1, :2])) for d in decoded]
        found = decoded[int(np.argmin(necks))]["keypoints"]
        labelled = person[:, 2] > 0
        error = np.hypot(*(found[labelled, :2] - person[labelled, :2]).T)
        assert error.max() <= tolerance, error
        assert (found[labelled, 2] > 0).all()
        assert (found[~labelled, 2] == 0).all()


@pytest.mark.parametrize("matching", ["greedy", "optimal"])
def test_two_separate_people(matching):
    people = [_template(18.5), _template(44.5)]
    decoded = decoding.decode(*_maps_for(people), LIMBS, matching=matching)
    _assert_found(decoded, people)


@pytest.mark.parametrize("matching", ["greedy", "optimal"])
def test_two_people_with_crossing_arms(matching):
    a, b = _template(24.5), _template(40.5)
    # a's left arm reaches across to the right, b's right arm to the left: the forearms cross
    a[6, :2], a[7, :2] = (36.5, 20.5), (46.5, 27.5)
    b[3, :2], b[4, :2] = (28.5, 20.5), (18.5, 27.5)
    decoded = decoding.decode(*_maps_for([a, b]), LIMBS, matching=matching)
    _assert_found(decoded, [a, b])


def test_a_missing_limb_leaves_the_joint_out_or_splits_the_person():
    person = _template(32.5)
    maps, pafs = _maps_for([person])
    wrist_limb = LIMBS.index((6, 7))
    pafs[..., 2 * wrist_limb: 2 * wrist_limb + 2] = 0.0  # the left forearm is not seen
    decoded = decoding.decode(maps, pafs, LIMBS, min_parts=3)
    truth = person.copy()
    truth[7] = 0.0
    _assert_found(decoded, [truth])  # a single wrist peak is not a person (min_parts)
    # the thigh missing: the leg below it becomes a second, separate part of two joints
    thigh = LIMBS.index((1, 8))
    pafs[..., 2 * thigh: 2 * thigh + 2] = 0.0
    decoded = decoding.decode(maps, pafs, LIMBS, min_parts=2)
    assert len(decoded) == 2
    sizes = sorted(int((d["keypoints"][:, 2] > 0).sum()) for d in decoded)
    assert sizes == [3, 10]  # right hip, knee, ankle apart from the other 10 found joints


def test_a_person_cut_by_the_border():
    inside = _template(14.5)
    cut = _template(58.5)  # its left arm and leg leave the 64-pixel image
    cut[[5, 6, 7, 11, 12, 13]] = 0.0  # outside the image: not labelled
    # the maps are what a network sees: only the inside part of the cut person
    decoded = decoding.decode(*_maps_for([inside, cut]), LIMBS)
    _assert_found(decoded, [inside, cut])


def test_empty_image_gives_an_empty_list():
    maps = np.zeros((16, 16, 14), np.float32)
    pafs = np.zeros((16, 16, 26), np.float32)
    assert decoding.decode(maps, pafs, LIMBS, image_size=64) == []
    assert decoding.decode(maps, pafs, LIMBS, image_size=64, matching="optimal") == []


def test_stride_4_maps_decode_to_image_coordinates():
    people = np.stack([_template(18.5), _template(44.5)])
    maps = confidence_maps(people[None], SIZE, 16, sigma=3.0)[0]
    pafs = part_affinity_fields(people, LIMBS, SIZE, 16)
    decoded = decoding.decode(maps, pafs, LIMBS, image_size=SIZE)
    _assert_found(decoded, people, tolerance=2.0)


def test_find_peaks_values_order_and_plateaus():
    maps = np.zeros((9, 9, 2), np.float32)
    maps[2, 3, 0], maps[6, 6, 0], maps[6, 7, 0] = 0.9, 0.5, 0.5  # a plateau of two cells
    maps[4, 4, 1] = 0.05  # below the threshold
    peaks = decoding.find_peaks(maps, threshold=0.1, window=3)
    np.testing.assert_allclose(peaks[0], [[3, 2, 0.9], [6, 6, 0.5]])
    assert peaks[1].shape == (0, 3)
    with pytest.raises(ValueError, match="joints"):
        decoding.find_peaks(maps[..., 0])


def test_line_integral_score_and_criteria():
    paf = np.zeros((20, 20, 2), np.float32)
    paf[5, 2:13, 0] = 1.0  # a horizontal field on row 5, columns 2..12
    a = np.array([[2, 5, 1.0]], np.float32)
    b = np.array([[12, 5, 1.0], [12, 15, 1.0], [2, 5, 1.0]], np.float32)
    scores = decoding.limb_scores(a, b, paf, num_samples=10, height=20)
    assert scores[0, 0] == pytest.approx(1.0)  # every sample projects to 1, no prior (10 <= 10)
    assert scores[0, 1] == -np.inf  # the field points elsewhere: fails the 80% criterion
    assert scores[0, 2] == -np.inf  # zero length
    # the distance prior: with H = 10 a limb of length 10 loses 0.5 * 10 / 10 - 1 = -0.5
    assert decoding.limb_scores(a, b[:1], paf, height=10)[0, 0] == pytest.approx(0.5)
    # reversed direction: the projection is -1, rejected
    assert decoding.limb_scores(b[:1], a, paf, height=20)[0, 0] == -np.inf


def test_greedy_and_optimal_matching_differ_as_expected():
    scores = np.array([[0.9, 0.8], [0.7, -np.inf]], np.float32)
    greedy = decoding.match_greedy(scores)
    optimal = decoding.match_optimal(scores)
    # greedy takes the best pair (0, 0) first and can then not match peak 1 of the first joint
    np.testing.assert_allclose(greedy, [[0, 0, 0.9]])
    # the maximum-weight matching pairs both: 0.8 + 0.7 = 1.5 > 0.9
    np.testing.assert_allclose(optimal, [[0, 1, 0.8], [1, 0, 0.7]])
    assert decoding.match_optimal(np.full((0, 3), -np.inf)).shape == (0, 3)
    assert decoding.match_greedy(np.full((2, 2), -np.inf)).shape == (0, 3)


@pytest.mark.parametrize("maps_shape, pafs_shape, message", [
    ((1, 16, 16, 14), (1, 16, 16, 26), "one image"),
    ((16, 16, 14), (8, 8, 26), "same height and width"),
    ((16, 16, 14), (16, 16, 24), "13 limbs"),
    ((16, 16, 12), (16, 16, 26), "skeleton has 12 joints"),
])
def test_bad_shapes_are_a_clear_value_error(maps_shape, pafs_shape, message):
    with pytest.raises(ValueError, match=message):
        decoding.decode(np.zeros(maps_shape), np.zeros(pafs_shape), LIMBS)


def test_bad_matching_and_connections():
    with pytest.raises(ValueError, match="matching"):
        decoding.decode(np.zeros((8, 8, 14)), np.zeros((8, 8, 26)), LIMBS, matching="hungarian")
    peaks = [np.zeros((0, 3), np.float32)] * 14
    with pytest.raises(ValueError, match="one \\(M, 3\\) array per limb"):
        decoding.assemble_people(peaks, [np.zeros((0, 3))] * 12, LIMBS)
