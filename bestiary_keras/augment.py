"""Training-time augmentation of images with boxes: the VGG slide's recipe, reusable.

Simonyan & Zisserman (2015, Sec. 3.1) train on fixed-size crops of isotropically rescaled
images: the training scale ``S`` (the smallest side after rescaling) is drawn at random from a
range ("scale jittering"), a ``crop x crop`` patch is cut at a random position, flipped
horizontally with probability 1/2 and colour-augmented. ``augment_batch``'s colour
augmentation is a random permutation of the RGB channels; the papers' own colour shift
(AlexNet's PCA colour augmentation, which VGG reuses) is ``random_pca_colour_shift``, used with
the rest of the recipe by ``PCAColourBatches``. Boxes follow every step: scaled with the image,
shifted and clipped by the crop, mirrored by the flip (a channel shuffle leaves them alone).

Everything is NumPy (plus ``cv2.resize``) on uint8 batches, a few milliseconds per batch of 64
small images, and deterministic given a ``numpy.random.Generator``. ``AugmentedBatches`` wraps
it as a ``batching.SeededBatches`` for ``model.fit``: step ``i`` takes its scenes from the
shared step indices and its draws from the generator ``(seed, i)``, so a run is reproducible
whatever the number of workers.

Boxes are xyxy pixels with exclusive end (``[0, 0, W, H]`` is the whole image), shape
``(N, M, 4)`` for ``N`` images with ``M`` box slots; padding slots (all zeros) stay degenerate.
"""

from __future__ import annotations

import numpy as np

from bestiary_keras import geometry
from bestiary_keras.batching import SeededBatches

__all__ = [
    "rescale_isotropic",
    "crop",
    "random_crop_origin",
    "flip_boxes",
    "horizontal_flip",
    "flip_scenes",
    "resize_scenes",
    "random_horizontal_flip",
    "shuffle_channels",
    "random_channel_shuffle",
    "augment_batch",
    "AugmentedBatches",
    "rgb_principal_components",
    "pca_colour_shift",
    "random_pca_colour_shift",
    "PCAColourBatches",
]


def _check_batch(images, boxes):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch (N, H, W, C), got shape {images.shape}.")
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 2:
        boxes = boxes[:, None, :]
    if boxes.ndim != 3 or boxes.shape[0] != images.shape[0] or boxes.shape[-1] != 4:
        raise ValueError(
            f"boxes must be (N, M, 4) or (N, 4) with N = {images.shape[0]} images, got shape "
            f"{boxes.shape}."
        )
    return images, boxes


def rescale_isotropic(image, boxes, smallest_side: int):
    """Rescales one image, keeping its aspect ratio, so that its smallest side is ``smallest_side``.

    Args:
        image: ``(H, W, C)`` array.
        boxes: ``(M, 4)`` xyxy boxes in the image.
        smallest_side: the training scale ``S``.

    Returns:
        ``(image, boxes)``: the rescaled image (same dtype) and boxes scaled by the same factors
        (the exact ratios of the rounded new size to the old one).
    """
    import cv2

    height, width = image.shape[:2]
    if smallest_side < 1:
        raise ValueError(f"smallest_side={smallest_side!r} must be a positive size in pixels.")
    factor = smallest_side / min(height, width)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    boxes = np.asarray(boxes, np.float32)
    if (new_w, new_h) == (width, height):
        return image, boxes.copy()
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[..., None]
    scale = np.array([new_w / width, new_h / height] * 2, np.float32)
    return resized, boxes * scale


def crop(image, boxes, x0: int, y0: int, size):
    """Cuts ``image[y0:y0 + h, x0:x0 + w]`` (``size`` an int or ``(h, w)``); shifts and clips boxes.

    A box entirely outside the crop becomes a zero-area box on the crop's border.
    """
    crop_h, crop_w = (size, size) if np.isscalar(size) else size
    height, width = image.shape[:2]
    if not (0 <= x0 <= width - crop_w and 0 <= y0 <= height - crop_h):
        raise ValueError(
            f"crop at x0={x0}, y0={y0} of size {crop_h}x{crop_w} does not fit in a "
            f"{height}x{width} image; x0 must be in [0, {width - crop_w}] and y0 in "
            f"[0, {height - crop_h}]."
        )
    shifted = np.asarray(boxes, np.float32) - np.array([x0, y0, x0, y0], np.float32)
    return image[y0:y0 + crop_h, x0:x0 + crop_w], geometry.clip_boxes(shifted, (crop_h, crop_w))


