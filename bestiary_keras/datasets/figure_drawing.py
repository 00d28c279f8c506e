"""Drawing one image of articulated figures (the rasteriser behind ``datasets.figures``).

``draw_people`` places each person (``_place``), picks its colours and the drawing order of
its parts, draws the parts with OpenCV in fixed-point coordinates on a low-contrast photo crop
and records which person and part owns each pixel, from which the joints' visibility
(COCO's ``v``) and the people's masks follow. See ``datasets.figures`` for the conventions.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras.datasets import photos as _photos
from bestiary_keras.datasets.shapes import random_colour

__all__ = ["draw_people"]

# parts: index -> (name, joints it connects); used for drawing order and occlusion
_PARTS = ("head", "torso", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm",
          "r_thigh", "r_shin", "l_thigh", "l_shin")
_PART_JOINTS = {2: (2, 3), 3: (3, 4), 4: (5, 6), 5: (6, 7), 6: (8, 9), 7: (9, 10),
                8: (11, 12), 9: (12, 13)}
_JOINT_PARTS = (
    {0}, {0, 1}, {1, 2}, {2, 3}, {3}, {1, 4}, {4, 5}, {5}, {1, 6}, {6, 7}, {7}, {1, 8},
    {8, 9}, {9},
)  # the parts that touch each joint: a joint is visible when one of them is on top
_CHAINS = ((2, 3), (4, 5), (6, 7), (8, 9))  # right arm, left arm, right leg, left leg
_NUM_PARTS = len(_PARTS)
_BACKGROUND_CONTRAST = 0.7
_SHIFT = 4  # cv2 fixed-point bits
_PLACEMENT_TRIES = 50


# ----------------------------------------------------------------------------- one person
def _rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _skeleton(rng):
    """Joints (14, 2) in the person's frame (torso length 1, neck at the origin, y down),
    plus drawing sizes relative to the torso length."""
    joints = np.zeros((14, 2))
    tilt = np.deg2rad(rng.uniform(-20, 20))
    joints[0] = 0.38 * np.array([np.sin(tilt), -np.cos(tilt)])
    shoulder, hip = rng.uniform(0.24, 0.34), rng.uniform(0.14, 0.22)
    joints[2], joints[5] = (-shoulder, 0.08), (shoulder, 0.08)
    joints[8], joints[11] = (-hip, 1.0), (hip, 1.0)
    for side, (root, mid, end) in ((-1, (2, 3, 4)), (1, (5, 6, 7))):  # arms
        phi = np.deg2rad(rng.uniform(-40, 170))  # from straight down, positive = outwards
        bend = np.deg2rad(rng.uniform(-150, 30))  # elbow: mostly inwards / upwards
        upper, fore = rng.uniform(0.45, 0.65), rng.uniform(0.42, 0.6)
        joints[mid] = joints[root] + upper * np.array([side * np.sin(phi), np.cos(phi)])
        phi2 = phi + bend
        joints[end] = joints[mid] + fore * np.array([side * np.sin(phi2), np.cos(phi2)])
    for side, (root, mid, end) in ((-1, (8, 9, 10)), (1, (11, 12, 13))):  # legs
        phi = np.deg2rad(rng.uniform(-15, 55))
        bend = np.deg2rad(rng.uniform(-30, 80) * (1 if rng.random() < 0.5 else -1))
        thigh, shin = rng.uniform(0.6, 0.8), rng.uniform(0.55, 0.75)
        joints[mid] = joints[root] + thigh * np.array([side * np.sin(phi), np.cos(phi)])
        phi2 = phi + bend
        joints[end] = joints[mid] + shin * np.array([side * np.sin(phi2), np.cos(phi2)])
    sizes = dict(head=rng.uniform(0.17, 0.24), arm=rng.uniform(0.1, 0.17),
                 leg=rng.uniform(0.13, 0.22))
    return joints, sizes


def _colours(rng):
    """Colours of the 10 parts; left and right limbs share colours for half of the people."""
    torso, head = random_colour(rng), random_colour(rng) * rng.uniform(0.7, 1.0)
    right_arm, right_leg = random_colour(rng), random_colour(rng)
    if rng.random() < 0.5:
        left_arm, left_leg = right_arm, right_leg
    else:
        left_arm, left_leg = random_colour(rng), random_colour(rng)
    fore = rng.uniform(0.75, 1.0)  # forearms / shins a little darker or not
    return [head, torso, right_arm, right_arm * fore, left_arm, left_arm * fore,
            right_leg, right_leg * fore, left_leg, left_leg * fore]


def _draw_order(rng):
    """Part indices in drawing order: chains behind the torso, torso, head, chains in front."""
    behind, front = [], []
    for k, chain in enumerate(_CHAINS):
        in_front = rng.random() < (0.6 if k < 2 else 0.3)
        (front if in_front else behind).append(chain)
    order = [p for i in rng.permutation(len(behind)) for p in behind[i]]
    order += [1, 0]
    order += [p for i in rng.permutation(len(front)) for p in front[i]]
    return order


def _fixed(points):
    return np.round((np.asarray(points) - 0.5) * (1 << _SHIFT)).astype(np.int32)


def _draw_part(canvas, part, joints, sizes, scale, colour):
    """Draws one part (joints in image pixels) on ``canvas`` with cv2; returns nothing."""
    import cv2

    aa = cv2.LINE_AA if canvas.dtype != np.uint8 else cv2.LINE_8
    if part == 0:  # head disc around the head joint
        radius = int(round(max(sizes["head"] * scale, 1.5) * (1 << _SHIFT)))
        cv2.circle(canvas, tuple(_fixed(joints[0])), radius, colour, -1, aa, _SHIFT)
    elif part == 1:  # torso quadrilateral
        quad = _fixed(joints[[2, 5, 11, 8]]).reshape(-1, 1, 2)
        cv2.fillPoly(canvas, [quad], colour, aa, _SHIFT)
        width = max(int(round(0.12 * scale)), 1)
        cv2.polylines(canvas, [quad], True, colour, width, aa, _SHIFT)
    else:
        a, b = _PART_JOINTS[part]
        thickness = max(int(round((sizes["arm"] if part <= 5 else sizes["leg"]) * scale)), 2)
        cv2.line(canvas, tuple(_fixed(joints[a])), tuple(_fixed(joints[b])), colour,
                 thickness, aa, _SHIFT)


def _place(rng, height, width, size_range, allow_cut):
    """Draws a skeleton and a similarity transform that places it; returns image joints,
    sizes and the scale (torso length in pixels)."""
    side = min(height, width)
    for _ in range(_PLACEMENT_TRIES):
        body, sizes = _skeleton(rng)
        theta = np.deg2rad(rng.uniform(-40, 40) if rng.random() < 0.85 else rng.uniform(-180, 180))
        rotated = body @ _rotation(theta).T
        lo = rotated.min(0) - sizes["head"]
        hi = rotated.max(0) + sizes["head"]
        extent = (hi - lo).max()
        scale = rng.uniform(*size_range) * side / extent
        joints = rotated * scale
        lo, hi = lo * scale, hi * scale
        if allow_cut:  # the figure's centre anywhere in the image: some are cut by the border
            centre = rng.uniform([0, 0], [width, height])
            offset = centre - (lo + hi) / 2
        else:
            span_lo, span_hi = -lo + 1, np.array([width, height]) - hi - 1
            if (span_hi < span_lo).any():
                continue
            offset = rng.uniform(span_lo, span_hi)
        joints = joints + offset
        inside = ((joints >= 0) & (joints <= [width, height])).all(1)
        if inside.sum() >= (14 if not allow_cut else 5):
            return joints, sizes, scale
    raise ValueError(  # pragma: no cover - the size range is validated beforehand
        f"Could not place a figure of relative size {size_range} in {height}x{width} pixels.")


def draw_people(rng, height, width, num_people, size_range, allow_cut):
    """One image of ``num_people`` figures on a photo crop: ``(image, keypoints, masks)``, a float
    (H, W, 3) image in [0, 1], (P, 14, 3) keypoints and (P, H, W) visible-pixel masks."""
    import cv2

    image = np.array(_photos.random_crop(rng, height, width), np.float32)
    mean = np.array(cv2.mean(image)[:3], np.float32)
    image = np.clip(mean + _BACKGROUND_CONTRAST * (image - mean), 0.0, 1.0)
    owner = np.zeros((height, width), np.int32)  # 0 = background, p * 10 + part + 1
    people = []
    for p in range(num_people):
        joints, sizes, scale = _place(rng, height, width, size_range, allow_cut)
        colours = _colours(rng)
        outline = rng.random() < 0.5
        for part in _draw_order(rng):
            if outline:  # a darker rim: draw the part a little larger first
                rim = dict(sizes, head=sizes["head"] + 1.0 / scale, arm=sizes["arm"] + 2.0 / scale,
                           leg=sizes["leg"] + 2.0 / scale)
                _draw_part(image, part, joints, rim, scale, tuple(float(c) for c in colours[part] * 0.35))
            _draw_part(image, part, joints, sizes, scale, tuple(float(c) for c in colours[part]))
            mask = np.zeros((height, width), np.uint8)
            _draw_part(mask, part, joints, sizes, scale, 1)
            owner[mask > 0] = p * _NUM_PARTS + part + 1
        people.append(joints)
    keypoints = np.zeros((num_people, 14, 3), np.float32)
    for p, joints in enumerate(people):
        keypoints[p, :, :2] = joints
        for j, (x, y) in enumerate(joints):
            if not (0 <= x <= width and 0 <= y <= height):
                keypoints[p, j] = 0.0
                continue
            col, row = min(int(x), width - 1), min(int(y), height - 1)
            top = owner[row, col] - 1
            mine = top >= 0 and top // _NUM_PARTS == p and top % _NUM_PARTS in _JOINT_PARTS[j]
            keypoints[p, j, 2] = 2.0 if mine else 1.0
    masks = np.stack([(owner - 1) // _NUM_PARTS == p for p in range(num_people)]) & (owner > 0)
    return image, keypoints, masks
