"""Generated video for unsupervised depth and ego-motion (notebook 14): a ray-cast corridor.

Each scene is a textured 3-D corridor with a floor, a ceiling, two side walls,
an end wall and a few boxes standing on the floor, every surface textured with a crop of one of
scikit-image's bundled photos (``photos.random_crop``, tiled with mirroring so there are no
seams) and lit by a fixed, view-independent shade per face (so brightness constancy holds, as
view synthesis assumes). A pinhole camera with known intrinsics ``K`` moves forward and
sideways while turning slightly; three consecutive frames ``(t-1, t, t+1)`` form a snippet
whose middle frame is the target; a few overlapping snippets are cut from each scene's video. Rendering is plain NumPy ray casting, super-sampled to avoid
aliasing. The depth of every frame and the camera poses are kept for evaluation only.

Camera frame: x right, y down, z forward (the convention of ``K``); poses are 4x4
camera-to-world matrices. The data depend only on the seed and the snippet index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bestiary_keras.datasets.photos import random_crop
from bestiary_keras.datasets.cache import cache_dir

__all__ = [
    "SNIPPET_LENGTH",
    "TEXTURE_PHOTOS",
    "VIDEO_VERSION",
    "VideoSnippets",
    "default_intrinsics",
    "make_video_snippets",
    "relative_pose",
    "render_view",
]

VIDEO_VERSION = 1
"""Bumped whenever the renderer changes, so cached snippets are regenerated."""
SNIPPET_LENGTH = 3
TEXTURE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                  "camera", "brick", "grass", "gravel", "coins")
"""Photos with texture everywhere (the smooth colour wheel and the dark Hubble field are left
out: view synthesis learns nothing where the image is flat)."""

_TEXTURE_SIZE = 128
_TEXELS_PER_UNIT = 24.0


@dataclass
class VideoSnippets:
    """Snippets of 3 frames; the middle one is the target.

    Attributes:
        frames: (N, 3, H, W, 3) uint8 frames ``t-1, t, t+1``.
        depth: (N, 3, H, W) float32 depth (z in the camera frame) of every frame.
        poses: (N, 3, 4, 4) float32 camera-to-world matrices.
        intrinsics: (3, 3) float32 ``K``, the same for every frame.
    """

    frames: np.ndarray
    depth: np.ndarray
    poses: np.ndarray
    intrinsics: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def targets(self) -> np.ndarray:
        """(N, H, W, 3) uint8 middle frames."""
        return self.frames[:, SNIPPET_LENGTH // 2]

    @property
    def target_depth(self) -> np.ndarray:
        """(N, H, W) depth of the middle frames (evaluation only)."""
        return self.depth[:, SNIPPET_LENGTH // 2]

    def target_to_source(self) -> np.ndarray:
        """(N, 2, 4, 4) true motions ``T_{s<-t}`` from the target to the sources t-1, t+1."""
        t = SNIPPET_LENGTH // 2
        out = [[relative_pose(p[t], p[s]) for s in range(SNIPPET_LENGTH) if s != t]
               for p in self.poses]
        return np.asarray(out, np.float32)


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """A pinhole ``K`` with a focal length of 0.75 * width (67 degrees wide at any size).

    Pixel ``(u, v)`` has its centre at integer coordinates: the principal point of an image
    with W columns is ``(W - 1) / 2``.
    """
    f = 0.75 * width
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float32)


def relative_pose(target_pose, source_pose) -> np.ndarray:
    """``T_{s<-t} = inv(T_s) @ T_t``: maps points from the target's camera frame to the source's."""
    return (np.linalg.inv(np.asarray(source_pose, np.float64))
            @ np.asarray(target_pose, np.float64)).astype(np.float32)


def _yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return r_yaw @ r_pitch


def _mirror(coord: np.ndarray, size: int) -> np.ndarray:
    """Mirrored tiling: seamless texture coordinates in [0, size - 1]."""
    period = 2 * (size - 1)
    c = np.mod(coord, period)
    return np.where(c > size - 1, period - c, c)


def _lookup(texture: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup at texel coordinates (s = column, t = row), mirrored tiling."""
    size = texture.shape[0]
    s, t = _mirror(s, size), _mirror(t, size)
    s0 = np.clip(np.floor(s).astype(np.int64), 0, size - 2)
    t0 = np.clip(np.floor(t).astype(np.int64), 0, size - 2)
    ws, wt = (s - s0)[:, None], (t - t0)[:, None]
    top = texture[t0, s0] * (1 - ws) + texture[t0, s0 + 1] * ws
    bottom = texture[t0 + 1, s0] * (1 - ws) + texture[t0 + 1, s0 + 1] * ws
    return top * (1 - wt) + bottom * wt