def random_crop_origin(rng, image_hw, crop_size: int, keep_centre_of=None):
    """Draws the top-left corner ``(x0, y0)`` of a ``crop_size`` square crop, uniformly.

    Args:
        rng: a ``numpy.random.Generator``.
        image_hw: ``(height, width)`` of the image.
        crop_size: side of the crop.
        keep_centre_of: an optional xyxy box whose centre must fall inside the crop (so that a
            single-object scene keeps its object); ignored when it has zero area.

    Returns:
        ``(x0, y0)`` ints.
    """
    height, width = image_hw
    if crop_size > min(height, width):
        raise ValueError(f"crop_size={crop_size} is larger than the image ({height}x{width}).")
    lows, highs = [0, 0], [width - crop_size, height - crop_size]
    if keep_centre_of is not None and geometry.box_area(keep_centre_of) > 0:
        centre = geometry.xyxy_to_cxcywh(keep_centre_of)[:2]
        for axis in (0, 1):
            # x0 <= c < x0 + crop  <=>  c - crop < x0 <= c
            lows[axis] = max(lows[axis], int(np.floor(centre[axis] - crop_size)) + 1)
            highs[axis] = min(highs[axis], int(np.floor(centre[axis])))
            if lows[axis] > highs[axis]:  # cannot happen for a centre inside the image
                lows[axis] = highs[axis] = min(max(highs[axis], 0), (width, height)[axis] - crop_size)
    return int(rng.integers(lows[0], highs[0] + 1)), int(rng.integers(lows[1], highs[1] + 1))


def flip_boxes(boxes, width, valid=None):
    """Mirrors xyxy boxes left-right in an image ``width`` pixels wide: ``x -> W - x``
    (``x_min`` and ``x_max`` swap). NumPy arrays or tensors (``geometry.xp``).

    Args:
        boxes: ``(..., 4)`` xyxy boxes.
        width: the image width in pixels.
        valid: bool ``(...)``: only these boxes move (padding stays as it is); default: the
            boxes of positive width.
    """
    x = geometry.xp(boxes)
    flipped = x.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0],
                       boxes[..., 3]], axis=-1)
    if valid is None:
        valid = (boxes[..., 2] - boxes[..., 0]) > 0
    return x.where(valid[..., None], flipped, boxes)


def horizontal_flip(images, boxes):
    """Mirrors a batch left-right: ``x -> W - x`` for the boxes (``x_min`` and ``x_max`` swap).

    Args:
        images: ``(N, H, W, C)``.
        boxes: ``(N, M, 4)`` (or ``(N, 4)``) xyxy boxes.

    Returns:
        ``(images, boxes)`` flipped, boxes of shape ``(N, M, 4)``; padding slots (all zeros)
        stay all-zero.
    """
    images, boxes = _check_batch(images, boxes)
    flipped = flip_boxes(boxes, np.float32(images.shape[2]), ~np.all(boxes == 0, axis=-1))
    return images[:, :, ::-1], flipped


def flip_scenes(images, boxes, *, horizontal: bool = False, vertical: bool = False,
                transpose: bool = False):
    """Flips (and/or transposes) square images and their xyxy pixel boxes together.

    The eight combinations are the symmetries of the square; the generated shapes keep their
    class under all of them, so they are label-preserving augmentations (YOLO, notebooks 06
    and 07). Padding rows are moved too: mask them by label, their coordinates are not used.

    Args:
        images: ``(N, H, W, 3)`` with ``H == W``.
        boxes: ``(N, M, 4)`` xyxy pixel boxes.
        horizontal, vertical: mirror left-right / top-bottom.
        transpose: swap the x and y axes (applied first).

    Returns:
        ``(images, boxes)`` as new NumPy arrays.
    """
    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32).copy()
    size = images.shape[2]
    if images.shape[1] != size:
        raise ValueError(f"flip_scenes needs square images, got {images.shape[1]}x{size}.")
    if transpose:
        images = np.swapaxes(images, 1, 2)
        boxes = boxes[..., [1, 0, 3, 2]]
    if horizontal:
        images = images[:, :, ::-1]
        boxes[..., [0, 2]] = size - boxes[..., [2, 0]]
    if vertical:
        images = images[:, ::-1]
        boxes[..., [1, 3]] = size - boxes[..., [3, 1]]
    return np.ascontiguousarray(images), boxes


