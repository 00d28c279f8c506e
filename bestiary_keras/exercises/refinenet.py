"""Worked solutions of the exercises of notebook 10 (RefineNet).

1. ``solution_1``: the window that ``n`` chained 5x5 poolings see, probed, and what it covers
   in image pixels at each level of the cascade.
2. ``solution_2``: the residual sums make the activations grow through the cascade; what that
   does to the first loss with and without the zero-initialised classifier.
3. ``solution_3``: multi-resolution fusion computed by hand and checked against the layers.
"""

from __future__ import annotations

import keras
import numpy as np

from bestiary_keras.segmentation.refinenet import (
    chained_residual_pooling,
    multi_resolution_fusion,
    refinenet,
)
from bestiary_keras.segmentation.scenes import segmentation_scenes

__all__ = ["IMAGE_SIZE", "NOTEBOOK_REFINENET", "crp_window", "solution_1", "solution_2",
           "solution_3"]

IMAGE_SIZE = 48
NOTEBOOK_REFINENET = {"encoder_filters": (16, 32, 64, 64), "refine_filters": (16, 16, 32, 32),
                      "batch_norm": True}
"""The configuration that notebook 10 trains."""


def _identity_kernel(channels: int = 1) -> np.ndarray:
    kernel = np.zeros((3, 3, channels, channels), np.float32)
    for c in range(channels):
        kernel[1, 1, c, c] = 1.0
    return kernel


