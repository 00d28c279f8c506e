"""Worked solutions of the exercises of notebook 08 (U-Net).

1. ``solution_1``: the valid U-Net's output size in closed form, checked against
   ``unet_output_size`` and against built models.
2. ``solution_2``: how the weight map's ``sigma`` decides where the border term puts its weight.
3. ``solution_3``: why the overlap-tile stride must be a multiple of ``2**depth``.
"""

from __future__ import annotations

import keras
import numpy as np

from bestiary_keras.datasets.cells import make_cells
from bestiary_keras.segmentation import losses, tiling
from bestiary_keras.segmentation.unet import (
    nearest_valid_input_sizes,
    unet,
    unet_output_size,
    valid_input_sizes,
)

__all__ = ["closed_form_input_size", "closed_form_output_size", "smallest_bottom", "solution_1",
           "solution_2", "solution_3"]


def closed_form_output_size(input_size: int, depth: int) -> int:
    """``out = s - (12 * 2**depth - 8)`` for a valid input size ``s`` (see ``solution_1``)."""
    return int(input_size) - (12 * 2**depth - 8)


def closed_form_input_size(bottom: int, depth: int) -> int:
    """``s = 2**depth * m + 4 * (2**depth - 1)``: the input whose bottom map (before the two
    bottom convolutions) has ``m`` pixels; valid for ``m >= smallest_bottom(depth)``."""
    return 2**depth * int(bottom) + 4 * (2**depth - 1)


def smallest_bottom(depth: int) -> int:
    """The least bottom size ``m`` that keeps every map positive: 7 for one pooling, else 8.

    The maps going up are ``2^k (m - 8) + 4`` after ``k`` steps: ``m = 8`` keeps them at 4
    pixels; ``m = 7`` gives ``4 - 2^k``, positive only for ``k = 1``.
    """
    return 7 if depth == 1 else 8


def solution_1(seed: int = 0, *, max_size: int = 1024, verbose: bool = True) -> dict:
    """Exercise 1: which tiles fit a valid U-Net, and what comes out, in closed form.

    Exercise: every unpadded 3x3 convolution takes 2 pixels, two per level; a pooling halves
    and needs an even size; an up-convolution doubles. Derive the output size and the set of
    valid input sizes for ``depth`` poolings, and check the formula against
    ``unet_output_size`` and against the output shape of built models.

    Method: going down, ``s_{k+1} = (s_k - 4) / 2``, so an input of ``s = 2^d m + 4 (2^d - 1)``
    reaches the bottom with ``m`` pixels; the bottom convolutions leave ``m - 4`` and each step
    up maps ``u -> 2u - 4``, so ``out = 2^d (m - 8) + 4``, i.e.
    ``out = s - (12 * 2^d - 8)`` (184 pixels for the paper's ``d = 4``: 572 -> 388, a context
    margin of ``6 * 2^d - 4 = 92`` pixels per side). The maps going up are ``2^k (m - 8) + 4``
    after ``k`` steps, all positive only for ``m >= 8`` (``m >= 7`` when ``d = 1``): the
    smallest tile is ``2^d * 8 + 4 (2^d - 1)`` (188 for ``d = 4``, output 4), and valid sizes
    step by ``2^d``. The formula is compared with ``unet_output_size`` on every
    size up to ``max_size`` for ``d = 1 .. 5``, and with ``model.output_shape`` of small
    (2-filter) U-Nets.

    Expected outcome: the closed form and ``unet_output_size`` agree on every size (exactly),
    and so do the built models. ``seed`` only seeds the models' (irrelevant) weights.
    """
    keras.utils.set_random_seed(seed)
    rows, mismatches = [], 0
    for depth in range(1, 6):
        step = 2**depth
        predicted = {closed_form_input_size(m, depth)
                     for m in range(smallest_bottom(depth), max_size) if closed_form_input_size(m, depth) <= max_size}
        actual = set(valid_input_sizes(depth, max_size=max_size))
        mismatches += len(predicted ^ actual)
        mismatches += sum(unet_output_size(s, depth) != closed_form_output_size(s, depth)
                          for s in actual)
        rows.append((depth, min(actual), closed_form_output_size(min(actual), depth), step,
                     12 * step - 8, 6 * step - 4))
    checked_models = []
    for depth, size in ((1, 28), (2, 92), (2, 100), (3, 140), (4, 188)):
        model = unet((size, size, 1), depth=depth, filters=2)
        checked_models.append((depth, size, int(model.output_shape[1]),
                               closed_form_output_size(size, depth)))
        del model
    keras.backend.clear_session()
    paper = closed_form_output_size(572, 4)
    if verbose:
        print("depth | smallest tile -> output | step | shrink 12*2^d-8 | margin 6*2^d-4")
        for row in rows:
            print(f"{row[0]:5d} | {row[1]:13d} -> {row[2]:6d} | {row[3]:4d} | {row[4]:15d} | "
                  f"{row[5]:14d}")
        print(f"paper (d = 4): 572 -> {paper}; sizes that disagree with unet_output_size: "
              f"{mismatches}")
        for depth, size, built, formula in checked_models:
            print(f"built model depth {depth}, input {size}: output {built} (formula {formula})")
    return {"mismatches": mismatches, "paper_output": paper, "table": rows,
            "models": checked_models}


