"""The worked exercises of notebook 06 (bestiary_keras.exercises.yolo) and their outcomes."""

import pytest

from bestiary_keras.exercises import yolo


def test_uniform_collision_share_by_hand():
    # two centres in 4 cells: the second shares the first's cell with probability 1/4,
    # so 1/8 of the objects are lost on average
    assert yolo.uniform_collision_share([2], 2) == pytest.approx(1 / 8)
    assert yolo.uniform_collision_share([1, 1], 3) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solution_1_collisions(seed):
    r = yolo.solution_1(seed=seed)
    for key in ("chapter", "flock"):
        shares = r[key]
        assert shares[4] > shares[8] >= shares[16]  # a finer grid loses fewer objects
        for S, share in shares.items():  # centres that keep apart collide less than uniform
            assert share < r[f"uniform_{key}"][S]
    assert r["chapter"][8] < 0.005  # measured 0.0008 to 0.0017
    assert 0.1 < r["flock"][4] < 0.2 and r["flock"][8] < 0.03  # 0.144-0.146 and 0.012-0.015


def test_solution_2_square_root_ratios():
    r = yolo.solution_2()
    same_px, same_iou = r["same pixels"], r["same IoU"]
    assert same_px["plain w"][2] == pytest.approx(1.0, rel=1e-4)
    assert same_px["sqrt w (YOLO)"][2] == pytest.approx(2.542, abs=0.002)
    assert same_px["log w (YOLOv2)"][2] == pytest.approx(6.465, abs=0.002)
    assert same_iou["plain w"][2] == pytest.approx((12 / 32) ** 2, rel=1e-3)
    assert same_iou["sqrt w (YOLO)"][2] == pytest.approx(12 / 32, rel=1e-3)
    assert same_iou["log w (YOLOv2)"][2] == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("seed", [0, 2])
def test_solution_3_best_constant_confidence(seed):
    r = yolo.solution_3(seed=seed)
    assert r["objects"] + r["empty"] == pytest.approx(128)
    for lam in (0.5, 1.0):
        assert r["c_scan"][lam] == pytest.approx(r["c_star"][lam], abs=0.0011)
    assert 0.03 < r["c_star"][0.5] < 0.045 and r["push_ratio"][0.5] > 20
