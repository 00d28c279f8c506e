"""Worked solutions of notebook 02's exercises (ResNet).

1. ``solution_1``: the bottleneck's arithmetic: parameters and multiply-adds of one block by
   hand, checked on the built blocks, and the whole nets' multiply-adds against table 1.
2. ``solution_2``: the gradient that reaches the first convolution at initialisation, in plain
   and residual nets of 8 to 56 layers.
3. ``solution_3``: the construction argument: a deeper net that computes exactly what a
   shallower one computes, with and without shortcuts.

Run one with ``from bestiary_keras.exercises import resnet as exercises; exercises.solution_1()``
(the alias keeps the notebook's own module of the same name).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.classification import experiments, resnet_blocks
from bestiary_keras.classification import resnet as rn
from bestiary_keras.classification.vgg_protocol import transfer_weights
from bestiary_keras.datasets.scenes import make_scenes

__all__ = ["multiply_adds", "solution_1", "solution_2", "solution_3"]

PAPER_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
"""The paper's table 1: multiply-adds ("FLOPs") of each net at 224 x 224, in 10^9."""


def multiply_adds(model) -> int:
    """Multiply-adds of the model's convolutions and dense layers for one image.

    A ``Conv2D`` costs ``H_out * W_out * k_h * k_w * C_in * C_out`` (the paper's "FLOPs"), a
    ``Dense`` ``inputs * units``; biases, BN, ReLU, pooling and additions are not counted.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            total += h * w * int(np.prod(layer.kernel_size)) * layer.input.shape[-1] * c_out
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def _conv_weights(model) -> int:
    return sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
               if isinstance(layer, layers.Conv2D))


def solution_1(seed: int = 0, depths=(18, 34, 50, 101, 152)) -> dict:
    """Exercise 1: what a bottleneck buys.

    Exercise. At the 56 x 56 stage, compare three blocks: the basic block on 64 channels (two
    3x3 convolutions), the bottleneck on 256 channels (1x1 to 64, 3x3, 1x1 back to 256) and
    two 3x3 convolutions on 256 channels. Count their weights and multiply-adds by hand,
    check them on the package's blocks (``basic_block_v1``, ``residual_block_v1``), then count
    the multiply-adds of ResNet-18 ... 152 and compare with the paper's table 1.

    Method. Weights of a convolution: ``k^2 C_in C_out`` (no bias: ``use_bias=False``, as in
    the paper, where BN follows each convolution); multiply-adds: that times the 56 x 56 output
    positions. Whole nets: ``multiply_adds`` on ``resnet(depth)`` at 224 x 224 (Keras layout,
    stride on the bottleneck's first 1x1), built with zero kernels (only shapes are needed).

    Expected outcome (exact): basic block 73,728 weights, bottleneck 69,632, two 3x3 on 256
    channels 1,179,648 (17x the bottleneck); 231 M, 218 M and 3,699 M multiply-adds. The nets:
    1.81, 3.66, 3.86, 7.57, 11.28 x 10^9 multiply-adds, within 2% of table 1 (1.8, 3.6, 3.8,
    7.6, 11.3): ResNet-50 has 16 more layers than ResNet-34 for 5% more computation, because
    its blocks are bottlenecks.

    Returns:
        dict with ``blocks`` ``{name: (weights, multiply_adds, hand_weights)}`` and ``nets``
        ``{depth: multiply_adds}``.
    """
    keras.utils.set_random_seed(seed)
    hw = 56 * 56
    blocks = {}
    x64 = keras.Input((56, 56, 64))
    basic = keras.Model(x64, resnet_blocks.basic_block_v1(x64, 64, use_bias=False,
                                                          kernel_initializer="zeros", name="basic"))
    x256 = keras.Input((56, 56, 256))
    bottleneck = keras.Model(x256, resnet_blocks.residual_block_v1(
        x256, 64, conv_shortcut=False, use_bias=False, kernel_initializer="zeros",
        name="bottleneck"))
    wide = keras.Model(x256, resnet_blocks.basic_block_v1(x256, 256, use_bias=False,
                                                          kernel_initializer="zeros", name="wide"))
    hand = {"basic, 64-d (3x3, 3x3)": 2 * 9 * 64 * 64,
            "bottleneck, 256-d (1x1, 3x3, 1x1)": 256 * 64 + 9 * 64 * 64 + 64 * 256,
            "basic, 256-d (3x3, 3x3)": 2 * 9 * 256 * 256}
    print(f"{'block at 56 x 56':36s} {'weights':>10s} {'by hand':>10s} {'multiply-adds':>14s}")
    for (name, h), model in zip(hand.items(), (basic, bottleneck, wide)):
        weights = _conv_weights(model)
        blocks[name] = (weights, multiply_adds(model), h)
        print(f"{name:36s} {weights:>10,} {h:>10,} {multiply_adds(model) / 1e6:>12.0f} M")
        assert multiply_adds(model) == weights * hw
    nets = {}
    print(f"{'net':>10s} {'multiply-adds (10^9)':>21s} {'table 1':>8s}")
    for depth in depths:
        model = rn.resnet(depth, kernel_initializer="zeros", use_bias=False)
        nets[depth] = multiply_adds(model)
        print(f"{'ResNet-' + str(depth):>10s} {nets[depth] / 1e9:>21.2f} {PAPER_GFLOPS[depth]:>8.1f}")
        del model
        keras.backend.clear_session()
    return {"blocks": blocks, "nets": nets}


def _images(seed, count=32):
    scenes = make_scenes(count, 32, object_size=(12, 28), seed=seed)
    return scenes.images.astype("float32") / 255.0, scenes.labels[:, 0]


def solution_2(seed: int = 0, blocks_per_stage=(1, 3, 5, 9), width: int = 8) -> dict:
    """Exercise 2: the gradient reaching the first layer at initialisation, against depth.

    Exercise. Notebook 02 measured, at 32 layers, that the plain net's gradient norms grow
    towards the input (BN amplifies the backward signal) while the residual net's stay in a
    narrower band. How does that change with depth? For the CIFAR nets with n = 1, 3, 5, 9
    blocks per stage (8, 20, 32, 56 layers), plain and residual, compute at initialisation
    the ratio of the gradient norm of the first convolution's kernel to that of the last
    convolution's, on one batch of 32 scenes.

    Method. ``experiments.conv_kernel_gradient_norms`` (BN in training mode, as at the first
    step) on ``cifar_resnet(n, residual=...)`` built from the same seed; the ratio compares
    the update sizes one learning rate gives to the two ends of the net.

    Expected outcome (width 8, seeds 0-2): the plain nets' ratio grows faster than
    geometrically with depth: 0.8-1.0 at 8 layers, 5-8 at 20, 21-57 at 32, 1,100-2,300 at 56;
    the residual nets' stays between 1 and 9 at every depth (1.0-1.4 at 8 layers, 5.4-8.3 at
    56). Without shortcuts the first layer's gradient explodes with depth (it does not vanish:
    BN is there), so one learning rate is far too large for the first layers or far too small
    for the last; with them the gradient reaches the first layer at about the scale it has at
    the top, through the identity paths.

    Returns:
        dict ``{(n, residual): {"first": norm, "last": norm, "ratio": first / last}}``.
    """
    images, labels = _images(seed)
    result = {}
    print(f"{'layers':>6s} {'plain: first / last':>20s} {'residual: first / last':>23s}")
    for n in blocks_per_stage:
        row = []
        for residual in (False, True):
            keras.utils.set_random_seed(seed)
            model = rn.cifar_resnet(n, residual=residual, filters=(width, 2 * width, 4 * width),
                                    num_classes=6)
            norms = list(experiments.conv_kernel_gradient_norms(model, images, labels).values())
            result[n, residual] = {"first": norms[0], "last": norms[-1],
                                   "ratio": norms[0] / norms[-1]}
            row.append(norms[0] / norms[-1])
            keras.backend.clear_session()
        print(f"{6 * n + 2:>6d} {row[0]:>20.3g} {row[1]:>23.3g}")
    return result


def _identity_kernel(layer):
    """Weights that make a 3x3 'same' convolution (and no bias) the identity."""
    kernel = np.zeros(layer.kernel.shape, np.float32)
    for c in range(kernel.shape[-1]):
        kernel[1, 1, c, c] = 1.0
    return [kernel] + [np.zeros(w.shape, np.float32) for w in layer.get_weights()[1:]]


def solution_3(seed: int = 0, deep_n: int = 5, width: int = 8) -> dict:
    """Exercise 3: the construction argument, with and without shortcuts.

    Exercise. The paper argues that a deeper net should never train worse than a shallower
    one, because "the added layers are identity mappings, and the other layers are copied from
    the learned shallower model". Build resnet-32 (n = 5) from resnet-8 (n = 1) this way and
    check that it computes the same function. Then do the same with the plain nets: what
    happens when the extra blocks get the residual net's identity (last BN scale 0), and what
    weights make a plain block the identity?

    Method. ``transfer_weights`` copies every layer that both nets have (stem, the first
    block of each stage, the classifier); the other residual blocks get ``gamma = 0`` in their
    last BN (``zero_init_residual``), so ``F(x) = 0`` and the block outputs ``ReLU(x) = x``.
    In a plain block the same setting outputs ``ReLU(0) = 0``: the signal is cut. A plain
    block is the identity only with delta kernels (1 at the centre of channel c -> c) and BN
    scales that undo the normalisation. Compared on 64 scenes in inference mode.

    Expected outcome: resnet-32 with zero-initialised extra blocks reproduces resnet-8 to
    float precision (max difference of the probabilities below 1e-5); the plain-32 net with
    the same treatment outputs the same probabilities for every image (spread over images 0);
    with delta kernels the plain-32 net reproduces plain-8 (below 1e-3). The identity is
    available to both nets, but the residual net finds it at zero weights (where weight decay
    pulls), the plain net only at one specific non-zero kernel per layer, which SGD from a
    random start has no reason to find.

    Returns:
        dict with ``residual_difference``, ``plain_zero_spread``, ``plain_delta_difference``.
    """
    images, _ = _images(seed, 64)
    filters = (width, 2 * width, 4 * width)
    result = {}
    for residual in (True, False):
        keras.utils.set_random_seed(seed)
        shallow = rn.cifar_resnet(1, residual=residual, filters=filters, num_classes=6)
        deep = rn.cifar_resnet(deep_n, residual=residual, filters=filters, num_classes=6,
                               zero_init_residual=True)
        transfer_weights(shallow, deep)
        expected = keras.ops.convert_to_numpy(shallow(images, training=False))
        if residual:
            got = keras.ops.convert_to_numpy(deep(images, training=False))
            result["residual_difference"] = float(np.abs(got - expected).max())
            continue
        # the same zero gamma in the plain net's extra blocks
        got = keras.ops.convert_to_numpy(deep(images, training=False))
        result["plain_zero_spread"] = float(got.std(axis=0).max())
        # delta kernels and BN that undoes its normalisation in the extra blocks
        for layer in deep.layers:
            block = layer.name.split("_")[1] if layer.name.startswith("conv") else ""
            if not block.startswith("block") or block == "block1":
                continue
            if isinstance(layer, layers.Conv2D):
                layer.set_weights(_identity_kernel(layer))
            elif isinstance(layer, layers.BatchNormalization):
                _, _, mean, variance = layer.get_weights()
                layer.set_weights([np.sqrt(variance + layer.epsilon), mean, mean, variance])
        got = keras.ops.convert_to_numpy(deep(images, training=False))
        result["plain_delta_difference"] = float(np.abs(got - expected).max())
        keras.backend.clear_session()
    print(f"resnet-{6 * deep_n + 2} (extra blocks: last BN gamma = 0) vs resnet-8: "
          f"max |difference| {result['residual_difference']:.1e}")
    print(f"plain-{6 * deep_n + 2} (extra blocks: last BN gamma = 0): spread of the output over "
          f"images {result['plain_zero_spread']:.1e} (a constant function)")
    print(f"plain-{6 * deep_n + 2} (extra blocks: delta kernels, BN undone) vs plain-8: "
          f"max |difference| {result['plain_delta_difference']:.1e}")
    return result
