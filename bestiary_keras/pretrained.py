"""ImageNet weights when they are already cached, random weights (and a message) otherwise.

``keras.applications`` downloads its weights on first use; the notebooks must run offline, so
``load_application`` looks for the weight file in the Keras cache first and never downloads::

    model, loaded = load_application("resnet50", include_top=False, input_shape=(64, 64, 3))

If the file is there (a machine that once ran ``keras.applications.ResNet50()`` with internet,
or a file copied into ``$KERAS_HOME/models``), the ImageNet weights are loaded; otherwise one
message says where the file was expected and how to get it, and the model is built with random
weights (``weights=None``). A cached file that is corrupt or incomplete (a partial download,
another network's weights under this name) is treated the same way, and the message says so.
The file names are the ones ``keras.applications`` uses
(``keras/src/applications/vgg16.py``, ``vgg19.py``, ``resnet.py``).
"""

from __future__ import annotations

import os

import keras

__all__ = [
    "APPLICATIONS",
    "CACHE_SUBDIR",
    "cache_dirs",
    "cached_weights_path",
    "keras_home",
    "load_application",
    "unreadable_weights_problem",
    "weights_file_name",
]

APPLICATIONS = {
    # name: (keras.applications attribute, file with top, file without top)
    "vgg16": (
        "VGG16",
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "vgg19": (
        "VGG19",
        "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": (
        "ResNet50",
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet101": (
        "ResNet101",
        "resnet101_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet152": (
        "ResNet152",
        "resnet152_weights_tf_dim_ordering_tf_kernels.h5",
        "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}
"""The supported ``keras.applications`` builders and their cached weight file names."""

CACHE_SUBDIR = "models"


def keras_home():
    """The Keras cache root as ``keras.utils.get_file`` resolves it, read at call time.

    ``$KERAS_HOME`` if set, else ``~/.keras`` (``/tmp/.keras`` when the home directory is not
    writable, as Keras does).
    """
    if "KERAS_HOME" in os.environ:
        return os.path.expanduser(os.environ["KERAS_HOME"])
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def cache_dirs():
    """Folders where a cached weight file may be, in the order they are searched.

    ``get_file`` falls back to ``/tmp/.keras`` when the cache root is not writable, so a file
    downloaded under that fallback is found too.
    """
    dirs = [os.path.join(keras_home(), CACHE_SUBDIR)]
    fallback = os.path.join("/tmp", ".keras", CACHE_SUBDIR)
    if fallback not in dirs and not os.access(keras_home(), os.W_OK):
        dirs.append(fallback)
    return dirs


def weights_file_name(name, include_top=True):
    """The file name ``keras.applications`` caches the ImageNet weights of ``name`` under.

    Args:
        name: one of ``APPLICATIONS`` (case-insensitive), e.g. ``"resnet50"``.
        include_top: the weights with the classifier (``True``) or without it (``"_notop"``).

    Returns:
        The file name (no folder).
    """
    return APPLICATIONS[_check_name(name)][1 if include_top else 2]


def cached_weights_path(name, include_top=True):
    """Path of the cached weight file for ``name``, or ``None`` when it is not cached."""
    file_name = weights_file_name(name, include_top)
    for folder in cache_dirs():
        path = os.path.join(folder, file_name)
        if os.path.isfile(path):
            return path
    return None


def _check_name(name):
    key = str(name).lower()
    if key not in APPLICATIONS:
        raise ValueError(
            f"Unknown application name={name!r}: expected one of {', '.join(APPLICATIONS)}."
        )
    return key


def load_application(name, **kwargs):
    """Builds a ``keras.applications`` model with ImageNet weights if cached, never downloading.

    Args:
        name: ``"vgg16"``, ``"vgg19"``, ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
        **kwargs: passed to the Keras builder (``include_top``, ``input_shape``, ``pooling``,
            ``classes``, ...). ``weights`` is chosen here and must not be given.

    Returns:
        ``(model, loaded)``: the ``keras.Model`` and ``True`` when the ImageNet weights were
        loaded, ``False`` when the model has random weights because the file is not cached
        or cannot be used (corrupt, incomplete, another network's weights; see
        ``unreadable_weights_problem``).
    """
    key = _check_name(name)
    if "weights" in kwargs:
        raise ValueError(
            "load_application chooses `weights` itself (ImageNet when cached, else None); "
            f"do not pass weights={kwargs['weights']!r}. Call keras.applications directly "
            "to load another file."
        )
    builder_name = APPLICATIONS[key][0]
    builder = getattr(keras.applications, builder_name)
    include_top = kwargs.get("include_top", True)
    path = cached_weights_path(key, include_top)
    problem = None if path is None else unreadable_weights_problem(path)
    if path is None or problem is not None:
        return _random_weights(builder, builder_name, key, include_top, path, problem, kwargs)
    if include_top and kwargs.get("classes", 1000) != 1000:
        raise ValueError(
            f"The ImageNet top of {builder_name} has 1000 classes; got classes="
            f"{kwargs['classes']}. Use include_top=False and add your own head."
        )
    # A path (not "imagenet") makes the builder load that file and skip ``get_file``.
    try:
        model = builder(weights=path, **kwargs)
    except ValueError as error:
        # A readable HDF5 file whose layers do not match (another network's weights saved
        # under this name). Building without weights raises again if the arguments are wrong.
        if "mismatch" not in str(error).lower():
            raise
        return _random_weights(builder, builder_name, key, include_top, path, str(error), kwargs)
    return model, True


def unreadable_weights_problem(path):
    """Why the cached weight file ``path`` cannot be used, or ``None`` when it reads.

    Checks what loading needs without reading the weights themselves: the file opens as HDF5
    (a truncated or partial download fails here: HDF5 compares the file's length with the one
    it recorded) and lists its layers (``layer_names``, as ``keras.applications`` files do).

    Returns:
        ``None``, or one line saying what is wrong with the file.
    """
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if "layer_names" not in file.attrs:
                return "it holds no Keras weights (no layer_names)"
            for layer in file.attrs["layer_names"]:
                layer = layer.decode("utf8") if isinstance(layer, bytes) else str(layer)
                file[layer].attrs["weight_names"]
    except (OSError, KeyError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _random_weights(builder, builder_name, key, include_top, path, problem, kwargs):
    """The model with random weights, after one message saying why and how to get the file."""
    model = builder(weights=None, **kwargs)
    folder = cache_dirs()[0]
    file_name = weights_file_name(key, include_top)
    expected = os.path.join(folder, file_name)
    if problem is None:
        reason, fix = f"are not cached at {expected}", ""
    else:
        reason = f"are not cached: the file {path} is corrupt or incomplete ({problem})"
        fix = "delete that file, "
    print(
        f"ImageNet weights for {builder_name} {reason}; continuing with random weights. To get "
        f"them, {fix}run `python -c \"import keras; keras.applications.{builder_name}("
        f"include_top={include_top})\"` on a machine with internet, then copy "
        f"~/.keras/{CACHE_SUBDIR}/{file_name} from there into {folder}."
    )
    return model, False