def crp_window(num_blocks: int, size: int = 31, *, chained: bool = True) -> int:
    """Side of the square that one bright pixel spreads over through a CRP with identity convs.

    ``chained=False`` builds the public ports' variant in which every pooling block pools the
    ReLU output (the blocks in parallel) instead of the previous block's output.
    """
    inputs = keras.Input((size, size, 1))
    if chained:
        outputs = chained_residual_pooling(inputs, 1, num_blocks=num_blocks, name="crp")
    else:
        x = keras.layers.ReLU()(inputs)
        paths = [x]
        for i in range(num_blocks):
            pooled = keras.layers.MaxPooling2D(5, strides=1, padding="same")(x)
            paths.append(keras.layers.Conv2D(1, 3, padding="same", use_bias=False,
                                             name=f"parallel_conv{i}")(pooled))
        outputs = keras.layers.Add()(paths)
    probe = keras.Model(inputs, outputs)
    for layer in probe.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([_identity_kernel()])
    peak = np.zeros((1, size, size, 1), np.float32)
    peak[0, size // 2, size // 2] = 1.0
    response = keras.ops.convert_to_numpy(probe(peak))[0, ..., 0]
    rows = np.nonzero(response.any(axis=1))[0]
    return int(rows.max() - rows.min() + 1)


def solution_1(seed: int = 0, *, max_blocks: int = 6, verbose: bool = True) -> dict:
    """Exercise 1: how far chained residual pooling reaches.

    Exercise: a 5x5 max pooling with stride 1 spreads one value over 5x5 pixels; in the chain
    each block pools the previous block's output. Predict the window of ``n`` chained blocks,
    check it with the notebook's identity probe for ``n = 1 .. 6`` (and against the parallel
    variant of the public ports), then say what the window covers in image pixels at each level
    of the notebook's cascade (maps at 1/2, 1/4, 1/8 and 1/16 of the 48-pixel image) with the
    paper's 2 blocks, and how many blocks RefineNet-1 would need to see the whole image.

    Method: each 5x5 pooling widens the window by 4 cells, so ``n`` chained blocks see
    ``1 + 4n`` cells (the parallel variant stays at 5); a cell at stride ``s`` is ``s`` image
    pixels, so the window is ``s (1 + 4n)`` pixels. ``crp_window`` probes the package's
    ``chained_residual_pooling`` with identity 3x3 convolutions and one bright pixel.

    Expected outcome (exact; ``seed`` plays no role): windows 5, 9, 13, 17, 21, 25 for
    ``n = 1 .. 6``, 5 for every parallel variant; with 2 blocks the CRP of RefineNet-4 and -3
    (strides 16 and 8) spans 144 and 72 pixels, more than the 48-pixel image, RefineNet-2
    36 pixels, RefineNet-1 only 18; RefineNet-1 would need 6 chained blocks (50 pixels).
    """
    keras.utils.set_random_seed(seed)
    chained = {n: crp_window(n) for n in range(1, max_blocks + 1)}
    parallel = {n: crp_window(n, chained=False) for n in (1, 2, 4)}
    keras.backend.clear_session()
    strides = {4: 16, 3: 8, 2: 4, 1: 2}  # stem stride 2, then 2x per encoder stage
    image_pixels = {level: stride * (1 + 4 * 2) for level, stride in strides.items()}
    blocks_needed = next(n for n in range(1, 100) if strides[1] * (1 + 4 * n) >= IMAGE_SIZE)
    if verbose:
        print("blocks n | chained window (probe) | 1 + 4n | parallel window")
        for n, window in chained.items():
            print(f"{n:8d} | {window:22d} | {1 + 4 * n:6d} | {parallel.get(n, '-')}")
        for level, pixels in image_pixels.items():
            print(f"RefineNet-{level} (stride {strides[level]:2d}): 2 blocks span {pixels:3d} image "
                  f"pixels ({'whole image' if pixels >= IMAGE_SIZE else 'part of the image'})")
        print(f"RefineNet-1 needs {blocks_needed} chained blocks to span the {IMAGE_SIZE}-pixel "
              "image")
    return {"chained": chained, "parallel": parallel, "image_pixels": image_pixels,
            "blocks_needed_refinenet1": blocks_needed}


def solution_2(seed: int = 0, *, num_images: int = 64, verbose: bool = True) -> dict:
    """Exercise 2: the residual sums grow the activations; why the classifier starts at zero.

    Exercise: every RCU adds its input to its output, every fusion sums two paths, every CRP
    sums three maps. On the notebook's freshly built network, measure the standard deviation of
    the activations after the encoder and after each RefineNet block, then the cross-entropy of
    the first batch with the package's zero-initialised classifier and with a Glorot-uniform
    one (Keras' default).

    Method: a probe model on the layers ``stage4_block1_out`` (the coarsest encoder map),
    ``refine{4,3,2,1}_output_rcu_add`` and ``head_rcu2_add``, evaluated on 64 scenes of the
    notebook (``training=False``); the classifier's kernel is then replaced by a Glorot-uniform
    draw and the logits recomputed.

    Expected outcome (seeds 0, 1, 2): the standard deviation grows from 0.035-0.075 after the
    encoder to 1.3-2.0 after RefineNet-1 and 1.6-2.5 at the head, 29-66 times; with the zero
    classifier the first loss is exactly ``ln 5 = 1.609`` (uniform probabilities), with a
    Glorot one 4.04-4.22: the network starts confidently wrong and the first steps are spent
    undoing it. (The paper fine-tunes a pretrained ResNet and has no such start.)
    """
    images, labels, _ = segmentation_scenes(num_images, IMAGE_SIZE, seed=seed)
    keras.utils.set_random_seed(seed)
    model = refinenet((IMAGE_SIZE, IMAGE_SIZE, 3), 5, output_activation=None, **NOTEBOOK_REFINENET)
    names = {"encoder (1/16)": "stage4_block1_out", "RefineNet-4": "refine4_output_rcu_add",
             "RefineNet-3": "refine3_output_rcu_add", "RefineNet-2": "refine2_output_rcu_add",
             "RefineNet-1": "refine1_output_rcu_add", "head": "head_rcu2_add"}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names.values()]
                        + [model.output])
    outputs = [keras.ops.convert_to_numpy(o) for o in probe(images, training=False)]
    spreads = {name: float(o.std()) for name, o in zip(names, outputs[:-1])}
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    zero_loss = float(crossentropy(labels, outputs[-1]))
    classifier = model.get_layer("classifier")
    kernel, bias = classifier.get_weights()
    glorot = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(seed=seed)(kernel.shape))
    classifier.set_weights([glorot, bias])
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    glorot_loss = float(crossentropy(labels, logits))
    keras.backend.clear_session()
    result = {"spreads": spreads, "zero_classifier_loss": zero_loss,
              "glorot_classifier_loss": glorot_loss, "glorot_logit_spread": float(logits.std()),
              "growth": spreads["head"] / spreads["encoder (1/16)"]}
    if verbose:
        print("activation standard deviation, fresh network, 64 scenes:")
        for name, value in spreads.items():
            print(f"  {name:15s} {value:.3f}")
        print(f"growth encoder -> head: {result['growth']:.0f}x")
        print(f"first cross-entropy: zero classifier {zero_loss:.3f} (ln 5 = {np.log(5):.3f}), "
              f"Glorot classifier {glorot_loss:.3f} (logits' std {result['glorot_logit_spread']:.2f})")
    return result


