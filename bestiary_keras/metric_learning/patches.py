"""Patches of the same scene point under viewpoint and lighting change (notebooks 15 and 17).

Learned descriptors are trained on patches centred on the same 3D point in two images (Brown
et al.'s "Multi-view stereo correspondence" data, used by Simo-Serra et al. and LIFT, comes from
structure from motion). Offline we make the same kind of data from scikit-image's bundled
photos (``bestiary_keras.datasets.photos``): a second view of a photo is the photo warped by a
random homography (a plane seen from another viewpoint) with a random change of brightness,
contrast, gamma and noise; the homography tells exactly where each point went.

- ``random_homography`` / ``photometric_change`` / ``make_view``: the second view.
- ``detect_points``: difference-of-Gaussians (SIFT) points of the first view, the "feature
  points" whose patches are matched (as the SfM points of the real data are).
- ``extract_patches``: square patches centred on sub-pixel points (``cv2.getRectSubPix``);
  ``normalize_patches``: zero mean, unit standard deviation per patch.
- ``make_patch_pairs``: matching and non-matching pairs (notebook 15).
- ``make_quadruplets``: LIFT's training quadruplets ``P1, P2`` (same point), ``P3`` (another
  point), ``P4`` (no feature point) (notebook 17).
- ``make_image_pairs``: whole image pairs with their homography, for evaluating detectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bestiary_keras.datasets.photos import load_photo

__all__ = [
    "Correspondences", "detect_points", "extract_patches", "grey_photo", "local_rotation_deg",
    "make_image_pairs", "make_patch_pairs", "make_quadruplets", "make_view", "normalize_patches",
    "photometric_change", "random_homography", "sample_correspondences", "sift_descriptors",
    "TEST_PHOTOS", "TRAIN_PHOTOS",
]

TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "camera", "brick", "grass",
                "immunohistochemistry", "hubble_deep_field")
"""Photos the patch descriptors are trained on."""

TEST_PHOTOS = ("rocket", "coins", "gravel", "moon")
"""Held-out photos: the test pairs show scenes never seen in training."""


def grey_photo(name: str) -> np.ndarray:
    """A bundled photo as float32 grey levels in [0, 1], shape ``(H, W)``."""
    rgb = load_photo(name).astype(np.float32) / 255.0
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def random_homography(rng: np.random.Generator, shape, *, rotation_deg: float = 15.0,
                      scale=(0.8, 1.25), shear: float = 0.1, perspective: float = 0.2,
                      shift: float = 0.05) -> np.ndarray:
    """A random homography about the image centre: another viewpoint of a planar scene.

    ``H = T(c + t) P R(theta) S A T(-c)`` with a rotation ``theta`` uniform in
    ``+-rotation_deg``, an isotropic scale log-uniform in ``scale``, a shear of up to
    ``shear``, a perspective part that changes the local scale by up to ``+-perspective/2``
    across the image, and a translation ``t`` of up to ``shift`` times the image size.

    Args:
        rng: NumPy generator.
        shape: ``(height, width)`` of the image.

    Returns:
        float64 ``(3, 3)``, mapping ``(x, y, 1)`` of view 1 to view 2.
    """
    h, w = shape[:2]
    if h < 2 or w < 2:
        raise ValueError(f"shape must be an image size (height, width), got {shape!r}.")
    cx, cy = (w - 1) / 2, (h - 1) / 2
    theta = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    s = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))
    k = rng.uniform(-shear, shear)
    px, py = rng.uniform(-perspective, perspective, 2) / np.array([w, h])
    tx, ty = rng.uniform(-shift, shift, 2) * np.array([w, h])
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    affine = np.array([[s * np.cos(theta), -s * np.sin(theta), 0],
                       [s * np.sin(theta), s * np.cos(theta), 0], [0, 0, 1]]) @ np.array(
        [[1, k, 0], [0, 1, 0], [0, 0, 1]])
    projective = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]])
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]])
    return back @ projective @ affine @ to_origin


def photometric_change(rng: np.random.Generator, image: np.ndarray, *, gain=(0.6, 1.4),
                       bias: float = 0.1, gamma=(0.7, 1.4), noise: float = 0.02) -> np.ndarray:
    """A lighting change: ``(gain * x + bias) ** gamma`` plus Gaussian noise, clipped to [0, 1]."""
    out = rng.uniform(*gain) * image + rng.uniform(-bias, bias)
    out = np.clip(out, 0, 1) ** np.exp(rng.uniform(np.log(gamma[0]), np.log(gamma[1])))
    out = out + rng.normal(0, noise, image.shape)
    return np.clip(out, 0, 1).astype(np.float32)


def make_view(rng: np.random.Generator, image: np.ndarray, homography: np.ndarray,
              **photometric) -> np.ndarray:
    """``image`` warped by ``homography`` (same size, black outside) with a lighting change."""
    import cv2

    h, w = image.shape[:2]
    warped = cv2.warpPerspective(image, homography, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return photometric_change(rng, warped, **photometric)


def detect_points(image: np.ndarray, max_points: int = 300, *, border: int = 16,
                  min_distance: float = 4.0) -> np.ndarray:
    """SIFT (difference-of-Gaussians) points of a grey image, strongest first.

    Args:
        image: float grey image in [0, 1].
        max_points: keep at most this many.
        border: drop points closer than this to the image edge.
        min_distance: drop a point closer than this to a stronger one.

    Returns:
        float32 ``(K, 2)`` as ``(x, y)``.
    """
    import cv2

    sift = cv2.SIFT_create()
    keypoints = sift.detect((np.clip(image, 0, 1) * 255).astype(np.uint8), None)
    keypoints = sorted(keypoints, key=lambda k: -k.response)
    h, w = image.shape[:2]
    kept = []
    for k in keypoints:
        x, y = k.pt
        if not (border <= x < w - border and border <= y < h - border):
            continue
        if any((x - a) ** 2 + (y - b) ** 2 < min_distance ** 2 for a, b in kept):
            continue
        kept.append((x, y))
        if len(kept) == max_points:
            break
    return np.asarray(kept, np.float32).reshape(-1, 2)


def extract_patches(image: np.ndarray, points, patch_size: int) -> np.ndarray:
    """Square grey patches centred on sub-pixel ``points`` ``(K, 2)`` as ``(x, y)``.

    Pixels outside the image repeat the border (``cv2.getRectSubPix``). Returns float32
    ``(K, patch_size, patch_size)``.
    """
    import cv2

    image = np.asarray(image, np.float32)
    points = np.asarray(points, np.float32).reshape(-1, 2)
    out = np.empty((len(points), patch_size, patch_size), np.float32)
    # getRectSubPix puts the centre at (size - 1) / 2: shift so that the point is at
    # patch_size / 2, the centre used everywhere else (crops, softargmax, the patch grid).
    for i, (x, y) in enumerate(points):
        out[i] = cv2.getRectSubPix(image, (patch_size, patch_size),
                                   (float(x) - 0.5, float(y) - 0.5))
    return out


def normalize_patches(patches, epsilon: float = 1e-3) -> np.ndarray:
    """Per-patch zero mean and unit standard deviation, with a trailing channel axis.

    Args:
        patches: ``(K, S, S)`` or ``(K, S, S, 1)``.

    Returns:
        float32 ``(K, S, S, 1)``.
    """
    p = np.asarray(patches, np.float32)
    if p.ndim == 3:
        p = p[..., None]
    if p.ndim != 4 or p.shape[-1] != 1:
        raise ValueError(f"patches must be (K, S, S) or (K, S, S, 1), got shape {p.shape}.")
    mean = p.mean(axis=(1, 2, 3), keepdims=True)
    std = p.std(axis=(1, 2, 3), keepdims=True)
    return (p - mean) / (std + epsilon)


@dataclass
class Correspondences:
    """Patches of the same points in two views, with where they came from.

    Attributes:
        patches_1, patches_2: float32 ``(K, S, S)``: view 1 around each point, view 2 around
            its projection (the view-2 patch is axis-aligned in view 2, so it shows the local
            rotation, scale, shear and lighting change).
        points_1, points_2: ``(K, 2)`` centres in each view.
        group: ``(K,)`` index of the view pair the point belongs to.
        photo: ``(K,)`` index into the photo names.
        point_id: ``(K,)`` a unique id per scene point (photo and point index).
        angle: ``(K,)`` rotation of the homography at the point, in degrees.
    """

    patches_1: np.ndarray
    patches_2: np.ndarray
    points_1: np.ndarray
    points_2: np.ndarray
    group: np.ndarray
    photo: np.ndarray
    point_id: np.ndarray
    angle: np.ndarray

    def __len__(self):
        return len(self.patches_1)


def local_rotation_deg(homography, points) -> np.ndarray:
    """Rotation (degrees) of the homography's local linear map at each ``(x, y)`` point."""
    from bestiary_keras.metric_learning.evaluation import project_points

    points = np.asarray(points, np.float64).reshape(-1, 2)
    moved = project_points(points + np.array([1.0, 0.0]), homography)
    base = project_points(points, homography)
    d = moved - base
    return np.rad2deg(np.arctan2(d[:, 1], d[:, 0]))


