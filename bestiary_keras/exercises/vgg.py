"""Worked solutions of notebook 01's exercises (VGG).

1. ``solution_1``: three stacked 3x3 convolutions against one 7x7: receptive field and
   parameters, counted by hand and checked on Keras layers; the receptive field of VGG-16.
2. ``solution_2``: dense evaluation is a sliding window, but not of independent crops: the
   score map's size by hand, and where the dense scores differ from the crops' scores.
3. ``solution_3``: why the paper pre-trained net A: the signal's scale through the narrow
   VGG-16 at initialisation with N(0, 0.01^2), Glorot and He weights, predicted and measured.

Run one with ``from bestiary_keras.exercises import vgg as exercises; exercises.solution_1()``
(the alias keeps the notebook's own module of the same name).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from bestiary_keras.classification import vgg as vgg_nets
from bestiary_keras.classification import vgg_protocol
from bestiary_keras.datasets.scenes import make_scenes

__all__ = ["receptive_field", "solution_1", "solution_2", "solution_3"]


def receptive_field(model, until: str | None = None) -> dict:
    """Receptive field (pixels) and cumulative stride after every conv / pooling layer.

    A layer with kernel ``k`` at cumulative input stride ``s`` widens the field by
    ``(k - 1) * s`` and multiplies the stride by its own; read from the layers' configurations
    alone (no weights, no forward pass).

    Args:
        model: a functional model whose layers form a chain (e.g. ``vgg.vgg(...)``).
        until: stop after the layer of this name.

    Returns:
        ``{layer name: (field, stride)}`` in the order of the layers.
    """
    field, stride, out = 1, 1, {}
    for layer in model.layers:
        config = layer.get_config()
        kernel = config.get("kernel_size") or config.get("pool_size")
        if kernel is not None:
            field += (kernel[0] - 1) * stride
            stride *= config.get("strides", (1,))[0] or 1
            out[layer.name] = (field, stride)
        if layer.name == until:
            break
    return out


def _gradient_support(model, size: int) -> int:
    """Side of the input square that reaches the centre output (non-zero gradient)."""
    import tensorflow as tf

    x = tf.random.stateless_normal((1, size, size, model.input_shape[-1]), seed=(1, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = model(x)
        centre = y.shape[1] // 2
        target = tf.reduce_sum(y[0, centre, centre])
    grad = tf.reduce_sum(tf.abs(tape.gradient(target, x)[0]), axis=-1).numpy()
    rows = np.flatnonzero(grad.sum(axis=1) > 0)
    return int(rows.max() - rows.min() + 1)


def solution_1(channels: int = 64, seed: int = 0) -> dict:
    """Exercise 1: three stacked 3x3 convolutions against one 7x7 convolution.

    Exercise. The paper replaces a 7x7 convolution by three 3x3 ones (C channels in and out).
    Compute by hand the receptive field and the parameters of both, check them on Keras layers,
    then compute the receptive field of VGG-16's ``block5_conv3``, ``block5_pool`` and of one
    location of the fully convolutional ``fc1`` (a 7x7 kernel on the stride-32 map).

    Method. Receptive field: each 3x3 layer at stride 1 adds 2 pixels, so 1 + 3 * 2 = 7, the
    same as one 7x7; measured as the side of the input square whose gradient reaches the
    centre output. Parameters: 3 (9 C^2 + C) = 27 C^2 + 3 C against 49 C^2 + C (the 7x7 has
    81% more weights), counted by ``count_params``. The 3x3 stack also has three ReLUs instead
    of one. VGG-16's fields: ``receptive_field`` on the built model (layer configurations
    only), plus (7 - 1) * 32 pixels for ``fc1`` as a convolution.

    Expected outcome (exact): both fields 7 pixels; 110,784 against 200,768 parameters for
    C = 64 (ratio 0.552); VGG-16: 196 pixels at ``block5_conv3``, 212 at ``block5_pool``, 404
    for one location of the dense ``fc1``: at test time each score sees well beyond its 224
    pixel window when the image is larger.

    Returns:
        dict with ``field_3x3``, ``field_7x7``, ``params_3x3``, ``params_7x7``,
        ``hand_3x3``, ``hand_7x7``, ``vgg16_fields``.
    """
    keras.utils.set_random_seed(seed)
    c = int(channels)
    stack = keras.Sequential([keras.Input((None, None, c))]
                             + [layers.Conv2D(c, 3, activation="relu") for _ in range(3)],
                             name="three_3x3")
    single = keras.Sequential([keras.Input((None, None, c)), layers.Conv2D(c, 7, activation="relu")],
                              name="one_7x7")
    # linear copies for the field: a ReLU may zero a path by chance, the geometry does not
    linear = keras.Sequential([keras.Input((None, None, c))]
                              + [layers.Conv2D(c, 3) for _ in range(3)])
    result = {
        "field_3x3": _gradient_support(linear, 15),
        "field_7x7": _gradient_support(keras.Sequential([keras.Input((None, None, c)),
                                                         layers.Conv2D(c, 7)]), 15),
        "params_3x3": stack.count_params(),
        "params_7x7": single.count_params(),
        "hand_3x3": 3 * (9 * c * c + c),
        "hand_7x7": 49 * c * c + c,
    }
    net = vgg_nets.vgg16(include_top=False, kernel_initializer="zeros")  # geometry only
    fields = receptive_field(net)
    conv5, pool5 = fields["block5_conv3"], fields["block5_pool"]
    result["vgg16_fields"] = {"block5_conv3": conv5[0], "block5_pool": pool5[0],
                              "fc1 (as a 7x7 conv)": pool5[0] + (7 - 1) * pool5[1]}
    print(f"{'':22s} {'3 x conv3x3':>12s} {'1 x conv7x7':>12s}")
    print(f"{'receptive field (px)':22s} {result['field_3x3']:>12d} {result['field_7x7']:>12d}")
    print(f"{'parameters (Keras)':22s} {result['params_3x3']:>12,} {result['params_7x7']:>12,}")
    print(f"{'parameters (by hand)':22s} {result['hand_3x3']:>12,} {result['hand_7x7']:>12,}")
    print(f"{'ReLUs':22s} {3:>12d} {1:>12d}")
    print("VGG-16 receptive fields (px):", result["vgg16_fields"])
    return result


def _conv_multiply_adds(model) -> int:
    """Multiply-adds of the model's Conv2D layers (output positions x kernel x channels)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k0, k1 = layer.kernel_size
            total += h * w * k0 * k1 * layer.input.shape[-1] * c_out
    return int(total)


