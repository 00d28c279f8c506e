"""Region proposals by selective search (Uijlings et al., IJCV 2013), the input of R-CNN and
Fast R-CNN (notebooks 03 and 04).

Selective search over-segments the image (Felzenszwalb-Huttenlocher graph segmentation) and
greedily merges the most similar neighbouring regions (colour, texture, size, fill), proposing
the bounding box of every region it ever forms. We use OpenCV's implementation
(``cv2.ximgproc.segmentation``, opencv-contrib) in its "fast" mode, which diversifies over two
colour spaces and a few segmentation scales.

Proposals of a whole ``SceneSet`` are cached next to the scenes (``datasets.cache.cache_dir``), so
notebooks 03 and 04 compute them once.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from bestiary_keras.datasets.cache import save_npz_atomic

__all__ = [
    "selective_search",
    "scene_proposals",
]


def _seed_c_rand(seed: int) -> bool:
    """Seeds the C library's ``rand()``, which OpenCV's selective search ranks regions with.

    Returns ``False`` where the C library cannot be reached (the order then depends on the calls
    made before in the process).
    """
    import ctypes
    import ctypes.util

    for name in (None, ctypes.util.find_library("c"), "msvcrt"):
        try:
            ctypes.CDLL(name).srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
            return True
        except (OSError, AttributeError, TypeError):
            continue
    return False


def selective_search(image, *, mode: str = "fast", base_k: int = 50, inc_k: int = 50,
                     sigma: float = 0.8, min_size: float = 4.0, max_proposals: int | None = None,
                     seed: int | None = 0):
    """Selective-search proposals of one image, in the order OpenCV ranks them.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        mode: ``"fast"`` (the paper's fast diversification), ``"quality"`` (slower, more
            proposals) or ``"single"`` (one strategy, one segmentation: fastest).
        base_k, inc_k, sigma: graph-segmentation scale ``k`` (start and step) and Gaussian
            smoothing; OpenCV's defaults are 150 / 150 / 0.8, tuned for VOC-sized images, while
            our 64x64 scenes need finer segments (50).
        min_size: boxes narrower or lower than this many pixels are dropped.
        max_proposals: keep at most this many (None: all).
        seed: the ranking is pseudo-random, as in the paper (each region's hierarchy level
            times a random number, so that the strategies' lists interleave); OpenCV draws it
            from the C library's ``rand()``, shared by the whole process. Seeding it before each
            image makes the order depend on the image alone, not on how many images came
            before (``None`` leaves it alone).

    Returns:
        float32 ``(P, 4)`` xyxy boxes in pixels (duplicates removed).
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}; convert with .astype(np.uint8).")
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV wants BGR
    if mode == "fast":
        search.switchToSelectiveSearchFast(int(base_k), int(inc_k), float(sigma))
    elif mode == "quality":
        search.switchToSelectiveSearchQuality(int(base_k), int(inc_k), float(sigma))
    elif mode == "single":
        search.switchToSingleStrategy(int(base_k), float(sigma))
    else:
        raise ValueError(f"mode must be 'fast', 'quality' or 'single', got {mode!r}.")
    if seed is not None:
        _seed_c_rand(seed)
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # x, y, w, h
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    keep = (rects[:, 2] >= min_size) & (rects[:, 3] >= min_size)
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    if max_proposals is not None:
        boxes = boxes[: int(max_proposals)]
    return boxes.astype(np.float32)


def _cache_path(scenes, settings):
    from bestiary_keras.datasets.cache import cache_dir

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(scenes.images).tobytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return cache_dir() / f"proposals_{digest.hexdigest()[:20]}.npz"


def scene_proposals(scenes, *, cache: bool = True, verbose: bool = True, **settings):
    """Selective search on every image of a ``SceneSet`` (cached on disk).

    Args:
        scenes: a ``SceneSet`` (or anything with an ``images`` array).
        cache: load from / save to the scene cache (keyed by the images and the settings).
        verbose: print how long it took and how many proposals per image.
        **settings: ``selective_search`` arguments.

    Returns:
        A list with one float32 ``(P_i, 4)`` array per image, and the seconds spent (0 when
        loaded from the cache) as ``(proposals, seconds)``.
    """
    settings = {"mode": "fast", "base_k": 50, "inc_k": 50, "sigma": 0.8, "min_size": 4.0,
                "max_proposals": None, "seed": 0, **settings}
    path = _cache_path(scenes, settings) if cache else None
    if path is not None and path.exists():
        try:
            with np.load(path) as stored:
                boxes, counts = stored["boxes"], stored["counts"]
            out = np.split(boxes, np.cumsum(counts)[:-1]) if len(counts) else []
            if verbose:
                print(f"selective search: {len(out)} images loaded from the cache, "
                      f"{np.mean(counts):.0f} proposals per image")
            return [b.reshape(-1, 4) for b in out], 0.0
        except Exception:  # a corrupt cache file: compute again
            pass
    start = time.perf_counter()
    out = [selective_search(image, **settings) for image in scenes.images]
    seconds = time.perf_counter() - start
    if verbose:
        print(f"selective search: {len(out)} images in {seconds:.1f} s "
              f"({1000 * seconds / max(len(out), 1):.1f} ms per image), "
              f"{np.mean([len(b) for b in out]):.0f} proposals per image")
    if path is not None:  # atomic, mode 0644, no temporary file left; unwritable: not saved
        save_npz_atomic(path, boxes=np.concatenate(out + [np.zeros((0, 4), np.float32)]),
                        counts=np.array([len(b) for b in out]))
    return out, seconds