def sample_correspondences(rng: np.random.Generator, names=TRAIN_PHOTOS, *,
                           views_per_photo: int = 4, points_per_view: int = 100,
                           patch_size: int = 32, max_points: int = 400, border: int = 8,
                           homography_kwargs=None, photometric_kwargs=None) -> Correspondences:
    """Random second views of each photo and the patches of the points both views see.

    For every photo, ``views_per_photo`` random homographies and lighting changes make second
    views; up to ``points_per_view`` of the photo's DoG points (of ``max_points``) whose
    projection lies inside the second view are drawn for each.
    """
    if views_per_photo < 1 or points_per_view < 1:
        raise ValueError(f"views_per_photo and points_per_view must be >= 1, got "
                         f"{views_per_photo} and {points_per_view}.")
    from bestiary_keras.metric_learning.evaluation import project_points

    half = patch_size / 2 + border
    fields = {k: [] for k in Correspondences.__dataclass_fields__}
    group = 0
    for photo_index, name in enumerate(names):
        image = grey_photo(name)
        h, w = image.shape
        points = detect_points(image, max_points, border=int(np.ceil(half)))
        for _ in range(views_per_photo):
            homography = random_homography(rng, (h, w), **(homography_kwargs or {}))
            view = make_view(rng, image, homography, **(photometric_kwargs or {}))
            projected = project_points(points, homography)
            inside = np.flatnonzero((projected[:, 0] >= half) & (projected[:, 0] < w - half)
                                    & (projected[:, 1] >= half) & (projected[:, 1] < h - half))
            chosen = rng.permutation(inside)[:points_per_view]
            if chosen.size == 0:
                continue
            fields["patches_1"].append(extract_patches(image, points[chosen], patch_size))
            fields["patches_2"].append(extract_patches(view, projected[chosen], patch_size))
            fields["points_1"].append(points[chosen])
            fields["points_2"].append(projected[chosen].astype(np.float32))
            fields["group"].append(np.full(chosen.size, group))
            fields["photo"].append(np.full(chosen.size, photo_index))
            fields["point_id"].append(photo_index * 100_000 + chosen)
            fields["angle"].append(local_rotation_deg(homography, points[chosen]))
            group += 1
    if not fields["patches_1"]:
        raise ValueError("no point was visible in any second view; use larger photos, a "
                         "smaller patch_size or milder homographies.")
    return Correspondences(**{k: np.concatenate(v) for k, v in fields.items()})