def solution_2(seed: int = 0, scales=(64, 96, 128, 224)) -> dict:
    """Exercise 2: dense evaluation against crops: the score map's size and its values.

    Exercise. Notebook 01's narrow net D is trained on 64 x 64 crops; ``fully_convolutional``
    applies it to a ``Q x Q`` image. Predict the score map's size for Q = 64, 96, 128, 224,
    then compare each location's scores with those of the original net on the 64 x 64 crop
    that the location "sees" (``[32 j, 32 i, 32 j + 64, 32 i + 64]``). Are they the same? How
    many multiply-adds of the convolutions does the dense pass save against the crops?

    Method. Five 2x2 poolings give a stride of 32 and ``fc1`` becomes a 2x2 convolution on the
    ``Q / 32`` map, so the map has ``(Q - 64) / 32 + 1`` locations per side. A random
    (untrained) narrow net D is enough: the question is about the computation, not about what
    was learnt. The crops are cut from a mosaic of generated scenes and run through the
    original model; differences are reported relative to the spread of the crop logits.
    Convolution multiply-adds grow with the image area, so the dense pass costs
    ``Q^2 / (n^2 64^2)`` of the ``n^2`` separate crops.

    Expected outcome: maps of 1 x 1, 2 x 2, 3 x 3, 6 x 6 (exact); at Q = 64 the dense scores
    equal the crop's (difference 0); for every larger Q they differ at every location, by 0.35
    to 2.8 standard deviations of the crop logits (seeds 0-2). Inside the image a location's
    convolutions see the neighbouring pixels where the crop had zero padding: one location's
    receptive field is 244 pixels, not 64 (the paper, Sec. 3.2: dense evaluation pads with
    the image itself and captures more context; the crops' zero padding is a different
    boundary condition, which is why the paper found the two complementary). At Q = 224 the
    dense pass needs 0.340 of the 36 crops' convolution multiply-adds (exact:
    224^2 / (36 * 64^2)).

    Returns:
        dict ``{Q: {"map": (rows, cols), "hand": n, "relative_difference": ..., "mac_ratio":
        ...}}`` and ``"field"`` (receptive field of one location, pixels).
    """
    keras.utils.set_random_seed(seed)
    size, num_classes = 64, 6
    model = vgg_nets.vgg("D", input_shape=(size, size, 3), num_classes=num_classes, base_width=8,
                         fc_units=64, kernel_initializer="he_normal",
                         fc_initializer="glorot_uniform", classifier_activation=None,
                         name="narrow_vgg_D")
    dense = vgg_protocol.fully_convolutional(model)
    tiles = make_scenes(16, size, max_objects=1, object_size=(24, 56), seed=seed).images
    mosaic = tiles.reshape(4, 4, size, size, 3).transpose(0, 2, 1, 3, 4).reshape(4 * size,
                                                                                4 * size, 3)
    pool5_field, pool5_stride = receptive_field(model, until="block5_pool")["block5_pool"]
    fc1_side = model.get_layer("block5_pool").output.shape[1]  # fc1's kernel as a convolution
    result = {"field": pool5_field + (fc1_side - 1) * pool5_stride}
    print(f"{'Q':>4s} {'map (hand)':>11s} {'map (net)':>10s} {'rel. difference, min - max':>28s} "
          f"{'conv MACs dense / crops':>24s}")
    for q in scales:
        image = vgg_nets.preprocess(mosaic[None, :q, :q])
        scores = keras.ops.convert_to_numpy(dense(image, training=False))[0]
        rows, cols = scores.shape[:2]
        hand = (q - size) // vgg_nets.TOTAL_STRIDE + 1
        crops = np.stack([image[0, 32 * i:32 * i + size, 32 * j:32 * j + size]
                          for i in range(rows) for j in range(cols)])
        crop_scores = keras.ops.convert_to_numpy(model(crops, training=False))
        difference = np.abs(scores.reshape(-1, num_classes) - crop_scores)
        relative = difference.max(axis=1) / crop_scores.std()
        body_q = vgg_nets.vgg("D", input_shape=(q, q, 3), base_width=8, include_top=False,
                              kernel_initializer="zeros")
        body_crop = vgg_nets.vgg("D", input_shape=(size, size, 3), base_width=8,
                                 include_top=False, kernel_initializer="zeros")
        ratio = _conv_multiply_adds(body_q) / (rows * cols * _conv_multiply_adds(body_crop))
        result[q] = {"map": (rows, cols), "hand": hand, "relative_difference": relative,
                     "mac_ratio": ratio, "hand_mac_ratio": q * q / (rows * cols * size * size)}
        print(f"{q:>4d} {f'{hand} x {hand}':>11s} {f'{rows} x {cols}':>10s} "
              f"{relative.min():>9.2e} - {relative.max():<8.2e} {ratio:>18.3f}")
    print(f"receptive field of one location: {result['field']} pixels (window {size})")
    return result