def resize_scenes(images, boxes, size: int):
    """Resizes a batch of square images to ``size x size`` (``rescale_isotropic`` on each) and
    scales their boxes by the same factor."""
    images = np.asarray(images)
    boxes = np.asarray(boxes, np.float32)
    if images.shape[1] == size:
        return images, boxes
    resized = [rescale_isotropic(image, image_boxes, size) for image, image_boxes
               in zip(images, boxes)]
    return (np.stack([r[0] for r in resized]).reshape((len(images), size, size) + images.shape[3:]),
            np.stack([r[1] for r in resized]).reshape(boxes.shape))


def random_horizontal_flip(images, boxes, rng, probability: float = 0.5):
    """Flips each image (and its boxes) with ``probability``; returns ``(images, boxes, flipped)``."""
    images, boxes = _check_batch(images, boxes)
    flip = rng.random(len(images)) < probability
    images, boxes = images.copy(), boxes.copy()
    if flip.any():
        images[flip], boxes[flip] = horizontal_flip(images[flip], boxes[flip])
    return images, boxes, flip


def shuffle_channels(images, permutations):
    """Reorders the colour channels of each image: ``out[n, ..., k] = images[n, ..., perm[n, k]]``.

    Args:
        images: ``(N, H, W, C)``.
        permutations: ``(N, C)`` integer permutations of ``range(C)`` (or one ``(C,)`` for all).
    """
    images = np.asarray(images)
    permutations = np.asarray(permutations)
    if permutations.ndim == 1:
        permutations = np.broadcast_to(permutations, (len(images), permutations.shape[0]))
    channels = images.shape[-1]
    if permutations.shape != (len(images), channels) or np.any(
            np.sort(permutations, axis=1) != np.arange(channels)):
        raise ValueError(
            f"permutations must be ({len(images)}, {channels}) permutations of "
            f"range({channels}), got {permutations.tolist() if permutations.size < 20 else permutations.shape}."
        )
    return np.take_along_axis(images, permutations[:, None, None, :], axis=-1)


def random_channel_shuffle(images, rng):
    """Applies an independent random permutation of the colour channels to each image.

    Returns:
        ``(images, permutations)``.
    """
    images = np.asarray(images)
    permutations = rng.permuted(np.tile(np.arange(images.shape[-1]), (len(images), 1)), axis=1)
    return shuffle_channels(images, permutations), permutations


def augment_batch(images, boxes, rng, *, crop_size: int, scale_range, flip: bool = True,
                  channel_shuffle: bool = True, keep_object: bool = True):
    """The slide's recipe on one batch: rescale (S random), crop, flip, shuffle channels.

    Args:
        images: ``(N, H, W, 3)`` uint8 images.
        boxes: ``(N, M, 4)`` or ``(N, 4)`` xyxy pixel boxes (zeros for padding slots).
        rng: a ``numpy.random.Generator``.
        crop_size: side of the square training crop (the network input size).
        scale_range: ``(S_min, S_max)``: the smallest image side after rescaling is drawn
            uniformly (integers) in this range, ``S_min >= crop_size``. ``(S, S)`` is
            single-scale training.
        flip: flip horizontally with probability 1/2.
        channel_shuffle: randomly permute the RGB channels.
        keep_object: the crop always contains the centre of the first box (padding ignored),
            so that a single-object scene never loses its object entirely.

    Returns:
        ``(images, boxes)``: ``(N, crop_size, crop_size, 3)`` uint8 and ``(N, M, 4)`` float32
        boxes in crop pixels (clipped by the crop).
    """
    images, boxes = _check_batch(images, boxes)
    s_min, s_max = (int(v) for v in scale_range)
    if not crop_size <= s_min <= s_max:
        raise ValueError(
            f"scale_range={tuple(scale_range)!r} with crop_size={crop_size}: need "
            f"crop_size <= S_min <= S_max (the crop is cut from the rescaled image)."
        )
    scales = rng.integers(s_min, s_max + 1, size=len(images))
    out_images = np.empty((len(images), crop_size, crop_size, images.shape[-1]), images.dtype)
    out_boxes = np.empty_like(boxes)
    for n, (image, image_boxes, scale) in enumerate(zip(images, boxes, scales)):
        image, image_boxes = rescale_isotropic(image, image_boxes, int(scale))
        x0, y0 = random_crop_origin(rng, image.shape[:2], crop_size,
                                    image_boxes[0] if keep_object else None)
        out_images[n], out_boxes[n] = crop(image, image_boxes, x0, y0, crop_size)
    out_boxes[np.all(boxes == 0, axis=-1)] = 0.0  # padding slots stay all-zero
    if flip:
        out_images, out_boxes, _ = random_horizontal_flip(out_images, out_boxes, rng)
    if channel_shuffle:
        out_images, _ = random_channel_shuffle(out_images, rng)
    return out_images, out_boxes