def solution_2(seed: int = 0, *, sigmas=(1.0, 2.0, 5.0), num_images: int = 20,
               verbose: bool = True) -> dict:
    """Exercise 2: what the weight map's ``sigma`` does on our images.

    Exercise: the border term ``w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` is meant for the narrow
    background gaps between touching cells. The paper uses ``sigma = 5`` pixels on 512-pixel
    EM images; the notebook uses 2 on its 92-pixel cells. For ``sigma`` in 1, 2 and 5 pixels,
    measure which share of the border term's total weight falls on the true separating pixels
    (``semantic == 2``, one or two pixels wide) and which on the rest of the background.

    Method: ``losses.border_weight_term`` on the separated instances of ``make_cells`` images
    (the notebook's data; ``w0`` only scales the term, so the shares do not depend on it). A
    separating pixel has ``d1 + d2`` of about 2, so its weight is about ``w0 exp(-2/sigma^2)``
    whatever ``sigma``; a background pixel between two cells ``g`` pixels apart gets
    ``w0 exp(-g^2 / (2 sigma^2))``, which a large ``sigma`` no longer makes small.

    Expected outcome (seeds 0, 1, 2): at ``sigma = 1`` the term all but vanishes, a mean weight
    of 0.05 on the separating pixels (the class-balance weight ``w_c`` of the background is
    about 1.8); at ``sigma = 2`` (the notebook's) it is 2.4 there and the separating pixels,
    2.8-3.2% of the image, carry 0.68-0.72 of the term; at the paper's ``sigma = 5`` they carry
    only 0.44-0.47, the rest going to ordinary background between nearby cells. ``sigma`` is a
    length in pixels of *these* images and must be scaled with the cells' gaps.
    """
    cells = make_cells(num_images, 92, seed=seed)
    separated = cells.instances * (cells.semantic == 1)
    gap = cells.semantic == 2
    background = cells.semantic == 0
    rows = {}
    for sigma in sigmas:
        term = np.stack([losses.border_weight_term(inst, w0=10.0, sigma=sigma)
                         for inst in separated])
        total = float(term.sum())
        rows[float(sigma)] = {
            "share_on_separating_pixels": float(term[gap].sum() / total),
            "share_on_other_background": float(term[background].sum() / total),
            "mean_weight_separating": float(term[gap].mean()),
            "mean_weight_background": float(term[background].mean()),
        }
    if verbose:
        print(f"{num_images} make_cells images (seed {seed}), w0 = 10; separating pixels are "
              f"{gap.mean():.1%} of all pixels, other background {background.mean():.1%}")
        print("sigma | share on separating px | share on other background | mean weight there")
        for sigma, row in rows.items():
            print(f"{sigma:5.1f} | {row['share_on_separating_pixels']:22.3f} | "
                  f"{row['share_on_other_background']:25.3f} | "
                  f"{row['mean_weight_separating']:.2f} / {row['mean_weight_background']:.2f}")
    return rows


