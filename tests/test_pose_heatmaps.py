"""Confidence maps, their decoding, PCK, the masked L2 loss and the skeleton drawing."""

import math

import keras
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from bestiary_keras import figures  # noqa: E402
from bestiary_keras.pose import heatmaps, losses, plots  # noqa: E402
from bestiary_keras.pose.heatmaps import (  # noqa: E402
    confidence_maps,
    keypoints_from_maps,
    pck,
    visibility_mask,
)


def person(**joints):
    """(14, 3) keypoints, unlabelled except for the named joints {index: (x, y)}."""
    kp = np.zeros((14, 3), np.float32)
    for j, (x, y) in joints.items():
        kp[int(j[1:])] = (x, y, 2)
    return kp


def test_confidence_map_values_by_hand():
    # 32x32 image, 8x8 map: cells of 4 pixels, cell (i, j) centred at (4j + 2, 4i + 2)
    kp = person(j0=(10.0, 6.0))[None]  # the centre of cell (row 1, column 2)
    maps = confidence_maps(kp, 32, 8, sigma=4.0)
    assert maps.shape == (1, 8, 8, 14) and maps.dtype == np.float32
    assert maps[0, 1, 2, 0] == pytest.approx(1.0)
    assert maps[0, 1, 3, 0] == pytest.approx(math.exp(-16 / 32))  # 4 px away
    assert maps[0, 2, 3, 0] == pytest.approx(math.exp(-32 / 32))  # 4 px in x and y
    assert np.unravel_index(maps[0, ..., 0].argmax(), (8, 8)) == (1, 2)
    assert (maps[0, ..., 1:] == 0).all()  # unlabelled joints: no peak


def test_max_over_people_and_background():
    kp = np.stack([person(j3=(6.0, 6.0)), person(j3=(26.0, 26.0)), np.zeros((14, 3))])[None]
    maps = confidence_maps(kp, 32, 16, sigma=2.0, background=True)
    assert maps.shape == (1, 16, 16, 15)
    assert maps[0, 2, 2, 3] == pytest.approx(math.exp(-2 / 8))  # cell centre (5, 5): 1 px off in x and y
    assert maps[0, 12, 12, 3] == pytest.approx(math.exp(-2 / 8))
    # the maximum, not the sum: the two peaks keep height 1 at most
    assert maps[..., 3].max() <= 1.0
    np.testing.assert_allclose(maps[..., 14], 1.0 - maps[..., :14].max(-1))
    # (N, J, 3) and (N, 1, J, 3) agree
    single = person(j5=(3.3, 20.1))
    np.testing.assert_allclose(confidence_maps(single[None], 32, 8, 3.0),
                               confidence_maps(single[None, None], 32, 8, 3.0))


@pytest.mark.parametrize("image_size,map_size", [(64, 16), ((48, 64), (12, 16)), (32, 32)])
def test_decoding_recovers_sub_pixel_positions(image_size, map_size):
    rng = np.random.default_rng(0)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    kp = np.zeros((5, 14, 3), np.float32)
    kp[..., 0] = rng.uniform(6, w - 6, (5, 14))
    kp[..., 1] = rng.uniform(6, h - 6, (5, 14))
    kp[..., 2] = 2
    maps = confidence_maps(kp, image_size, map_size, sigma=3.0)
    decoded = keypoints_from_maps(maps, image_size)
    assert decoded.shape == (5, 14, 3)
    np.testing.assert_allclose(decoded[..., :2], kp[..., :2], atol=0.05)  # exact for Gaussians
    assert (decoded[..., 2] > math.exp(-8 / 18) - 1e-6).all()  # worst: a cell corner, 2 px off in x and y


def test_decoding_at_the_border_and_flat_maps():
    maps = np.zeros((1, 4, 4, 2), np.float32)
    maps[0, 0, 3, 0] = 0.9  # corner cell: no neighbour on one side, no refinement there
    out = keypoints_from_maps(maps, 16)
    np.testing.assert_allclose(out[0, 0], [14.0, 2.0, 0.9])
    np.testing.assert_allclose(out[0, 1], [2.0, 2.0, 0.0])  # all zero: first cell, score 0
    with pytest.raises(ValueError, match=r"\(N, h, w, J\)"):
        keypoints_from_maps(np.zeros((4, 4, 2)), 16)


def test_pck_by_hand():
    gt = person(j0=(10, 5), j2=(0, 10), j11=(6, 18), j4=(20, 20))  # torso: 0,10 -> 6,18 = 10 px
    pred = gt[:, :2].copy()
    pred[0] += (1.9, 0)  # within 0.2 * 10
    pred[4] += (0, 2.1)  # just outside
    pred[7] += (50, 50)  # unlabelled joint: ignored
    value, per_joint = pck(gt[None], pred[None], per_joint=True)
    assert value == pytest.approx(3 / 4)
    assert per_joint[0] == 1 and per_joint[4] == 0 and np.isnan(per_joint[7])
    assert pck(gt[None], pred[None], threshold=0.25) == 1.0
    # bbox reference: labelled joints span 20 x 15 px -> 20 px, threshold 4 px
    assert pck(gt[None], pred[None], reference="bbox") == 1.0
    # a person whose torso joints are not labelled is skipped
    gt2 = person(j0=(10, 5))
    assert math.isnan(pck(gt2[None], gt2[None, :, :2]))
    assert pck(np.stack([gt, gt2]), np.stack([pred, gt2[:, :2]])) == pytest.approx(3 / 4)
    # (N, P, J, 3) input is flattened over people
    assert pck(gt[None, None], pred[None, None]) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="reference"):
        pck(gt[None], pred[None], reference="head")
    with pytest.raises(ValueError, match="y_pred"):
        pck(gt[None], pred[None, :5])


