"""Exercises of notebook 09 (SegNet): what the pooling indices put back, why unpooling is the
backward pass of max pooling, and what the indices cost, counted by hand.

The solutions use the package's ``MaxPoolingWithArgmax2D``, ``MaxUnpooling2D``, ``segnet`` and
``decoder_memory`` and the scenes of notebook 09 (``segmentation_scenes``); nothing is trained.
``seed`` picks the scenes or the random maps.
"""

from __future__ import annotations

import keras
import numpy as np

from bestiary_keras.segmentation.scenes import segmentation_scenes
from bestiary_keras.segmentation.segnet import (
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
    decoder_memory,
    segnet,
)

__all__ = ["boundary_map", "pool_and_upsample", "solution_1", "solution_2", "solution_3"]


def boundary_map(labels) -> np.ndarray:
    """``(N, H, W)`` float32: 1 on every pixel whose class differs from a 4-neighbour's."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, bool)
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    vertical = labels[:, 1:, :] != labels[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge.astype(np.float32)


def pool_and_upsample(x, levels: int):
    """``x`` (N, H, W, C) max-pooled ``levels`` times by 2 (SegNet's encoder without the
    convolutions), then brought back to (H, W) twice over: ``(unpooled with the stored
    indices, nearest-neighbour upsampled)``."""
    pooled, stored = x, []
    for _ in range(levels):
        size = tuple(pooled.shape[1:3])
        pooled, indices = MaxPoolingWithArgmax2D()(pooled)
        stored.append((indices, size))
    unpooled = pooled
    for indices, size in reversed(stored):
        unpooled = MaxUnpooling2D(size)([unpooled, indices])
    nearest = keras.layers.UpSampling2D(2**levels, interpolation="nearest")(pooled)
    return keras.ops.convert_to_numpy(unpooled), keras.ops.convert_to_numpy(nearest)


def solution_1(seed: int = 0, num_images: int = 200) -> dict:
    """Exercise 1, indices against nearest-neighbour upsampling on the objects' boundaries.

    **Exercise.** Take the boundary map of the scenes' class maps (1 where a pixel's class
    differs from a neighbour's), max-pool it 1, 2 and 3 times as SegNet's encoder does (48 x 48
    down to 6 x 6), then bring it back to 48 x 48 in two ways: unpooling with the stored indices
    (the decoder's upsampling, without its convolutions) and nearest-neighbour upsampling. For
    each, what share of the non-zero output pixels lie on a true boundary (precision), and what
    share of the boundary pixels come back (recall)?

    **Method.** ``MaxPoolingWithArgmax2D`` / ``MaxUnpooling2D`` and ``keras.layers.UpSampling2D``
    on the boundary maps, counted against them.

    **Expected outcome.** The indices put every value back exactly where it was found: precision
    1.000 at every depth, but only one pixel per window comes back, so the recall falls with
    depth: 0.43, 0.19, 0.08 after 1, 2, 3 poolings (the boundary is two pixels wide, one on
    each side, and crosses a window in several pixels of which one is kept). Nearest neighbour
    recovers every boundary pixel (recall 1.000) but smears it over whole windows: precision
    0.58, 0.33, 0.19. So the indices keep *where* the boundary is and leave the decoder's
    convolutions to fill it in; nearest neighbour keeps only *that* there is one, somewhere in
    a window of 2, 4 or 8 pixels. Seeds 0, 1, 2 agree within 0.01.

    Returns:
        ``{levels: {"indices": (precision, recall), "nearest": (precision, recall)}}`` and
        ``"boundary_share"``.
    """
    _, labels, _ = segmentation_scenes(num_images, 48, seed=seed)
    edges = boundary_map(labels)[..., None]
    truth = edges > 0
    result = {"boundary_share": float(truth.mean())}
    print(f"{num_images} scenes (seed {seed}): {truth.mean():.1%} of the pixels are on a boundary")
    print(f"{'poolings':>8} {'indices: precision':>19} {'recall':>7} "
          f"{'nearest: precision':>19} {'recall':>7}")
    for levels in (1, 2, 3):
        unpooled, nearest = pool_and_upsample(edges, levels)
        row = {}
        for name, output in (("indices", unpooled), ("nearest", nearest)):
            on = output > 0
            row[name] = (float((on & truth).sum() / on.sum()),
                         float((on & truth).sum() / truth.sum()))
        result[levels] = row
        print(f"{levels:>8} {row['indices'][0]:>19.3f} {row['indices'][1]:>7.3f} "
              f"{row['nearest'][0]:>19.3f} {row['nearest'][1]:>7.3f}")
    return result


def solution_2(seed: int = 0) -> dict:
    """Exercise 2, max unpooling is the backward pass of max pooling.

    **Exercise.** For a map ``x`` and any ``v`` of the pooled size, compare
    ``MaxUnpooling2D([v, indices(x)])`` with the gradient of ``sum(MaxPooling2D(x) * v)`` with
    respect to ``x`` (``keras.layers.MaxPooling2D``, ``tf.GradientTape``): on a random map, and
    on a ReLU-like map where three quarters of the values are 0, so that many windows have ties.
    Why must they agree, and what does that say about the "non-linear upsampling without
    learned weights"?

    **Method.** Max pooling picks one input per window; its Jacobian is a 0/1 selection matrix
    ``P`` (one 1 per row), the gradient of ``<P x, v>`` is ``P^T v``, and ``P^T`` puts each
    ``v`` at its window's maximum, zeros elsewhere: exactly unpooling with the switches (the
    "deconvnet" of Zeiler and Fergus, which SegNet's decoder reuses).

    **Expected outcome.** Identical outputs (largest difference 0) on the random map, and on
    the ReLU-like map too, although 30% to 32% of its windows are all zeros (seeds 0, 1, 2):
    TensorFlow's max-pooling gradient and its argmax break ties the same way (the first pixel of
    the window), so not a single window differs. The decoder's upsampling is thus the transpose
    of the encoder's pooling, fixed by the input: "without learned weights", and non-linear
    only because the switches depend on ``x``.

    Returns:
        ``{"random_max_error", "relu_max_error", "relu_sum_error", "tied_share",
        "mismatch_share", "mismatch_only_in_ties"}``.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    result = {}
    for name, x in (("random", rng.standard_normal((4, 16, 16, 8))),
                    ("relu", np.maximum(rng.standard_normal((4, 16, 16, 8)) - 0.67, 0.0))):
        x = tf.constant(x.astype(np.float32))
        v = tf.constant(rng.standard_normal((4, 8, 8, 8)).astype(np.float32))
        _, indices = MaxPoolingWithArgmax2D()(x)
        unpooled = keras.ops.convert_to_numpy(MaxUnpooling2D()([v, indices]))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(keras.layers.MaxPooling2D(2)(x) * v)
        gradient = tape.gradient(loss, x).numpy()
        difference = np.abs(unpooled - gradient)
        result[f"{name}_max_error"] = float(difference.max())
        if name == "relu":
            windows = x.numpy().reshape(4, 8, 2, 8, 2, 8)
            top = windows.max(axis=(2, 4), keepdims=True)
            tied = (windows == top).sum(axis=(2, 4)) > 1
            mismatch = difference.reshape(4, 8, 2, 8, 2, 8).max(axis=(2, 4)) > 0
            result["tied_share"] = float(tied.mean())
            result["all_zero_share"] = float((top[:, :, 0, :, 0] == 0).mean())
            result["mismatch_share"] = float(mismatch.mean())
            result["mismatch_only_in_ties"] = bool(not np.any(mismatch & ~tied))
            result["relu_sum_error"] = float(np.abs(
                unpooled.reshape(4, 8, 2, 8, 2, 8).sum(axis=(2, 4))
                - gradient.reshape(4, 8, 2, 8, 2, 8).sum(axis=(2, 4))).max())
    print(f"random map: largest |unpool(v) - d<pool(x), v>/dx| = {result['random_max_error']:g}")
    print(f"ReLU-like map: {result['tied_share']:.1%} of the windows have a tied maximum "
          f"({result['all_zero_share']:.1%} all zeros); largest difference "
          f"{result['relu_max_error']:g}, windows that differ {result['mismatch_share']:.1%}")
    return result