def solution_3(seed: int = 0, *, image_size: int = 60, verbose: bool = True) -> dict:
    """Exercise 3: the overlap-tile stride must be a multiple of ``2**depth``.

    Exercise: for the paper's 572 -> 388 tile, the obvious stride is the output size, 388. Is the
    tiled prediction then the same as the prediction of one large tile over the whole (mirrored)
    image? Test it with a small valid U-Net of depth 3 (108 -> 20 pixels, ``20 % 8 = 4`` as
    ``388 % 16 = 4``), with random weights.

    Method: the same weights in a 108-pixel model (for the tiles) and in a model whose input
    covers the whole mirrored image (one tile). ``tiling.tile_layout(..., depth=3)`` steps the
    tiles by 16 pixels (the largest multiple of 8 that fits in 20); ``depth=0`` gives the naive
    stride of 20 (every multiple of 1 is allowed). ``tiling.predict_tiled`` runs both layouts.

    Expected outcome (seeds 0, 1, 2): with the stride of 16 the tiled and whole-image logits
    agree to float round-off (at most 1e-5 of the logits' standard deviation); with the stride
    of 20 the tiles at offset 20 sit 4 pixels off the pooling grid of the large tile, and their
    logits differ by 1.8 to 6.5 times the logits' standard deviation (random weights: the
    values vary with the seed, the gap of five orders of magnitude does not). A 2x2 max pooling
    only commutes with shifts by multiples of 2, three of them with multiples of 8.
    """
    keras.utils.set_random_seed(seed)
    depth, tile = 3, 108
    tile_model = unet((tile, tile, 1), depth=depth, filters=4, output_activation=None)
    output = unet_output_size(tile, depth)
    image = make_cells(1, image_size, seed=seed + 1000).images[0]
    good = tiling.tile_layout(image.shape, tile, output, depth)
    naive = tiling.tile_layout(image.shape, tile, output, 0)
    size = nearest_valid_input_sizes(image_size + 2 * good.margin, depth)[1]
    whole_model = unet((size, size, 1), depth=depth, filters=4, output_activation=None)
    whole_model.set_weights(tile_model.get_weights())
    extra = size - image_size - 2 * good.margin
    padded = np.pad(image, ((good.margin, good.margin + extra),) * 2, mode="reflect")
    whole = keras.ops.convert_to_numpy(whole_model(padded[None, ..., None]))[0]
    whole = whole[:image_size, :image_size]
    spread = float(whole.std())
    result = {"output_size": output, "margin": good.margin, "spread": spread}
    for name, layout in (("multiple of 2^depth", good), ("naive", naive)):
        tiled = tiling.predict_tiled(tile_model, image, layout=layout)
        difference = np.abs(tiled - whole)
        key = "good" if layout is good else "naive"
        result[f"{key}_stride"] = layout.stride
        result[f"{key}_max_difference"] = float(difference.max())
        result[f"{key}_relative_difference"] = float(difference.max() / spread)
    keras.backend.clear_session()
    if verbose:
        print(f"depth-3 U-Net {tile} -> {output}, margin {good.margin}; a {image_size} x "
              f"{image_size} image; logits' standard deviation {spread:.3f}")
        for key in ("good", "naive"):
            print(f"stride {result[f'{key}_stride']:3d}: max |tiled - whole| "
                  f"{result[f'{key}_max_difference']:.2e} "
                  f"({result[f'{key}_relative_difference']:.2e} of the spread)")
    return result