def solution_3(seed: int = 0, image_size: int = 112, base_width: int = 32) -> dict:
    """Exercise 3: the signal's scale through VGG-16 at initialisation.

    Exercise. The paper initialised with N(0, 0.01^2) weights and had to train the shallow net
    A first, because deeper nets stalled from such a start. For a 3x3 convolution with ``C_in``
    input channels, zero-mean weights of variance ``sigma^2`` and a ReLU, predict the factor by
    which the root mean square (RMS) of the activations changes, then the factor across the 13
    convolutions of (narrow) VGG-16 for N(0, 0.01^2), Glorot-uniform and He-normal weights.

    Method. ``z = sum w x`` over ``n = 9 C_in`` inputs has ``E[z^2] = n sigma^2 E[x^2]``
    whatever ``x`` is, and the ReLU keeps half of the symmetric ``z``'s second moment, so
    ``RMS(out) / RMS(in) = sqrt(n sigma^2 / 2)`` (times the fraction of the 3x3 window inside
    the map, for 'same' padding at the borders). N(0, 0.01^2): ``sigma^2 = 10^-4``; Glorot
    uniform: ``2 / (n_in + n_out)``; He normal: ``2 / n`` (a gain of exactly 1). Measured: the
    RMS of each convolution's output over its input's, on two generated scenes, for every
    conv of a VGG-16 of half the paper's width (``base_width`` 32: fewer channels make one
    draw of the weights noisier); the product over the 13 layers leaves the max-poolings out.

    Expected outcome (``base_width`` 32, 112-pixel scenes, seeds 0-2): per layer, measured and
    predicted gains agree within 30% (worst layer 1.18-1.29x); over the 13 layers (log10 of
    the product of the RMS ratios) N(0, 0.01^2) gives -8.7 to -9.3 (predicted -9.3), Glorot
    -3.0 to -3.3 (predicted -2.8), He -0.1 to -0.6 (predicted -0.2). With the paper's
    initialisation the signal, and the gradient on its way back, shrinks by ~10^9 across the
    convolutions: the reason why the deep nets stalled and net A was trained first (and why
    the paper notes that Glorot's initialisation would have made that unnecessary).

    Returns:
        dict ``{init name: {"predicted_log10": ..., "measured_log10": ...,
        "worst_layer_ratio": ...}}`` (``worst_layer_ratio``: the largest
        ``max(measured / predicted, predicted / measured)`` over the layers).
    """
    scenes = make_scenes(2, image_size, max_objects=1,
                         object_size=(image_size // 3, image_size * 3 // 4), seed=seed)
    images = vgg_nets.preprocess(scenes.images)
    inits = {
        "N(0, 0.01^2)": lambda: keras.initializers.RandomNormal(0.0, 0.01),
        "Glorot uniform": lambda: keras.initializers.GlorotUniform(),
        "He normal": lambda: keras.initializers.HeNormal(),
    }
    result = {}
    print(f"{'initialisation':16s} {'log10 RMS gain, 13 convs: predicted':>36s} {'measured':>9s}"
          f" {'worst layer (meas./pred.)':>26s}")
    for name, make_init in inits.items():
        keras.utils.set_random_seed(seed)
        net = vgg_nets.vgg("D", input_shape=(image_size, image_size, 3), base_width=base_width,
                           include_top=False, kernel_initializer=make_init(), name="vgg16_init")
        convs = [layer for layer in net.layers if isinstance(layer, layers.Conv2D)]
        probe = keras.Model(net.input, [t for c in convs for t in (c.input, c.output)])
        values = [keras.ops.convert_to_numpy(v) for v in probe(images, training=False)]
        predicted, measured = [], []
        for k, conv in enumerate(convs):
            x, y = values[2 * k], values[2 * k + 1]
            c_in, c_out = x.shape[-1], y.shape[-1]
            n_in, n_out = 9 * c_in, 9 * c_out
            variance = {"N(0, 0.01^2)": 1e-4, "Glorot uniform": 2.0 / (n_in + n_out),
                        "He normal": 2.0 / n_in}[name]
            h, w = x.shape[1:3]
            inside = (3 * h - 2) / (3 * h) * (3 * w - 2) / (3 * w)  # 'same' padding at borders
            predicted.append(0.5 * np.log10(0.5 * n_in * variance * inside))
            measured.append(np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))
                                     / np.sqrt(np.mean(x.astype(np.float64) ** 2))))
        worst = float(10 ** np.max(np.abs(np.array(measured) - np.array(predicted))))
        result[name] = {"predicted_log10": float(np.sum(predicted)),
                        "measured_log10": float(np.sum(measured)), "worst_layer_ratio": worst}
        print(f"{name:16s} {np.sum(predicted):>36.2f} {np.sum(measured):>9.2f} {worst:>26.3f}")
        keras.backend.clear_session()
    return result
