"""A small NumPy rasteriser of shaded 3D objects for the triplet descriptors of notebook 16.

Wohlhart and Lepetit (CVPR 2015) learn descriptors from renderings of 3D models (LineMOD) seen
from viewpoints on a sphere. Offline, we build a few asymmetric objects out of convex parts
(boxes and a roof prism), view them with a pinhole camera placed on a circle of azimuths (or
anywhere on the sphere), and rasterise them with a z-buffer, flat Lambertian shading from a
light attached to the camera, 2x2 supersampling for smooth edges, and a background (flat grey
for templates, photo crops, noise and clutter for test views).

- ``OBJECTS``: name -> list of convex parts (each an array of triangles ``(T, 3, 3)``).
- ``camera_pose``: rotation and centre of a camera at ``(azimuth, elevation)`` looking at the
  origin; ``project``: 3D points to pixels and depths.
- ``rasterize``: triangles -> (shading, coverage) images.
- ``render_object``: one grey image of an object at a pose on a background.
- ``render_views``: many renderings with random imaging conditions, one by one.
- ``render_layers`` / ``photo_backgrounds`` / ``compose``: the object layers rendered once,
  put on new backgrounds with new noise and clutter for every batch (the data of notebook 16).
- ``angle_difference``: the absolute difference of two azimuths on the circle, in degrees.
"""

from __future__ import annotations

import functools

import numpy as np

from bestiary_keras.datasets.photos import random_crop

__all__ = [
    "angle_difference", "box", "camera_pose", "compose", "object_mesh", "OBJECTS",
    "photo_backgrounds", "prism_roof", "project", "rasterize", "render_layers", "render_object",
    "render_views",
]


def box(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    """An axis-aligned box as 12 triangles ``(12, 3, 3)`` (6 faces of 2 triangles)."""
    c = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], np.float64)
    # vertex index = 4 * ix + 2 * iy + iz
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [(a, b, c_) for q in quads for (a, b, c_) in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))]
    return c[np.array(tris)]


def prism_roof(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    """A roof: a triangular prism with its ridge along x at height ``z1`` (``(8, 3, 3)``)."""
    ym = (y0 + y1) / 2
    a, b, c = (x0, y0, z0), (x0, y1, z0), (x0, ym, z1)
    d, e, f = (x1, y0, z0), (x1, y1, z0), (x1, ym, z1)
    tris = [(a, b, c), (d, f, e), (a, d, e), (a, e, b), (a, c, f), (a, f, d), (b, e, f), (b, f, c)]
    return np.array(tris, np.float64)


OBJECTS = {
    # a house with a roof, a chimney at one end and a porch on one side
    "house": [box(-0.8, 0.8, -0.45, 0.45, -0.6, 0.15), prism_roof(-0.8, 0.8, -0.45, 0.45, 0.15, 0.6),
              box(0.35, 0.6, 0.05, 0.3, 0.2, 0.8), box(-0.6, -0.1, 0.45, 0.85, -0.6, -0.2)],
    # a thick letter L lying on its side, with a stub
    "lblock": [box(-0.8, 0.8, -0.3, 0.3, -0.6, -0.15), box(-0.8, -0.3, -0.3, 0.3, -0.15, 0.7),
               box(0.4, 0.8, -0.3, 0.6, -0.15, 0.05)],
    # three steps of increasing height
    "stairs": [box(-0.9, -0.3, -0.4, 0.4, -0.6, -0.3), box(-0.3, 0.3, -0.4, 0.4, -0.6, 0.05),
               box(0.3, 0.9, -0.4, 0.4, -0.6, 0.4)],
    # a tower with one arm
    "tower": [box(-0.3, 0.3, -0.3, 0.3, -0.7, 0.8), box(0.3, 0.9, -0.15, 0.15, 0.1, 0.4),
              box(-0.6, -0.3, -0.3, 0.3, -0.7, -0.4)],
}
"""Asymmetric objects made of convex parts (no two views of an object look alike)."""


def _oriented(part: np.ndarray) -> np.ndarray:
    """Orders each triangle of a convex part so that its normal points outwards."""
    centre = part.reshape(-1, 3).mean(0)
    normal = np.cross(part[:, 1] - part[:, 0], part[:, 2] - part[:, 0])
    inward = np.sum(normal * (part.mean(1) - centre), axis=1) < 0
    out = part.copy()
    out[inward] = out[inward][:, [0, 2, 1]]
    return out


@functools.lru_cache(maxsize=None)
def object_mesh(name: str) -> np.ndarray:
    """All triangles of an object ``(T, 3, 3)``, outward-oriented (read-only)."""
    if name not in OBJECTS:
        raise ValueError(f"Unknown object {name!r}: expected one of {', '.join(OBJECTS)}.")
    mesh = np.concatenate([_oriented(p) for p in OBJECTS[name]])
    mesh.setflags(write=False)
    return mesh


def camera_pose(azimuth_deg: float, elevation_deg: float = 30.0, distance: float = 4.0):
    """A camera on the sphere of radius ``distance`` looking at the origin, z up.

    Returns:
        ``(rotation, centre)``: rows of ``rotation`` are the camera's right, up and forward
        axes in world coordinates; ``centre`` its position.
    """
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    centre = distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    forward = -centre / np.linalg.norm(centre)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"elevation_deg={elevation_deg} looks straight down the z axis; use "
                         "an elevation strictly between -90 and 90 degrees.")
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, forward]), centre