def _scene(rng: np.random.Generator) -> dict:
    """A random corridor: planes ``(axis, value, shade)`` and boxes ``(lo, hi, shades)``."""
    half_width = rng.uniform(1.6, 2.2)
    floor, ceiling = rng.uniform(0.9, 1.2), -rng.uniform(1.2, 1.7)
    end = rng.uniform(12.0, 20.0)
    planes = [(1, floor, 1.0), (1, ceiling, 0.6), (0, -half_width, 0.8), (0, half_width, 0.75),
              (2, end, 0.9)]
    boxes = []
    for _ in range(rng.integers(2, 6)):
        size = rng.uniform(0.4, 1.0, size=3)
        side = rng.choice([-1.0, 1.0])
        x = side * rng.uniform(0.7 + size[0] / 2, half_width - size[0] / 2 + 0.2)
        z = rng.uniform(4.5, end - 1.5)
        lo = np.array([x - size[0] / 2, floor - size[1], z - size[2] / 2])
        boxes.append((lo, lo + size, rng.uniform(0.55, 1.0, size=3)))
    textures = [random_crop(rng, _TEXTURE_SIZE, _TEXTURE_SIZE, names=TEXTURE_PHOTOS)
                for _ in range(len(planes) + len(boxes))]
    offsets = rng.uniform(0, 2 * _TEXTURE_SIZE, size=(len(textures), 2))
    return dict(planes=planes, boxes=boxes, textures=textures, offsets=offsets)