def solution_3(seed: int = 0) -> dict:
    """Exercise 3, the indices' memory by hand, and a row that never comes back.

    **Exercise.** For the paper's SegNet at 360 x 480, write down the five pooled sizes and
    count by hand the bytes per image of the indices at 2 bits per pooled value (the paper),
    at 8 bytes (TensorFlow's int64) and of the float32 feature maps before each pooling
    (what a U-Net-style decoder keeps); compare with ``decoder_memory(segnet())``. Then: the
    third pooling takes 90 x 120 to 45 x 60 and the fourth 45 x 60 to 22 x 30. Pool random
    45 x 60 maps with indices and unpool them: which pixels never get a value back, whatever
    the input?

    **Method.** Pooled sizes 180 x 240 x 64, 90 x 120 x 128, 45 x 60 x 256, 22 x 30 x 512,
    11 x 15 x 512; the 2 x 2 windows of a "valid" pooling of 45 rows cover rows 0 to 43.

    **Expected outcome.** 5,260,800 pooled values per image: 1,315,200 bytes (1.25 MiB) at 2
    bits, 40.1 MiB as int64, against 84,295,680 bytes (80.4 MiB) of feature maps, exactly
    ``decoder_memory``'s numbers (a factor of 64 for the paper's count, 2 for int64). The
    unpooled 45 x 60 maps are zero on their whole last row (row 44), 60 of the 2,700 positions
    (2.2%), whatever the input: that row of the 45 x 60 decoder map is filled by the decoder's
    convolutions alone.

    Returns:
        ``{"pooled_values", "by_hand": {...}, "measured": {...}, "lost_rows", "lost_share"}``.
    """
    pooled_shapes = [(180, 240, 64), (90, 120, 128), (45, 60, 256), (22, 30, 512), (11, 15, 512)]
    before_shapes = [(360, 480, 64), (180, 240, 128), (90, 120, 256), (45, 60, 512),
                     (22, 30, 512)]
    pooled = sum(h * w * c for h, w, c in pooled_shapes)
    by_hand = {"indices_2bit": pooled / 4, "indices_int64": 8 * pooled,
               "feature_maps_float32": 4 * sum(h * w * c for h, w, c in before_shapes)}
    full = segnet()
    measured = decoder_memory(full)
    del full
    maps = np.random.default_rng(seed).random((16, 45, 60, 8)).astype(np.float32) + 0.1
    values, indices = MaxPoolingWithArgmax2D()(maps)
    back = keras.ops.convert_to_numpy(MaxUnpooling2D((45, 60))([values, indices]))
    written = (back != 0).any(axis=(0, 3))  # (45, 60): ever given a value by some map
    lost_rows = [int(r) for r in np.flatnonzero(~written.any(axis=1))]
    result = {"pooled_values": pooled, "by_hand": by_hand,
              "measured": {k: float(v) for k, v in measured.items()},
              "pooled_shape": tuple(int(s) for s in values.shape[1:3]),
              "lost_rows": lost_rows, "lost_share": float(1.0 - written.mean())}
    print(f"pooled values per image: {pooled:,}")
    for key in ("indices_2bit", "indices_int64", "feature_maps_float32"):
        print(f"{key:>21}: by hand {by_hand[key]:>12,.0f} bytes ({by_hand[key] / 2**20:6.2f} MiB), "
              f"decoder_memory {measured[key]:>12,.0f}")
    print(f"45 x 60 -> {result['pooled_shape']} -> 45 x 60: rows never written {lost_rows}, "
          f"{result['lost_share']:.1%} of the positions")
    return result