class AugmentedBatches(SeededBatches):
    """Freshly augmented batches for ``model.fit``: a ``batching.SeededBatches``.

    Batch ``i`` of epoch ``e`` is global step ``g = e * steps + i``: it takes that step's
    scenes from the shared shuffled passes (``batching.step_indices``), augments them with
    ``augment_batch`` drawing from the step's generator ``(seed, g)`` and turns them into
    ``(x, y)`` with ``encode``. Every epoch brings new batches, and two runs with the same seed
    see the same ones. So ``model.fit(data, epochs=E, shuffle=False)`` trains for
    ``E * steps`` steps (one log line per epoch with ``verbose=2``).

    Args:
        images, boxes, labels: the training scenes (``labels`` ``(N, M)`` or ``(N,)``).
        encode: ``encode(images_uint8, boxes, labels) -> (x, y)`` (e.g. preprocessing and
            ``vgg_protocol.localisation_targets``).
        batch_size, steps, seed: images per batch, batches per epoch, the seed.
        crop_size, scale_range, flip, channel_shuffle, keep_object: see ``augment_batch``.
        **kwargs: passed to ``SeededBatches`` (``workers``, ``use_multiprocessing``).
    """

    def __init__(self, images, boxes, labels, encode, *, batch_size: int, steps: int,
                 seed: int = 0, crop_size: int, scale_range, flip: bool = True,
                 channel_shuffle: bool = True, keep_object: bool = True, **kwargs):
        self.images, self.boxes = _check_batch(images, boxes)
        self.labels = np.asarray(labels)
        if len(self.labels) != len(self.images):
            raise ValueError(f"labels has {len(self.labels)} rows for {len(self.images)} images.")
        super().__init__(len(self.images), batch_size=batch_size, steps=steps, seed=seed,
                         **kwargs)
        self.encode = encode
        self.augment_kwargs = dict(crop_size=crop_size, scale_range=scale_range, flip=flip,
                                   channel_shuffle=channel_shuffle, keep_object=keep_object)

    def augmented(self, indices, rng):
        """The augmented ``(images, boxes, labels)`` of scenes ``indices`` (uint8, before
        ``encode``), the augmentation drawn from ``rng``."""
        images, boxes = augment_batch(self.images[indices], self.boxes[indices], rng,
                                      **self.augment_kwargs)
        return images, boxes, self.labels[indices]

    def make_batch(self, indices, rng):
        return self.encode(*self.augmented(indices, rng))


