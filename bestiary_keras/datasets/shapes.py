"""Object sprites for the scene generator: geometric shapes and handwritten digit glyphs.

Every sprite is rendered at its own scale (a few hundred pixels), vectorised in NumPy:

- shapes are polygons or circles described by a signed distance function (SDF, in pixels),
  turned into an anti-aliased coverage ``alpha = clip(0.5 - sdf, 0, 1)``;
- digits are scikit-learn's 8x8 handwritten glyphs (``sklearn.datasets.load_digits``, bundled
  with scikit-learn), upscaled smoothly once, then rotated and scaled with ``cv2.warpAffine``.

A sprite's colour never depends on its class: a random saturated colour, a linear shading,
sometimes stripes, pixel noise and a darker 1-pixel outline (which keeps objects visible on
bright and busy backgrounds).
"""

from __future__ import annotations

import colorsys
import functools

import numpy as np

__all__ = [
    "ALL_CLASSES", "DIGIT_CLASSES", "polygon_sdf", "random_colour", "render_alpha",
    "render_object", "SHAPE_CLASSES",
]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
"""The six geometric classes (the default ``classes`` of ``make_scenes``)."""

DIGIT_CLASSES = tuple(f"digit_{d}" for d in range(10))
"""Handwritten digits 0-9 from scikit-learn's bundled ``load_digits``."""

ALL_CLASSES = SHAPE_CLASSES + DIGIT_CLASSES

_ROTATE_DIGITS_DEG = 15.0  # digits are only tilted: a 6 turned by 180 degrees is a 9
_OUTLINE_KERNEL = None
_DIGIT_THRESHOLD = 0.45  # glyph intensity (0-1) where a digit's mask begins


def _unit_polygon(name: str) -> np.ndarray:
    """Vertices (K, 2) as (x, y) of a shape centred at 0 with circumradius about 1."""
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32) / np.sqrt(2)
    if name == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)
    if name == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radius * np.cos(angles), radius * np.sin(angles)], -1).astype(np.float32)
    if name == "cross":
        a, b = 0.3, 1.0  # half-width of an arm, half-length of the cross
        pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a),
               (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a)]  # fmt: skip
        return np.array(pts, np.float32) / np.hypot(a, b)
    raise ValueError(f"No polygon for {name!r}.")


def polygon_sdf(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance from ``points`` (..., 2) to a closed polygon (negative inside).

    Distance to the nearest edge, sign by the even-odd rule; vectorised over points x edges.
    """
    shape = points.shape[:-1]
    px = points[..., 0].reshape(-1, 1).astype(np.float32)
    py = points[..., 1].reshape(-1, 1).astype(np.float32)
    a = np.asarray(vertices, np.float32)
    b = np.roll(a, -1, axis=0)
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    ex, ey = bx - ax, by - ay
    wx, wy = px - ax, py - ay  # (P, E)
    t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0.0, 1.0)
    dx, dy = wx - ex * t, wy - ey * t
    d = np.sqrt((dx * dx + dy * dy).min(axis=1))
    crosses = (ay > py) != (by > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = ex * wy / ey + ax
    inside = np.count_nonzero(crosses & (px < x_at), axis=1) % 2 == 1
    return np.where(inside, -d, d).reshape(shape)


@functools.lru_cache(maxsize=64)
def _centred_grid(patch: int):
    """(y, x) float32 pixel-centre coordinates of a ``patch`` x ``patch`` sprite, centred at 0."""
    y, x = np.mgrid[:patch, :patch].astype(np.float32) - (patch - 1) / 2.0
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


@functools.lru_cache(maxsize=1)
def _digit_glyphs():
    """scikit-learn's 1,797 digits, upscaled 4x (bicubic + blur) once: (images, targets)."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    padded = np.pad(digits.images.astype(np.float32) / 16.0, ((0, 0), (1, 1), (1, 1)))
    big = np.stack(
        [cv2.GaussianBlur(cv2.resize(g, (40, 40), interpolation=cv2.INTER_CUBIC), (0, 0), 1.2)
         for g in padded]
    )
    big = np.clip(big, 0, 1)
    big.setflags(write=False)
    by_digit = tuple(np.flatnonzero(digits.target == d) for d in range(10))
    return big, by_digit


def _rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]], np.float32)