def _cast(scene: dict, origin: np.ndarray, directions: np.ndarray):
    """Nearest hit along each ray: (t, colour). ``directions`` (N, 3) in the world frame."""
    n = len(directions)
    best_t = np.full(n, np.inf)
    best_id = np.full(n, -1)
    best_axis = np.zeros(n, np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (axis, value, _) in enumerate(scene["planes"]):
            t = (value - origin[axis]) / directions[:, axis]
            hit = (t > 1e-6) & (t < best_t)
            best_t[hit], best_id[hit], best_axis[hit] = t[hit], k, axis
        for j, (lo, hi, _) in enumerate(scene["boxes"]):
            t1 = (lo - origin) / directions
            t2 = (hi - origin) / directions
            near, far = np.minimum(t1, t2), np.maximum(t1, t2)
            t_in, t_out = np.nanmax(near, axis=1), np.nanmin(far, axis=1)
            hit = (t_in <= t_out) & (t_in > 1e-6) & (t_in < best_t)
            best_t[hit], best_id[hit] = t_in[hit], len(scene["planes"]) + j
            best_axis[hit] = np.nanargmax(near[hit], axis=1)
    colour = np.zeros((n, 3))
    points = origin + best_t[:, None] * directions
    for k in np.unique(best_id):
        rows = best_id == k
        if k < len(scene["planes"]):
            shade = np.full(rows.sum(), scene["planes"][k][2])
        else:
            shade = scene["boxes"][k - len(scene["planes"])][2][best_axis[rows]]
        axes = best_axis[rows]
        # texture coordinates: the two world axes that lie in the hit face
        u_axis = np.where(axes == 0, 2, 0)
        v_axis = np.where(axes == 1, 2, 1)
        p = points[rows]
        s = p[np.arange(len(p)), u_axis] * _TEXELS_PER_UNIT + scene["offsets"][k, 0]
        t = p[np.arange(len(p)), v_axis] * _TEXELS_PER_UNIT + scene["offsets"][k, 1]
        colour[rows] = _lookup(scene["textures"][k], s, t) * shade[:, None]
    return best_t, colour


def render_view(scene: dict, pose: np.ndarray, intrinsics: np.ndarray, height: int, width: int,
                supersample: int = 3):
    """Renders one frame: (image float in [0, 1] (H, W, 3), depth (H, W)).

    Colour is the mean of ``supersample**2`` rays per pixel; depth is the z of the ray through
    the pixel's centre (no mixing across depth edges).
    """
    k_inv = np.linalg.inv(np.asarray(intrinsics, np.float64))
    rotation, origin = pose[:3, :3].astype(np.float64), pose[:3, 3].astype(np.float64)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    v, u = np.meshgrid(np.arange(height)[:, None] + offsets, np.arange(width)[:, None] + offsets,
                       indexing="ij")
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    _, colour = _cast(scene, origin, pixels @ k_inv.T @ rotation.T)
    image = colour.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
    v, u = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centres = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    depth, _ = _cast(scene, origin, centres @ k_inv.T @ rotation.T)  # camera rays have z = 1
    return np.clip(image, 0, 1), depth.reshape(height, width)


def _trajectory(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Camera-to-world poses of consecutive frames: forward and sideways motion, slight turns."""
    start = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.15, 0.15), rng.uniform(0.0, 1.0)])
    velocity = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.03, 0.03),
                         rng.uniform(0.2, 0.4)])
    yaw, yaw_rate = rng.uniform(-0.15, 0.15), rng.uniform(-0.04, 0.04)
    pitch = rng.uniform(-0.08, 0.08)
    poses = np.zeros((num_frames, 4, 4))
    for step in range(num_frames):
        poses[step, :3, :3] = _yaw_pitch(yaw + step * yaw_rate, pitch)
        poses[step, :3, 3] = start + step * velocity
        poses[step, 3, 3] = 1.0
    return poses


def _generate(num, height, width, seed, supersample, per_scene):
    intrinsics = default_intrinsics(height, width)
    frames = np.zeros((num, SNIPPET_LENGTH, height, width, 3), np.uint8)
    depth = np.zeros((num, SNIPPET_LENGTH, height, width), np.float32)
    poses = np.zeros((num, SNIPPET_LENGTH, 4, 4), np.float32)
    for first in range(0, num, per_scene):
        # one scene and one camera path give per_scene overlapping snippets (consecutive frames)
        rng = np.random.default_rng([int(seed), first // per_scene])
        count = min(per_scene, num - first)
        scene, trajectory = _scene(rng), _trajectory(rng, count + SNIPPET_LENGTH - 1)
        video = [render_view(scene, pose, intrinsics, height, width, supersample)
                 for pose in trajectory]
        for j in range(count):
            for f in range(SNIPPET_LENGTH):
                image, d = video[j + f]
                frames[first + j, f] = np.round(image * 255)
                depth[first + j, f] = d
            poses[first + j] = trajectory[j:j + SNIPPET_LENGTH]
    return VideoSnippets(frames, depth, poses, intrinsics)


def make_video_snippets(num_snippets: int, image_size=(48, 64), *, seed: int = 0,
                        snippets_per_scene: int = 4, supersample: int = 2,
                        cache: bool = True) -> VideoSnippets:
    """Generates (or loads from ``cache_dir()``) 3-frame snippets of ray-cast corridor video.

    Args:
        num_snippets: number of snippets (each a new scene and trajectory).
        image_size: ``(height, width)`` in pixels, or an int for square frames.
        seed: the seed; snippet ``i`` depends only on ``(seed, i // snippets_per_scene)``
            and ``i % snippets_per_scene`` (not on ``num_snippets``).
        snippets_per_scene: consecutive snippets cut from one scene's video (they share
            frames, like snippets of real video: ``k`` snippets cost ``k + 2`` renders).
        supersample: rays per pixel along each axis (2: 4 rays per pixel).
        cache: load from / save to a compressed ``.npz`` keyed by the arguments.

    Returns:
        ``VideoSnippets`` with frames, depth, poses and the intrinsics.
    """
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    if len(image_size) != 2 or min(image_size) < 8:
        raise ValueError(f"image_size must be (height, width) with both >= 8, got {image_size!r}.")
    if int(num_snippets) < 1:
        raise ValueError(f"num_snippets must be >= 1, got {num_snippets!r}.")
    if int(supersample) < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample!r}.")
    if int(snippets_per_scene) < 1:
        raise ValueError(f"snippets_per_scene must be >= 1, got {snippets_per_scene!r}.")
    height, width = map(int, image_size)
    path = None
    if cache:
        path = (cache_dir() / f"video_v{VIDEO_VERSION}_{num_snippets}_{height}x{width}"
                f"_s{seed}_k{snippets_per_scene}_ss{supersample}.npz")
        if path.exists():
            try:
                with np.load(path) as data:
                    return VideoSnippets(data["frames"], data["depth"], data["poses"],
                                         data["intrinsics"])
            except Exception:  # a partial file: regenerate
                pass
    snippets = _generate(int(num_snippets), height, width, seed, int(supersample),
                         int(snippets_per_scene))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npz")
            np.savez_compressed(tmp, frames=snippets.frames, depth=snippets.depth,
                                poses=snippets.poses, intrinsics=snippets.intrinsics)
            tmp.replace(path)
        except OSError:
            pass
    return snippets
