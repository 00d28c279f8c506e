"""Box geometry shared by classification + localisation (notebook 01) and detection.

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixels ("xyxy") unless a name says otherwise;
``(cx, cy, w, h)`` is the centre and the size ("cxcywh"). Pixel coordinates are continuous: a
box covering the whole ``W x H`` image is ``[0, 0, W, H]`` and its area is ``W * H``.

Two families with the same names:

- NumPy (``pairwise_iou``, ``elementwise_iou``, ``xyxy_to_cxcywh``, ...): evaluation, data
  pipelines, merging. Vectorised, any leading shape, empty arrays allowed.
- ``keras.ops`` (``ops_pairwise_iou``, ``ops_elementwise_iou``, ``ops_xyxy_to_cxcywh``, ...):
  the same formulas on tensors, for losses and in-graph decoding.

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
    "ops_box_area",
    "ops_pairwise_iou",
    "ops_elementwise_iou",
    "ops_xyxy_to_cxcywh",
    "ops_cxcywh_to_xyxy",
    "ops_clip_boxes",
]


def _as_boxes(boxes, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have a last axis of size 4 ([x_min, y_min, x_max, y_max]), "
            f"got shape {boxes.shape}. Reshape it to (..., 4)."
        )
    return boxes


# ----------------------------------------------------------------------------- NumPy


def box_area(boxes) -> np.ndarray:
    """Area of xyxy boxes, shape ``(...)``; inverted boxes (x_max < x_min) count as 0."""
    boxes = _as_boxes(boxes, "boxes")
    width = np.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = np.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def _safe_ratio(intersection, union):
    out = np.zeros(np.broadcast(intersection, union).shape, dtype=np.float32)
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def pairwise_iou(boxes1, boxes2) -> np.ndarray:
    """Intersection over union of every box of ``boxes1`` with every box of ``boxes2``.

    Args:
        boxes1: ``(N, 4)`` xyxy boxes (``N`` may be 0).
        boxes2: ``(M, 4)`` xyxy boxes (``M`` may be 0).

    Returns:
        ``(N, M)`` float32 array of IoUs in ``[0, 1]`` (0 where the union is empty).
    """
    boxes1 = _as_boxes(boxes1, "boxes1").reshape(-1, 4)
    boxes2 = _as_boxes(boxes2, "boxes2").reshape(-1, 4)
    top_left = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    size = np.maximum(bottom_right - top_left, 0.0)
    intersection = size[..., 0] * size[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - intersection
    return _safe_ratio(intersection, union)


def elementwise_iou(boxes1, boxes2) -> np.ndarray:
    """IoU of corresponding boxes: ``boxes1[..., i, :]`` with ``boxes2[..., i, :]``.

    Args:
        boxes1, boxes2: xyxy boxes of broadcastable shapes ``(..., 4)``.

    Returns:
        float32 array of the broadcast leading shape.
    """
    boxes1 = _as_boxes(boxes1, "boxes1")
    boxes2 = _as_boxes(boxes2, "boxes2")
    top_left = np.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = np.minimum(boxes1[..., 2:], boxes2[..., 2:])
    size = np.maximum(bottom_right - top_left, 0.0)
    intersection = size[..., 0] * size[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - intersection
    return _safe_ratio(intersection, union)


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    """``[x_min, y_min, x_max, y_max]`` -> ``[cx, cy, w, h]`` (any leading shape)."""
    boxes = _as_boxes(boxes, "boxes")
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    size = boxes[..., 2:] - boxes[..., :2]
    return np.concatenate([centre, size], axis=-1)


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """``[cx, cy, w, h]`` -> ``[x_min, y_min, x_max, y_max]`` (any leading shape)."""
    boxes = _as_boxes(boxes, "boxes")
    half = boxes[..., 2:] / 2.0
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def clip_boxes(boxes, width: float, height: float) -> np.ndarray:
    """Clips xyxy boxes to the image ``[0, width] x [0, height]``.

    A box entirely outside becomes a zero-area box on the border (detect it with
    ``box_area(...) == 0``).
    """
    boxes = _as_boxes(boxes, "boxes")
    if width < 0 or height < 0:
        raise ValueError(f"width and height must be >= 0, got width={width}, height={height}.")
    limits = np.array([width, height, width, height], dtype=np.float32)
    return np.clip(boxes, 0.0, limits)


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


# ----------------------------------------------------------------------------- keras.ops


def _ops():
    from keras import ops

    return ops


def _tensor(x):
    """Tensors pass through; NumPy arrays and lists become tensors of Keras's float type."""
    ops = _ops()
    if isinstance(x, (np.ndarray, list, tuple, float, int)):
        import keras

        return ops.convert_to_tensor(np.asarray(x), dtype=keras.backend.floatx())
    return ops.convert_to_tensor(x)


def ops_box_area(boxes):
    """``box_area`` on tensors (``keras.ops``)."""
    ops = _ops()
    boxes = _tensor(boxes)
    width = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def _ops_ratio(intersection, union):
    ops = _ops()
    positive = union > 0
    return ops.where(positive, intersection / ops.where(positive, union, 1.0), 0.0)


def ops_elementwise_iou(boxes1, boxes2):
    """``elementwise_iou`` on tensors: safe gradients (no division by an empty union)."""
    ops = _ops()
    boxes1 = _tensor(boxes1)
    boxes2 = _tensor(boxes2)
    top_left = ops.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = ops.minimum(boxes1[..., 2:], boxes2[..., 2:])
    size = ops.maximum(bottom_right - top_left, 0.0)
    intersection = size[..., 0] * size[..., 1]
    union = ops_box_area(boxes1) + ops_box_area(boxes2) - intersection
    return _ops_ratio(intersection, union)


def ops_pairwise_iou(boxes1, boxes2):
    """``pairwise_iou`` on tensors: ``(N, 4)``, ``(M, 4)`` -> ``(N, M)``."""
    ops = _ops()
    boxes1 = _tensor(boxes1)
    boxes2 = _tensor(boxes2)
    return ops_elementwise_iou(ops.expand_dims(boxes1, 1), ops.expand_dims(boxes2, 0))


def ops_xyxy_to_cxcywh(boxes):
    """``xyxy_to_cxcywh`` on tensors."""
    ops = _ops()
    boxes = _tensor(boxes)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2.0
    size = boxes[..., 2:] - boxes[..., :2]
    return ops.concatenate([centre, size], axis=-1)


def ops_cxcywh_to_xyxy(boxes):
    """``cxcywh_to_xyxy`` on tensors."""
    ops = _ops()
    boxes = _tensor(boxes)
    half = boxes[..., 2:] / 2.0
    return ops.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def ops_clip_boxes(boxes, width: float, height: float):
    """``clip_boxes`` on tensors."""
    ops = _ops()
    boxes = _tensor(boxes)
    limits = ops.convert_to_tensor([width, height, width, height], dtype=boxes.dtype)
    return ops.minimum(ops.maximum(boxes, 0.0), limits)
