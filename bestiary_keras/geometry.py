"""Box geometry shared by classification + localisation (notebook 01) and detection.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixels ("xyxy") unless a name says otherwise;
``(cx, cy, w, h)`` is the centre and the size ("cxcywh"). Pixel coordinates are continuous: a
box covering the whole ``W x H`` image is ``[0, 0, W, H]`` and its area is ``W * H``.

One function per concept, for NumPy and for tensors alike: NumPy arrays, lists and numbers
give float32 NumPy arrays (evaluation, data pipelines; any leading shape, empty arrays allowed),
tensors give tensors computed with ``keras.ops`` (losses, in-graph decoding; safe gradients).
``xp(*values)`` is that choice, made in one place, and the detection toolkit
(``bestiary_keras.detection.boxes``) uses it too. ``pairwise_iou`` on tensors is
``keras.utils.bounding_boxes.compute_iou`` (the same numbers).

Degenerate boxes (zero width or height) have zero area. The IoU of two boxes whose union is
empty is defined as 0 (never NaN), so zero-size padding boxes never match anything.

``encode_window_boxes`` / ``decode_window_boxes`` are the localisation parameterisation of
notebook 01 (box centre offset and size relative to a window, e.g. the network's input window).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "box_area",
    "pairwise_iou",
    "elementwise_iou",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "clip_boxes",
    "encode_window_boxes",
    "decode_window_boxes",
    "image_height_width",
    "xp",
]


def xp(*values):
    """``numpy`` when every value is a NumPy array, a list or a number (the data side), else
    ``keras.ops`` (tensors: losses and decoding inside a model)."""
    if all(v is None or isinstance(v, (np.ndarray, np.generic, list, tuple, float, int))
           for v in values):
        return np
    from keras import ops

    return ops


def _as_boxes(boxes, name: str):
    """float32 NumPy boxes, or the tensor itself; the last axis must hold 4 coordinates."""
    if xp(boxes) is np:
        boxes = np.asarray(boxes, dtype=np.float32)
    else:
        from keras import ops

        boxes = ops.convert_to_tensor(boxes)
    shape = tuple(boxes.shape)
    if len(shape) == 0 or shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last axis of size 4 ([x_min, y_min, x_max, y_max]), "
            f"got shape {shape}. Reshape it to (..., 4)."
        )
    return boxes


def image_height_width(image_size) -> tuple[float, float]:
    """``(height, width)`` of ``image_size``: an int (a square image) or a pair (height, width)."""
    if isinstance(image_size, (int, np.integer, float, np.floating)):
        height = width = float(image_size)
    else:
        try:
            height, width = (float(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"image_size must be an int (square image) or a pair (height, width), "
                f"got {image_size!r}."
            ) from None
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}: e.g. image_size=64.")
    return height, width


def box_area(boxes):
    """Area of xyxy boxes, shape ``(...)``; inverted boxes (x_max < x_min) count as 0."""
    boxes = _as_boxes(boxes, "boxes")
    x = xp(boxes)
    width = x.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = x.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def _intersection(boxes1, boxes2):
    x = xp(boxes1, boxes2)
    top_left = x.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = x.minimum(boxes1[..., 2:], boxes2[..., 2:])
    size = x.maximum(bottom_right - top_left, 0.0)
    return size[..., 0] * size[..., 1]


def elementwise_iou(boxes1, boxes2):
    """IoU of corresponding boxes: ``boxes1[..., i, :]`` with ``boxes2[..., i, :]``.

    On tensors the division is guarded (no ``NaN`` gradient from an empty union).

    Args:
        boxes1, boxes2: xyxy boxes of broadcastable shapes ``(..., 4)``.

    Returns:
        IoUs of the broadcast leading shape (float32 NumPy for NumPy inputs).
    """
    boxes1 = _as_boxes(boxes1, "boxes1")
    boxes2 = _as_boxes(boxes2, "boxes2")
    x = xp(boxes1, boxes2)
    intersection = _intersection(boxes1, boxes2)
    union = box_area(boxes1) + box_area(boxes2) - intersection
    positive = union > 0
    return x.where(positive, intersection / x.where(positive, union, 1.0), 0.0)


def pairwise_iou(boxes1, boxes2):
    """Intersection over union of every box of ``boxes1`` with every box of ``boxes2``.

    Args:
        boxes1: ``(N, 4)`` xyxy boxes (``N`` may be 0).
        boxes2: ``(M, 4)`` xyxy boxes (``M`` may be 0).

    Returns:
        ``(N, M)`` IoUs in ``[0, 1]`` (0 where the union is empty): float32 NumPy for NumPy
        inputs; for tensors ``keras.utils.bounding_boxes.compute_iou`` (the same numbers).
    """
    boxes1 = _as_boxes(boxes1, "boxes1")
    boxes2 = _as_boxes(boxes2, "boxes2")
    if xp(boxes1, boxes2) is not np:
        from keras.utils import bounding_boxes

        return bounding_boxes.compute_iou(boxes1, boxes2, bounding_box_format="xyxy")
    return elementwise_iou(boxes1.reshape(-1, 1, 4), boxes2.reshape(1, -1, 4))


def xyxy_to_cxcywh(boxes):
    """``[x_min, y_min, x_max, y_max]`` -> ``[cx, cy, w, h]`` (any leading shape)."""
    boxes = _as_boxes(boxes, "boxes")
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    size = boxes[..., 2:] - boxes[..., :2]
    return xp(boxes).concatenate([centre, size], axis=-1)


def cxcywh_to_xyxy(boxes):
    """``[cx, cy, w, h]`` -> ``[x_min, y_min, x_max, y_max]`` (any leading shape)."""
    boxes = _as_boxes(boxes, "boxes")
    half = boxes[..., 2:] / 2.0
    return xp(boxes).concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def clip_boxes(boxes, image_size):
    """Clips xyxy boxes to the image ``[0, width] x [0, height]``.

    A box entirely outside becomes a zero-area box on the border (detect it with
    ``box_area(...) == 0``).

    Args:
        boxes: ``(..., 4)`` xyxy boxes (NumPy or tensor).
        image_size: an int (a square image) or ``(height, width)`` in pixels.

    Returns:
        Clipped boxes, same shape and kind as ``boxes``.
    """
    boxes = _as_boxes(boxes, "boxes")
    height, width = image_height_width(image_size)
    x = xp(boxes)
    limits = np.array([width, height, width, height], dtype=np.float32)
    if x is not np:
        limits = x.convert_to_tensor(limits, dtype=boxes.dtype)
    return x.minimum(x.maximum(boxes, 0.0), limits)


def _windows(windows, name="windows"):
    windows = _as_boxes(windows, name)
    return xyxy_to_cxcywh(windows)


def encode_window_boxes(boxes, windows) -> np.ndarray:
    """Box -> ``(dx, dy, w, h)`` relative to a window (notebook 01's localisation targets).

    .. math::
        d_x = \\frac{c_x - c_x^{win}}{W^{win}},\\quad d_y = \\frac{c_y - c_y^{win}}{H^{win}},
        \\quad w = \\frac{x_{max} - x_{min}}{W^{win}},\\quad h = \\frac{y_{max} - y_{min}}{H^{win}}

    ``(dx, dy)`` is the offset of the box centre from the window centre and ``(w, h)`` the box
    size, both in units of the window size: a box filling the window is ``(0, 0, 1, 1)``.

    Args:
        boxes: ``(..., 4)`` xyxy boxes in pixels.
        windows: ``(..., 4)`` xyxy windows, broadcastable against ``boxes`` (e.g. the whole
            network input ``[0, 0, S, S]``).

    Returns:
        ``(..., 4)`` float32 ``(dx, dy, w, h)``.
    """
    box = xyxy_to_cxcywh(boxes)
    win = _windows(windows)
    if np.any(win[..., 2:] <= 0):
        raise ValueError("windows must have a positive width and height; got a degenerate window.")
    return np.concatenate(
        [(box[..., :2] - win[..., :2]) / win[..., 2:], box[..., 2:] / win[..., 2:]], axis=-1
    ).astype(np.float32)


def decode_window_boxes(params, windows) -> np.ndarray:
    """Inverse of ``encode_window_boxes``: ``(dx, dy, w, h)`` in a window -> xyxy pixels.

    Negative predicted sizes are clamped to zero (a degenerate box, never an inverted one).
    """
    params = _as_boxes(params, "params")
    win = _windows(windows)
    centre = win[..., :2] + params[..., :2] * win[..., 2:]
    size = np.maximum(params[..., 2:], 0.0) * win[..., 2:]
    return cxcywh_to_xyxy(np.concatenate(np.broadcast_arrays(centre, size), axis=-1))