def _partners_in_group(corr, rng) -> np.ndarray:
    """For every correspondence, the index of another one of the same view pair (``group``),
    at a random non-zero shift within its group; itself in a group of one."""
    partner = np.arange(len(corr))
    for g in np.unique(corr.group):
        members = np.flatnonzero(corr.group == g)
        if members.size > 1:
            shift = rng.integers(1, members.size, members.size)
            partner[members] = members[(np.arange(members.size) + shift) % members.size]
    return partner


def make_patch_pairs(corr: Correspondences, rng: np.random.Generator,
                     positive_fraction: float = 0.5):
    """Matching and non-matching patch pairs from correspondences.

    A matching pair is a point's view-1 patch with its own view-2 patch; a non-matching pair is
    a view-1 patch with the view-2 patch of another scene point of the same view pair (the same
    photo, so same texture statistics and lighting: harder than a random patch).

    Returns:
        ``(patches_a, patches_b, labels)``: float32 ``(N, S, S)`` twice and float32 ``(N,)``
        (1 = same point, 0 = different), ``N = len(corr)``.
    """
    n = len(corr)
    labels = (rng.random(n) < positive_fraction).astype(np.float32)
    partner = _partners_in_group(corr, rng)
    negative = (labels == 0) & (corr.point_id[partner] != corr.point_id)
    labels[(labels == 0) & ~negative] = 1  # a group of one point: no negative available
    second = np.where(negative, partner, np.arange(n))
    return corr.patches_1, corr.patches_2[second], labels