def render_alpha(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """Coverage (S, S) float32 in [0, 1] of one object, longest side ``size`` pixels.

    The sprite is centred in a square patch with a 2-pixel margin (for the outline).
    """
    patch = int(size) + 4
    c = (patch - 1) / 2.0
    if name.startswith("digit_"):
        import cv2

        big, by_digit = _digit_glyphs()
        choices = by_digit[int(name[-1])]
        glyph = big[choices[rng.integers(len(choices))]]
        ys, xs = np.nonzero(glyph >= _DIGIT_THRESHOLD)
        theta = np.deg2rad(rng.uniform(-_ROTATE_DIGITS_DEG, _ROTATE_DIGITS_DEG))
        rot = _rotation(theta)
        points = np.stack([xs, ys], -1).astype(np.float32)
        lo, hi = points.min(0), points.max(0)
        centre = (lo + hi) / 2
        rotated = (points - centre) @ rot.T
        extent = (rotated.max(0) - rotated.min(0)).max() + 1.0  # pixel centres -> pixel edges
        scale = size / extent
        m = np.zeros((2, 3), np.float32)
        m[:, :2] = scale * rot
        m[:, 2] = c - m[:, :2] @ centre
        warped = cv2.warpAffine(glyph, m, (patch, patch), flags=cv2.INTER_LINEAR)
        return np.clip((warped - _DIGIT_THRESHOLD) * 5.0 + 0.5, 0.0, 1.0)
    y, x = _centred_grid(patch)
    if name in ("circle", "ring"):
        radius = size / 2.0
        r = np.sqrt(x * x + y * y)
        sdf = r - radius
        if name == "ring":
            inner = radius * rng.uniform(0.45, 0.6)
            sdf = np.maximum(sdf, inner - r)
    else:
        theta = rng.uniform(0, 2 * np.pi)
        vertices = _unit_polygon(name) @ _rotation(theta).T
        vertices = vertices - (vertices.max(0) + vertices.min(0)) / 2  # centre the bounding box
        vertices = vertices * (size / (vertices.max(0) - vertices.min(0)).max())
        sdf = polygon_sdf(np.stack([x, y], -1), vertices)
    return np.clip(0.5 - sdf, 0.0, 1.0).astype(np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random saturated colour (RGB float32 in [0, 1])."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def render_object(rng: np.random.Generator, name: str, size: int):
    """A sprite: ``(alpha, rgb)``, alpha (S, S) float32 coverage including a dark 1-pixel outline,
    rgb (S, S, 3) float32 colours (shaded, textured, independent of the class)."""
    import cv2

    global _OUTLINE_KERNEL
    if _OUTLINE_KERNEL is None:
        _OUTLINE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    core = render_alpha(rng, name, size)
    alpha = cv2.dilate(core, _OUTLINE_KERNEL)
    patch = core.shape[0]
    colour = random_colour(rng)
    y, x = _centred_grid(patch)
    y, x = y / (size / 2.0), x / (size / 2.0)
    direction = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + rng.uniform(0.15, 0.4) * (np.cos(direction) * x + np.sin(direction) * y)
    if rng.random() < 0.5:  # stripes
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(4.0, 8.0)
        shade = shade * (1.0 + 0.18 * np.sin(freq * (np.cos(angle) * x + np.sin(angle) * y)
                                             + rng.uniform(0, 2 * np.pi)))
    shade = shade + rng.normal(0.0, 0.04, shade.shape).astype(np.float32)
    rgb = np.clip(colour * shade[..., None], 0.0, 1.0)
    outline = colour * rng.uniform(0.15, 0.35)
    rgb = core[..., None] * rgb + (1.0 - core[..., None]) * outline
    return alpha, rgb.astype(np.float32)