def _bilinear_by_hand(coarse: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear up-sampling with half-pixel centres, written out: output pixel ``i`` reads the
    input at ``(i + 0.5) / factor - 0.5``, clamped to the border (no zero padding)."""
    def axis_weights(n_in):
        n_out = n_in * factor
        matrix = np.zeros((n_out, n_in))
        for i in range(n_out):
            src = min(max((i + 0.5) / factor - 0.5, 0.0), n_in - 1)
            low = int(np.floor(src))
            high = min(low + 1, n_in - 1)
            frac = src - low
            matrix[i, low] += 1 - frac
            matrix[i, high] += frac
        return matrix
    rows, cols = axis_weights(coarse.shape[0]), axis_weights(coarse.shape[1])
    return rows @ coarse @ cols.T


def solution_3(seed: int = 0, *, verbose: bool = True) -> dict:
    """Exercise 3: multi-resolution fusion, by hand.

    Exercise: ``multi_resolution_fusion`` convolves each path with a 3x3 kernel, upsamples the
    coarser one bilinearly to the finer size and sums. With identity kernels (a single 1 in the
    centre), a random 6x6 fine map and a 3x3 coarse map whose middle column is 1 (an object
    edge seen at half the resolution), compute the fused 6x6 map by hand and check it against
    the layers; then read where the coarse path puts the edge.

    Method: Keras' bilinear ``UpSampling2D`` uses half-pixel centres: output pixel ``i`` reads
    the input at ``i / 2 - 1/4``, so each row of the up-sampled map is
    ``[a, 3a/4 + b/4, a/4 + 3b/4, 3b/4 + c/4, b/4 + 3c/4, c]`` for a coarse row ``[a, b, c]``
    (the borders are clamped, not padded with zeros). ``_bilinear_by_hand`` writes these
    weights out; the fused map is the fine map plus it.

    Expected outcome: hand and layers agree to float round-off (below 1e-6); the coarse column
    ``[0, 1, 0]`` becomes ``[0, 0.25, 0.75, 0.75, 0.25, 0]``: the coarse path alone smears a
    one-cell object over four fine pixels with no value reaching 1, which the fine path has to
    sharpen (the "refinement" of the name).
    """
    rng = np.random.default_rng(seed)
    fine = rng.normal(size=(6, 6)).astype(np.float32)
    coarse = np.zeros((3, 3), np.float32)
    coarse[:, 1] = 1.0
    fine_input, coarse_input = keras.Input((6, 6, 1)), keras.Input((3, 3, 1))
    fusion = keras.Model([fine_input, coarse_input],
                         multi_resolution_fusion([fine_input, coarse_input], 1, name="fusion"))
    for layer in fusion.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.set_weights([_identity_kernel(), np.zeros(1, np.float32)])
    layers_output = keras.ops.convert_to_numpy(
        fusion([fine[None, ..., None], coarse[None, ..., None]]))[0, ..., 0]
    upsampled = _bilinear_by_hand(coarse.astype(np.float64), 2)
    by_hand = fine + upsampled
    keras.backend.clear_session()
    result = {"max_difference": float(np.abs(layers_output - by_hand).max()),
              "upsampled_row": upsampled[0].round(4).tolist()}
    if verbose:
        print("coarse row [0, 1, 0] upsampled by 2:", result["upsampled_row"])
        print(f"max |layers - by hand| over the fused 6x6 map: {result['max_difference']:.1e}")
    return result