def project(points, rotation, centre, focal: float, size: int):
    """Pinhole projection of world points ``(..., 3)`` to pixels ``(..., 2)`` as ``(x, y)``
    (image centre at ``size / 2``, y downwards) and their depths ``(...)``."""
    cam = (np.asarray(points) - centre) @ rotation.T
    depth = cam[..., 2]
    x = size / 2 + focal * cam[..., 0] / depth
    y = size / 2 - focal * cam[..., 1] / depth
    return np.stack([x, y], -1), depth


def rasterize(triangles_px, depths, shades, size: int):
    """Z-buffer rasterisation of flat-shaded triangles, vectorised over triangles and pixels.

    Args:
        triangles_px: ``(T, 3, 2)`` vertices in pixels (``(x, y)``, pixel centres at ``+0.5``).
        depths: ``(T, 3)`` vertex depths (linearly interpolated in the image: fine for the
            small, distant objects here).
        shades: ``(T,)`` grey level of each triangle.
        size: image side.

    Returns:
        ``(image, coverage)``: float ``(size, size)`` shading (0 where empty) and a bool mask.
    """
    image = np.zeros((size, size))
    covered_image = np.zeros((size, size), bool)
    if len(triangles_px) == 0:
        return image, covered_image
    # only the pixels of the objects' bounding box
    x0, y0 = np.clip(np.floor(triangles_px.reshape(-1, 2).min(0)).astype(int), 0, size)
    x1, y1 = np.clip(np.ceil(triangles_px.reshape(-1, 2).max(0)).astype(int) + 1, 0, size)
    if x1 <= x0 or y1 <= y0:
        return image, covered_image
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    p = np.stack([xs.ravel(), ys.ravel()], -1)  # (P, 2)
    a, b, c = (triangles_px[:, k][:, None, :] for k in range(3))  # (T, 1, 2)

    def edge(u, v, q):
        return (v[..., 0] - u[..., 0]) * (q[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (
            q[..., 0] - u[..., 0])

    area = edge(a, b, c)  # (T, 1)
    w0, w1, w2 = edge(b, c, p), edge(c, a, p), edge(a, b, p)  # (T, P)
    valid = np.abs(area) > 1e-9
    sign = np.where(area >= 0, 1.0, -1.0)
    inside = (w0 * sign >= 0) & (w1 * sign >= 0) & (w2 * sign >= 0) & valid
    safe = np.where(valid, area, 1.0)
    z = (w0 * depths[:, 0:1] + w1 * depths[:, 1:2] + w2 * depths[:, 2:3]) / safe
    z = np.where(inside, z, np.inf)
    nearest = np.argmin(z, axis=0)
    covered = np.isfinite(z[nearest, np.arange(p.shape[0])])
    image[y0:y1, x0:x1] = np.where(covered, shades[nearest], 0.0).reshape(y1 - y0, x1 - x0)
    covered_image[y0:y1, x0:x1] = covered.reshape(y1 - y0, x1 - x0)
    return image, covered_image


def render_object(name: str, azimuth_deg: float, *, elevation_deg: float = 30.0,
                  size: int = 32, background=None, light=(-0.4, 0.6), ambient: float = 0.3,
                  albedo: float = 1.0, zoom: float = 1.0, offset=(0.0, 0.0),
                  supersample: int = 2):
    """One grey rendering of an object.

    Args:
        name: a key of ``OBJECTS``.
        azimuth_deg, elevation_deg: the viewpoint.
        size: image side in pixels.
        background: ``(size, size)`` grey image behind the object (default mid grey 0.5).
        light: where the light is, seen from the object: towards the camera plus these
            (right, up) components (the default lights from the upper left).
        ambient, albedo: shading ``albedo * (ambient + (1 - ambient) * max(0, n . l))``.
        zoom: scale of the object in the image (1: a radius of 1.25 fills 80% of it).
        offset: shift of the object in pixels ``(x, y)``.
        supersample: render at this factor and average down (anti-aliasing).

    Returns:
        ``(image, mask)``: float32 ``(size, size)`` in [0, 1] and the coverage as float32.
    """
    rotation, centre = camera_pose(azimuth_deg, elevation_deg)
    big = size * supersample
    focal = 0.8 * big / 2 * zoom * 4.0 / 1.25  # radius ~1.25 at distance 4 -> 80% of the side
    mesh = object_mesh(name)
    px, depth = project(mesh, rotation, centre, focal, big)
    px = px + np.asarray(offset, np.float64) * supersample
    normal = np.cross(mesh[:, 1] - mesh[:, 0], mesh[:, 2] - mesh[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    to_light = light[0] * rotation[0] + light[1] * rotation[1] - rotation[2]
    to_light /= np.linalg.norm(to_light)
    shades = albedo * (ambient + (1 - ambient) * np.clip(normal @ to_light, 0, None))
    front = np.sum(normal * (mesh.mean(1) - centre), axis=1) < 0  # back faces are hidden
    image, covered = rasterize(px[front], depth[front], shades[front], big)
    if supersample > 1:
        shape = (size, supersample, size, supersample)
        image = image.reshape(shape).mean((1, 3))
        coverage = covered.astype(np.float64).reshape(shape).mean((1, 3))
    else:
        coverage = covered.astype(np.float64)
    if background is None:
        background = np.full((size, size), 0.5)
    background = np.asarray(background, np.float64)
    if background.shape != (size, size):
        raise ValueError(f"background must be ({size}, {size}), got {background.shape}.")
    # image already holds coverage-weighted shading (0 where empty)
    out = image + (1 - coverage) * background
    return out.astype(np.float32), coverage.astype(np.float32)


def angle_difference(a_deg, b_deg):
    """``|a - b|`` on the circle, in degrees, in [0, 180]."""
    d = np.abs((np.asarray(a_deg) - np.asarray(b_deg)) % 360.0)
    return np.minimum(d, 360.0 - d)


def render_layers(names, azimuths_deg, *, size: int = 32, elevation_deg: float = 30.0,
                  lights=None, zooms=None):
    """The object layers of many views, to be put on backgrounds later (``compose``).

    Args:
        names: object name of each view; azimuths_deg: ``(N,)``.
        lights: ``(N, 2)`` light components (default the standard light);
        zooms: ``(N,)`` object scales (default 1).

    Returns:
        ``(shading, coverage)``: float32 ``(N, size, size)`` each; ``shading`` is already
        multiplied by the coverage (0 where the object is absent).
    """
    azimuths_deg = np.asarray(azimuths_deg, np.float64).reshape(-1)
    if len(names) != len(azimuths_deg):
        raise ValueError(f"names and azimuths_deg must have the same length, got {len(names)} "
                         f"and {len(azimuths_deg)}.")
    n = len(names)
    lights = np.tile([[-0.4, 0.6]], (n, 1)) if lights is None else np.asarray(lights)
    zooms = np.ones(n) if zooms is None else np.asarray(zooms)
    shading = np.empty((n, size, size), np.float32)
    coverage = np.empty((n, size, size), np.float32)
    black = np.zeros((size, size))
    for i in range(n):
        image, cov = render_object(names[i], azimuths_deg[i], elevation_deg=elevation_deg,
                                   size=size, background=black, light=tuple(lights[i]),
                                   zoom=float(zooms[i]))
        shading[i], coverage[i] = image, cov
    return shading, coverage


def photo_backgrounds(rng: np.random.Generator, num: int, size: int = 32, photos=None,
                      levels=(0.0, 0.6)) -> np.ndarray:
    """``num`` random grey crops of the bundled photos, float32 ``(num, size, size)``, with
    their grey levels mapped linearly into ``levels`` (darker than the lit object, which
    stays visible but not trivially so)."""
    from bestiary_keras.datasets.photos import PHOTO_NAMES

    photos = tuple(PHOTO_NAMES if photos is None else photos)
    grey = np.array([0.299, 0.587, 0.114], np.float32)
    out = np.empty((num, size, size), np.float32)
    for i in range(num):
        out[i] = random_crop(rng, size, size, names=photos) @ grey
    return (levels[0] + (levels[1] - levels[0]) * out).astype(np.float32)


def compose(shading, coverage, rng: np.random.Generator, *, backgrounds=None,
            noise: float = 0.0, clutter: int = 0, shift: int = 0) -> np.ndarray:
    """Object layers on backgrounds, with noise, occluding clutter and a small shift.

    Vectorised over the batch; cheap enough to make every training batch anew.

    Args:
        shading, coverage: ``(N, S, S)`` from ``render_layers``.
        rng: NumPy generator.
        backgrounds: ``(M, S, S)`` grey backgrounds, one drawn at random per view (default
            black, as the templates).
        noise: standard deviation of Gaussian pixel noise.
        clutter: number of random grey rectangles entering each view from its border.
        shift: the object moves by up to ``shift`` whole pixels (circular shift of its layer).

    Returns:
        float32 ``(N, S, S, 1)`` in [0, 1].
    """
    shading = np.asarray(shading, np.float32)
    coverage = np.asarray(coverage, np.float32)
    n, size = shading.shape[0], shading.shape[1]
    if shift:
        dx, dy = rng.integers(-shift, shift + 1, (2, n))
        cols = (np.arange(size)[None, :] - dx[:, None]) % size
        rows = (np.arange(size)[None, :] - dy[:, None]) % size
        shading = shading[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        coverage = coverage[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if backgrounds is None:
        bg = np.zeros((n, size, size), np.float32)
    else:
        bg = np.asarray(backgrounds, np.float32)[rng.integers(0, len(backgrounds), n)]
    out = shading + (1.0 - coverage) * bg
    if clutter:
        yy, xx = np.mgrid[0:size, 0:size]
        for _ in range(clutter):
            w, h = rng.integers(size // 6, size // 3, (2, n))
            side = rng.integers(0, 4, n)
            x0 = np.where(side == 0, 0, np.where(side == 1, size - w, rng.integers(0, size, n) % (size - w)))
            y0 = np.where(side == 2, 0, np.where(side == 3, size - h, rng.integers(0, size, n) % (size - h)))
            inside = ((xx[None] >= x0[:, None, None]) & (xx[None] < (x0 + w)[:, None, None])
                      & (yy[None] >= y0[:, None, None]) & (yy[None] < (y0 + h)[:, None, None]))
            out = np.where(inside, rng.uniform(0.1, 0.9, (n, 1, 1)).astype(np.float32), out)
    if noise:
        out = out + noise * rng.standard_normal(out.shape, dtype=np.float32)
    return np.clip(out, 0, 1)[..., None]


def render_views(names, azimuths_deg, rng: np.random.Generator, *, size: int = 32,
                 elevation_deg: float = 30.0, background: str = "flat", photos=None,
                 noise: float = 0.0, light_jitter: float = 0.0, zoom_jitter: float = 0.0,
                 shift: float = 0.0, clutter: int = 0):
    """Renderings of ``names[i]`` at ``azimuths_deg[i]`` under random imaging conditions.

    Args:
        names: object name of each view (sequence of ``N`` keys of ``OBJECTS``).
        azimuths_deg: ``(N,)`` azimuths.
        rng: NumPy generator.
        size: image side.
        elevation_deg: camera elevation (one value, or ``(N,)``).
        background: ``"flat"`` (mid grey, as the templates) or ``"photo"`` (random grey crops of
            the bundled photos ``photos``, default all of them).
        noise: standard deviation of Gaussian pixel noise.
        light_jitter: random change of the light direction components.
        zoom_jitter: the object's scale varies by ``+-zoom_jitter`` (relative).
        shift: the object moves by up to ``shift`` pixels.
        clutter: number of random grey rectangles drawn over the view (occluders at the
            image border, partly covering the object).

    Returns:
        float32 ``(N, size, size, 1)`` in [0, 1].
    """
    from bestiary_keras.datasets.photos import PHOTO_NAMES

    if background not in ("flat", "photo"):
        raise ValueError(f"background must be 'flat' or 'photo', got {background!r}.")
    azimuths_deg = np.asarray(azimuths_deg, np.float64).reshape(-1)
    if len(names) != len(azimuths_deg):
        raise ValueError(f"names and azimuths_deg must have the same length, got {len(names)} "
                         f"and {len(azimuths_deg)}.")
    elevations = np.broadcast_to(np.asarray(elevation_deg, np.float64), azimuths_deg.shape)
    photos = tuple(PHOTO_NAMES if photos is None else photos)
    out = np.empty((len(names), size, size, 1), np.float32)
    for i, (name, az, el) in enumerate(zip(names, azimuths_deg, elevations)):
        if background == "photo":
            bg = random_crop(rng, size, size, names=photos) @ np.array([0.299, 0.587, 0.114])
            bg = 0.25 + 0.5 * bg  # keep the object's contrast with the background
        else:
            bg = None
        light = (-0.4 + rng.uniform(-light_jitter, light_jitter),
                 0.6 + rng.uniform(-light_jitter, light_jitter))
        image, _ = render_object(
            name, az, elevation_deg=el, size=size, background=bg, light=light,
            zoom=1.0 + rng.uniform(-zoom_jitter, zoom_jitter),
            offset=rng.uniform(-shift, shift, 2))
        for _ in range(clutter):
            w, h = rng.integers(size // 6, size // 3, 2)
            side = rng.integers(4)
            x0 = 0 if side == 0 else size - w if side == 1 else rng.integers(0, size - w)
            y0 = 0 if side == 2 else size - h if side == 3 else rng.integers(0, size - h)
            image[y0:y0 + h, x0:x0 + w] = rng.uniform(0.1, 0.9)
        if noise:
            image = image + rng.normal(0, noise, image.shape)
        out[i, ..., 0] = np.clip(image, 0, 1)
    return out