def test_visibility_mask():
    a = person(j0=(3, 3), j1=(5, 5))
    a[1, 2] = 1  # occluded but labelled: counts
    kp = np.stack([a, np.zeros((14, 3))])[None]  # second slot is padding: no effect
    mask = visibility_mask(kp)
    assert mask.shape == (1, 1, 1, 14)
    np.testing.assert_array_equal(mask[0, 0, 0], [1, 1] + [0] * 12)
    regions = np.zeros((1, 16, 16), bool)
    regions[0, 0, 5] = True  # one pixel of an unannotated person: cell (0, 1) of a 4x4 map
    full = visibility_mask(kp, 4, unlabelled_regions=regions)
    assert full.shape == (1, 4, 4, 14)
    assert full[0, 0, 1, 0] == 0 and full[0, 0, 0, 0] == 1 and full[0, 3, 3, 2] == 0
    with pytest.raises(ValueError, match="map_size"):
        visibility_mask(kp, unlabelled_regions=regions)


def test_bad_input():
    kp = person(j0=(40, 3))[None]
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        confidence_maps(kp, 32, 8, 2.0)
    with pytest.raises(ValueError, match="13 joints"):
        confidence_maps(np.zeros((1, 13, 3)), 32, 8, 2.0, num_joints=14)
    with pytest.raises(ValueError, match="sigma"):
        confidence_maps(np.zeros((1, 14, 3)), 32, 8, 0.0)
    with pytest.raises(ValueError, match="map_size"):
        confidence_maps(np.zeros((1, 14, 3)), 32, 64, 1.0)
    assert heatmaps.__all__ and losses.__all__ and plots.__all__


def test_masked_l2_by_hand():
    y_true = np.zeros((2, 2, 2, 2), np.float32)
    y_pred = np.zeros((2, 2, 2, 2), np.float32)
    y_pred[0, 0, 0, 0] = 0.5  # counted: 0.25
    y_pred[0, 1, 1, 1] = 2.0  # masked channel: 0
    y_true[1, :, :, 0] = 1.0  # image 1: four cells off by 1 in channel 0 -> 4
    mask = np.array([[[[1, 0]]], [[[1, 1]]]], np.float32)
    per_image = np.asarray(losses.masked_l2(y_true, y_pred, mask))
    np.testing.assert_allclose(per_image, [0.25, 4.0])
    np.testing.assert_allclose(np.asarray(losses.masked_l2(y_true, y_pred)), [4.25, 4.0])
    loss = losses.MaskedL2()
    packed = losses.pack_targets(y_true, mask)
    assert packed.shape == (2, 2, 2, 4)
    assert float(loss(packed, y_pred)) == pytest.approx(2.125)  # mean over the batch
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, losses.MaskedL2)
    assert float(clone(packed, y_pred)) == pytest.approx(2.125)
    with pytest.raises(ValueError, match="2 \\* 2 channels"):
        loss(y_true, y_pred)
    with pytest.raises(ValueError, match="equal shapes"):
        losses.masked_l2(y_true, y_pred[:, :1])


def test_draw_skeleton_in_side_colours():
    import matplotlib.pyplot as plt

    from bestiary_keras.datasets.figures import LIMBS

    kp = person(j0=(10, 5), j1=(10, 10), j2=(6, 10), j3=(4, 16))
    fig, ax = plt.subplots()
    figures.draw_keypoints(ax, kp, LIMBS, plots.limb_colors())
    assert len(ax.lines) == 3  # head-neck, neck-r_shoulder, r_shoulder-r_elbow
    assert ax.lines[1].get_color() == plots.SIDE_COLORS["right"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [9.5, 9.5])  # pixel centres shift
    figures.draw_keypoints(ax, np.stack([kp, kp]), LIMBS, "white")
    assert len(ax.lines) == 9
    kp[3, 2] = 1  # a hidden elbow gets a black marker
    ax2 = plt.subplots()[1]
    figures.draw_keypoints(ax2, kp, LIMBS)
    assert [len(c.get_offsets()) for c in ax2.collections] == [3, 1]
    assert ax2.collections[1].get_facecolors()[0][:3].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="limbs"):
        figures.draw_keypoints(ax, kp[:3], LIMBS)
    # the grid's skeleton style: side colours and a legend naming the sides
    grid = figures.show_scenes(np.zeros((1, 20, 20, 3), np.uint8), keypoints=kp[None],
                               **plots.SKELETON)
    assert grid.axes[0].lines[1].get_color() == plots.SIDE_COLORS["right"]
    assert [t.get_text() for t in grid.legends[0].get_texts()] == [
        "person's right", "person's left", "centre"]
    plt.close("all")


def test_left_right_swaps_by_hand():
    # torso 10 px (right shoulder (0, 10) -> left hip (6, 18)): threshold 2 px
    gt = person(j2=(0, 10), j11=(6, 18), j4=(2, 30), j7=(12, 30), j3=(2, 20), j6=(12, 20))
    pred = gt[:, :2].copy()
    pred[4] = gt[7, :2] + (0.5, 0)  # right wrist on the left wrist: a swap
    pred[7] = gt[4, :2]  # left wrist on the right wrist: a swap
    pred[3] = (40, 40)  # right elbow wrong but not on its mirror: no swap
    # counted: wrists (2), elbows (2); the shoulders' and hips' mirrors are unlabelled
    assert heatmaps.left_right_swaps(gt[None], pred[None]) == pytest.approx(2 / 4)
    assert heatmaps.left_right_swaps(gt[None], gt[None, :, :2]) == 0.0
    assert pck(gt[None], pred[None]) == pytest.approx(3 / 6)