# ------------------------------------------------------------------ AlexNet's PCA colour shift
def rgb_principal_components(images, *, pixel_range: float = 255.0, max_pixels: int = 1_000_000,
                             seed: int = 0):
    """Eigenvalues and eigenvectors of the 3x3 covariance of RGB pixel values over a set of images.

    The statistics of AlexNet's colour augmentation (Krizhevsky et al. 2012, Sec. 4.1), which
    VGG reuses: PCA of the RGB values of all training pixels. Pixel values are divided by
    ``pixel_range`` first (the paper does not say on which scale; on ``[0, 1]`` the formula
    of ``pca_colour_shift`` gives shifts of a few grey levels, on ``[0, 255]`` of hundreds).

    Args:
        images: ``(..., 3)`` array of pixels (e.g. ``(N, H, W, 3)`` uint8).
        pixel_range: the value that maps to 1 (255 for uint8 images).
        max_pixels: at most this many pixels, drawn at random with ``seed``, enter the estimate.

    Returns:
        ``(eigenvalues, eigenvectors)``: ``(3,)`` in decreasing order (variances on the
        ``[0, 1]`` scale) and ``(3, 3)`` with the unit eigenvector ``p_i`` in column ``i``.
    """
    pixels = np.asarray(images).reshape(-1, np.asarray(images).shape[-1]).astype(np.float64)
    if pixels.shape[-1] != 3 or len(pixels) < 2:
        raise ValueError(f"images must hold at least 2 RGB pixels (..., 3), got shape "
                         f"{np.asarray(images).shape}.")
    if pixel_range <= 0:
        raise ValueError(f"pixel_range={pixel_range!r} must be > 0 (255 for uint8 images).")
    if len(pixels) > max_pixels:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), max_pixels, replace=False)]
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(pixels / pixel_range, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    return eigenvalues[order], eigenvectors[:, order]


def pca_colour_shift(images, alphas, eigenvalues, eigenvectors, *, pixel_range: float = 255.0):
    """Adds AlexNet's colour shift to every pixel of each image (deterministic part).

    .. math::
        I_{xy} \\leftarrow I_{xy} + [p_1, p_2, p_3]\\,[\\alpha_1 \\lambda_1,
        \\alpha_2 \\lambda_2, \\alpha_3 \\lambda_3]^T

    with ``p_i``, ``lambda_i`` the eigenvectors and eigenvalues of the RGB covariance
    (``rgb_principal_components``, on the ``[0, 1]`` scale) and one ``alpha`` triple per image:
    the same shift for all pixels of an image. The shift is computed on the ``[0, 1]`` scale,
    multiplied by ``pixel_range``, added, rounded and clipped to ``[0, pixel_range]``.

    Args:
        images: ``(N, H, W, 3)`` (uint8 images keep their dtype).
        alphas: ``(N, 3)`` (or ``(3,)`` for all images).
        eigenvalues: ``(3,)``; eigenvectors: ``(3, 3)`` with ``p_i`` in column ``i``.

    Returns:
        The shifted images, same shape and dtype.
    """
    images = np.asarray(images)
    eigenvalues = np.asarray(eigenvalues, np.float64)
    eigenvectors = np.asarray(eigenvectors, np.float64)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be a batch of RGB images (N, H, W, 3), got {images.shape}.")
    if eigenvalues.shape != (3,) or eigenvectors.shape != (3, 3):
        raise ValueError(f"eigenvalues must be (3,) and eigenvectors (3, 3), got "
                         f"{eigenvalues.shape} and {eigenvectors.shape}.")
    alphas = np.broadcast_to(np.asarray(alphas, np.float64), (len(images), 3))
    shifts = (alphas * eigenvalues) @ eigenvectors.T * pixel_range  # (N, 3): p @ (alpha*lambda)
    shifted = images.astype(np.float64) + shifts[:, None, None, :]
    if np.issubdtype(images.dtype, np.integer):
        shifted = np.rint(shifted)
    return np.clip(shifted, 0, pixel_range).astype(images.dtype)


def random_pca_colour_shift(images, rng, eigenvalues, eigenvectors, *, alpha_std: float = 0.1,
                            pixel_range: float = 255.0):
    """``pca_colour_shift`` with ``alpha_i ~ N(0, alpha_std^2)`` drawn once per image (AlexNet:
    ``alpha_std = 0.1``, a new draw each time the image is used).

    Returns:
        ``(images, alphas)``.
    """
    if alpha_std < 0:
        raise ValueError(f"alpha_std={alpha_std!r} must be >= 0 (AlexNet's is 0.1).")
    alphas = rng.normal(0.0, alpha_std, size=(len(images), 3))
    return pca_colour_shift(images, alphas, eigenvalues, eigenvectors,
                            pixel_range=pixel_range), alphas


class PCAColourBatches(AugmentedBatches):
    """``AugmentedBatches`` with AlexNet's PCA colour shift instead of the channel shuffle.

    Each batch: rescale (``S`` random), crop, flip (``augment_batch`` with
    ``channel_shuffle=False``), then ``random_pca_colour_shift`` with the training set's
    principal components, all drawn from the step's generator: the VGG slide's recipe.

    Args:
        eigenvalues, eigenvectors: from ``rgb_principal_components(training_images)``.
        alpha_std: AlexNet's 0.1.
        Everything else as ``AugmentedBatches`` (``channel_shuffle`` is not accepted).
    """

    def __init__(self, images, boxes, labels, encode, *, eigenvalues, eigenvectors,
                 alpha_std: float = 0.1, **kwargs):
        if "channel_shuffle" in kwargs:
            raise ValueError("PCAColourBatches replaces the channel shuffle by the PCA colour "
                             "shift; use AugmentedBatches for channel_shuffle.")
        super().__init__(images, boxes, labels, encode, channel_shuffle=False, **kwargs)
        self.eigenvalues = np.asarray(eigenvalues, np.float64)
        self.eigenvectors = np.asarray(eigenvectors, np.float64)
        if alpha_std < 0:
            raise ValueError(f"alpha_std={alpha_std!r} must be >= 0 (AlexNet's is 0.1).")
        self.alpha_std = float(alpha_std)

    def augmented(self, indices, rng):
        images, boxes, labels = super().augmented(indices, rng)
        images, _ = random_pca_colour_shift(images, rng, self.eigenvalues, self.eigenvectors,
                                            alpha_std=self.alpha_std)
        return images, boxes, labels