def sift_descriptors(patches, *, keypoint_size: float | None = None, angle: float = 0.0):
    """OpenCV SIFT descriptors of patches, computed at each patch centre.

    The keypoint is upright (``angle`` degrees, 0 by default) and of size ``patch_size / 4``
    (the descriptor's 4x4 cells of 3 sigma then cover about the patch); patches are taken as
    grey levels in [0, 1] or any range (rescaled per patch to 0-255).

    Returns:
        float32 ``(K, 128)``.
    """
    import cv2

    patches = np.asarray(patches, np.float32)
    if patches.ndim == 4:
        patches = patches[..., 0]
    size = patches.shape[1]
    sift = cv2.SIFT_create()
    keypoint_size = size / 4 if keypoint_size is None else keypoint_size
    out = np.zeros((len(patches), 128), np.float32)
    for i, p in enumerate(patches):
        lo, hi = p.min(), p.max()
        img = ((p - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
        kp = [cv2.KeyPoint(size / 2, size / 2, keypoint_size, angle)]
        _, desc = sift.compute(img, kp)
        if desc is not None and len(desc):
            out[i] = desc[0]
    return out


def make_quadruplets(corr: Correspondences, rng: np.random.Generator, names=TRAIN_PHOTOS, *,
                     min_distance_from_points: float = 8.0):
    """LIFT's training quadruplets from correspondences (one per point).

    ``P1, P2``: the same point in view 1 and view 2; ``P3``: another scene point (view 1 of a
    different point of the same view pair); ``P4``: a view-1 patch of the same photo centred
    at least ``min_distance_from_points`` pixels away from every DoG point (no feature point).

    Returns:
        float32 ``(K, 4, S, S)`` with ``P1..P4`` along axis 1.
    """
    from scipy.spatial import cKDTree

    size = corr.patches_1.shape[1]
    partner = _partners_in_group(corr, rng)
    p4 = np.empty_like(corr.patches_1)
    for photo_index in np.unique(corr.photo):
        rows = np.flatnonzero(corr.photo == photo_index)
        image = grey_photo(names[photo_index])
        h, w = image.shape
        points = detect_points(image, 2000, border=0, min_distance=0.0)
        tree = cKDTree(points) if len(points) else None
        half = size / 2 + 1
        centres = []
        while len(centres) < rows.size:
            c = rng.uniform([half, half], [w - half, h - half], (4 * rows.size, 2))
            d = tree.query(c)[0] if tree is not None else np.full(len(c), np.inf)
            centres.extend(c[d >= min_distance_from_points])
        p4[rows] = extract_patches(image, np.asarray(centres[:rows.size]), size)
    return np.stack([corr.patches_1, corr.patches_2, corr.patches_1[partner], p4], axis=1)


def make_image_pairs(rng: np.random.Generator, names=TEST_PHOTOS, *, pairs_per_photo: int = 1,
                     size: int = 256, homography_kwargs=None, photometric_kwargs=None):
    """Image pairs with their homography for evaluating detectors and descriptors.

    View 1 is a random ``size x size`` crop of a photo (grey, [0, 1]); view 2 is that crop
    warped by a random homography with a lighting change.

    Returns:
        A list of ``(image_1, image_2, homography)``.
    """
    out = []
    for name in names:
        image = grey_photo(name)
        h, w = image.shape
        if h < size or w < size:
            raise ValueError(f"photo {name!r} is {h}x{w}, smaller than size={size}.")
        for _ in range(pairs_per_photo):
            y0, x0 = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            crop = np.ascontiguousarray(image[y0:y0 + size, x0:x0 + size])
            homography = random_homography(rng, crop.shape, **(homography_kwargs or {}))
            out.append((crop, make_view(rng, crop, homography, **(photometric_kwargs or {})),
                        homography))
    return out
