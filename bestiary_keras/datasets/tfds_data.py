"""Real datasets through TensorFlow Datasets (TFDS), read from disk only.

The project never downloads at run time: every loader reads a dataset that was prepared
beforehand (``tfds build NAME --data_dir DIR`` on a machine with internet) and raises a
``DatasetNotAvailableError`` that says exactly what to run when it is missing. Pass
``download=True`` explicitly to let TFDS download and prepare it.

Conventions are those of ``make_scenes``: images uint8, boxes float32
``[x_min, y_min, x_max, y_max]`` in pixels of the returned (resized) image, segmentation maps
with 0 = background.

TensorFlow and TFDS are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import struct

import numpy as np

__all__ = [
    "DatasetNotAvailableError", "incomplete_data_problem", "load_pets_localization",
    "load_pets_segmentation", "load_tfds", "not_available_message", "PET_BREEDS", "PET_SPECIES",
    "PET_TRIMAP_CLASSES", "tfds_data_dir",
]

PET_SPECIES = ("cat", "dog")
"""``species`` labels of ``oxford_iiit_pet`` (TFDS names them "Cat", "Dog")."""

PET_BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
    "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees",
    "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher",
    "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard",
    "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)  # fmt: skip
"""The 37 breed labels of ``oxford_iiit_pet`` (``label`` feature), in TFDS's order."""

PET_TRIMAP_CLASSES = ("background", "pet", "border")
"""Classes of ``load_pets_segmentation`` masks (the trimap's 2, 1, 3 remapped to 0, 1, 2)."""

_DOWNLOAD_SIZES = {  # the downloads of TFDS 4.9's builders, as its catalogue gives them
    "oxford_iiit_pet": "about 790 MB", "mnist": "about 11 MB", "cifar10": "about 160 MB",
    "smallnorb": "about 250 MB", "voc/2007": "about 870 MB", "celeb_a": "about 1.4 GB",
    "lvis": "about 25 GB with the COCO images",
}


class DatasetNotAvailableError(RuntimeError):
    """A TFDS dataset is not prepared in the data directory (and downloading was not asked)."""


def tfds_data_dir(data_dir=None) -> str:
    """The TFDS data directory: ``data_dir``, else ``$TFDS_DATA_DIR``, else
    ``~/tensorflow_datasets`` (TFDS's own default)."""
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"),
                                                        "tensorflow_datasets"))


def not_available_message(name: str, data_dir, problem: str | None = None) -> str:
    """What to run to make dataset ``name`` available in ``data_dir``.

    ``problem``: what is wrong with a copy that is there but partly prepared or corrupt (a
    missing or cut-short shard, an unreadable ``dataset_info.json``); the message then says
    to delete that copy first.
    """
    base = name.split(":")[0]
    size = _DOWNLOAD_SIZES.get(base, "see the TFDS catalogue for its size")
    folder = os.path.join(data_dir, base)
    if problem is None:
        state, delete = "is not prepared", ""
    else:
        state = f"is only partly prepared or corrupt ({problem})"
        delete = f"Delete the folder {folder}; then, "
    return (
        f"TFDS dataset {name!r} {state} in {data_dir!r}, and this project never "
        f"downloads at run time. {delete}On a machine with internet run\n"
        f"    tfds build {base} --data_dir {data_dir}\n"
        f"(download {size}), then copy the folder {folder} "
        "to this machine (or set TFDS_DATA_DIR to where it is). To let TFDS download it here, "
        "pass download=True explicitly. See data/README.md."
    )


def _count_tfrecords(path: str, limit: int) -> int:
    """How many whole records the TFRecord file ``path`` holds (reads the 12-byte headers only).

    Stops at ``limit + 1``; a file cut short in its last record counts only the whole ones.
    """
    count, offset = 0, 0
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        while offset < size and count <= limit:
            header = file.read(8)  # uint64 length, then its CRC (4), data, data CRC (4)
            if len(header) < 8:
                break
            offset += 8 + 4 + struct.unpack("<Q", header)[0] + 4
            if offset > size:
                break
            count += 1
            file.seek(offset)
    return count


def incomplete_data_problem(builder, split) -> str | None:
    """What is missing from the prepared copy of ``builder``'s dataset for ``split``, or None.

    Checks, without reading any example, that the copy records its splits and that every
    shard file ``split`` reads is there, whole (each TFRecord shard holds the number of
    examples ``dataset_info.json`` records for it). A copy that is not on local disk, or a
    split name the dataset does not have (TFDS says so itself), is not checked.
    """
    version_dir = os.fspath(builder.data_dir)
    if "://" in version_dir or not os.path.isdir(version_dir):
        return None  # not on local disk, or not there at all (TFDS's own error says so)
    splits = builder.info.splits
    if not splits:
        return f"{version_dir} records no split: dataset_info.json is missing or incomplete"
    try:
        instructions = splits[split].file_instructions
    except Exception:  # noqa: BLE001 - an unknown split: let as_dataset raise its own error
        return None
    tfrecord = str(getattr(builder.info.file_format, "value", "")) == "tfrecord"
    for instruction in instructions:
        path = os.fspath(instruction.filename)
        if not os.path.isabs(path):
            path = os.path.join(version_dir, path)
        expected = int(instruction.examples_in_shard)
        if not os.path.isfile(path):
            return f"the shard {os.path.basename(path)} is missing"
        if tfrecord:
            found = _count_tfrecords(path, expected)
            if found != expected:
                return (f"the shard {os.path.basename(path)} holds {found} whole records, not "
                        f"the {expected} recorded: it was cut short")
    return None


def load_tfds(name: str, split, data_dir=None, download: bool = False, **as_dataset_kwargs):
    """A ``tf.data.Dataset`` of a TFDS dataset that is already prepared on disk.

    Args:
        name: TFDS name, optionally with version (``"oxford_iiit_pet"``, ``"mnist:3.0.1"``).
        split: TFDS split, slicing allowed (``"train[:80%]"``).
        data_dir: TFDS data directory (see ``tfds_data_dir``).
        download: download and prepare the dataset when missing (needs internet). Never
            done unless asked.
        **as_dataset_kwargs: passed to ``builder.as_dataset`` (``shuffle_files``,
            ``as_supervised``, ``decoders``, ...).

    Returns:
        The ``tf.data.Dataset`` of examples (dicts of features unless ``as_supervised``).

    Raises:
        DatasetNotAvailableError: the data is not in ``data_dir`` and ``download`` is False,
            or the copy there is partly prepared or corrupt (no split recorded, a shard
            missing or cut short, unreadable metadata); the message says which command
            prepares it.
    """
    import tensorflow_datasets as tfds

    data_dir = tfds_data_dir(data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise  # a name TFDS does not know
    except Exception as error:  # noqa: BLE001 - e.g. a cut-short dataset_info.json
        if not os.path.isdir(os.path.join(data_dir, name.split(":")[0])):
            raise
        problem = f"its metadata cannot be read: {type(error).__name__}"
        raise DatasetNotAvailableError(not_available_message(name, data_dir, problem)) from error
    if download:
        builder.download_and_prepare()
    problem = incomplete_data_problem(builder, split)
    if problem is not None:
        raise DatasetNotAvailableError(not_available_message(name, data_dir, problem))
    try:
        return builder.as_dataset(split=split, **as_dataset_kwargs)
    except (AssertionError, KeyError) as error:  # TFDS asserts when the data is not there
        if builder.is_prepared() and builder.info.splits:
            raise  # e.g. a split name the dataset does not have
        raise DatasetNotAvailableError(not_available_message(name, data_dir)) from error


def _resize_geometry(tf, height, width, size_hw, keep_aspect):
    """New (height, width) of the image content and its (top, left) offset in the output."""
    out_h, out_w = size_hw
    if not keep_aspect:
        return tf.constant(out_h), tf.constant(out_w), tf.constant(0), tf.constant(0)
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    scale = tf.minimum(out_h / h, out_w / w)
    new_h = tf.clip_by_value(tf.cast(tf.round(h * scale), tf.int32), 1, out_h)
    new_w = tf.clip_by_value(tf.cast(tf.round(w * scale), tf.int32), 1, out_w)
    return new_h, new_w, (out_h - new_h) // 2, (out_w - new_w) // 2


def _resize(tf, image, size_hw, keep_aspect, method):
    """Resizes (stretching, or keeping the aspect and padding with zeros), returns
    (resized, new_h, new_w, top, left)."""
    shape = tf.shape(image)
    new_h, new_w, top, left = _resize_geometry(tf, shape[0], shape[1], size_hw, keep_aspect)
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), method=method)
    if keep_aspect:
        resized = tf.image.pad_to_bounding_box(resized, top, left, size_hw[0], size_hw[1])
    return resized, new_h, new_w, top, left


def _image_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    try:
        h, w = image_size
        return int(h), int(w)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.") from None


@contextlib.contextmanager
def _reading(name, data_dir):
    """Around the iteration of a TFDS dataset: a shard that cannot be read (corrupt or gone)
    gives ``DatasetNotAvailableError`` with the command that prepares the data again."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.NotFoundError) as error:
        problem = f"a record cannot be read: {type(error).__name__}"
        raise DatasetNotAvailableError(
            not_available_message(name, tfds_data_dir(data_dir), problem)) from error


def _class_lookup(names, classes, dataset: str, hint: str = ""):
    """The class names kept and the table from a dataset's label to the kept label (-1: dropped).

    ``classes`` None keeps every name with the dataset's own labels; otherwise a sequence of
    distinct names from ``names``, whose positions become the labels.
    """
    if classes is None:
        return tuple(names), np.arange(len(names))
    if isinstance(classes, str):
        raise ValueError(f"classes must be a sequence of {dataset} class names, got the string "
                         f"{classes!r} (write ({classes!r},) for one class).")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ValueError(f"classes {unknown} are not {dataset} class names{hint}.")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must name each kept class once, got {classes!r}.")
    lookup = np.full(len(names), -1)
    lookup[[names.index(c) for c in classes]] = np.arange(len(classes))
    return classes, lookup


def _to_numpy(dataset, max_examples, name, data_dir):
    """The examples as NumPy arrays; a shard that cannot be read gives DatasetNotAvailableError."""
    if max_examples is not None:
        dataset = dataset.take(int(max_examples))
    with _reading(name, data_dir):
        batches = list(dataset.batch(256).as_numpy_iterator())
    if not batches:
        return None
    return tuple(np.concatenate([b[k] for b in batches]) for k in range(len(batches[0])))


def _label_key(label: str) -> str:
    if label not in ("species", "breed"):
        raise ValueError(f"label must be 'species' (cat/dog) or 'breed' (37 classes), got {label!r}.")
    return "species" if label == "species" else "label"


def load_pets_localization(
    split="train",
    image_size=128,
    *,
    label: str = "species",
    keep_aspect: bool = False,
    data_dir=None,
    download: bool = False,
    max_examples: int | None = None,
):
    """Oxford-IIIT Pet images with their head bounding box, for classification + localisation.

    TFDS ``oxford_iiit_pet`` 4.0.0 stores one ``head_bbox`` per image (``BBoxFeature``,
    normalised ``[y_min, x_min, y_max, x_max]``). Only the ``train`` split (the "trainval"
    list, 3,680 images) has head boxes; in ``test`` they are all zero. Images whose box is
    empty are dropped, so hold out part of ``train`` for evaluation, e.g.
    ``split="train[:80%]"`` and ``split="train[80%:]"``.

    Args:
        split: TFDS split (slicing allowed).
        image_size: output size, int or (height, width).
        label: ``"species"`` (cat 0, dog 1; see ``PET_SPECIES``) or ``"breed"`` (37 classes,
            ``PET_BREEDS``).
        keep_aspect: False stretches the image to ``image_size``; True keeps its aspect ratio
            and pads with black (boxes are shifted accordingly).
        data_dir, download: see ``load_tfds``.
        max_examples: read at most this many examples (before dropping empty boxes).

    Returns:
        ``(images, labels, boxes)``: uint8 (N, H, W, 3), int32 (N,), float32 (N, 4) boxes
        ``[x_min, y_min, x_max, y_max]`` in pixels of the resized image (the convention of
        ``make_scenes``).

    Raises:
        DatasetNotAvailableError: the dataset is not prepared in ``data_dir``.
        ValueError: bad arguments, or no example of ``split`` has a head box.
    """
    import tensorflow as tf

    size_hw = _image_size(image_size)
    key = _label_key(label)
    dataset = load_tfds("oxford_iiit_pet", split, data_dir=data_dir, download=download)

    def convert(example):
        image, new_h, new_w, top, left = _resize(tf, example["image"], size_hw, keep_aspect,
                                                 "bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        y0, x0, y1, x1 = tf.unstack(tf.cast(example["head_bbox"], tf.float32))
        sx, sy = tf.cast(new_w, tf.float32), tf.cast(new_h, tf.float32)
        ox, oy = tf.cast(left, tf.float32), tf.cast(top, tf.float32)
        box = tf.stack([x0 * sx + ox, y0 * sy + oy, x1 * sx + ox, y1 * sy + oy])
        return image, tf.cast(example[key], tf.int32), box

    def has_box(image, label_, box):
        del image, label_
        return tf.logical_and(box[2] > box[0], box[3] > box[1])

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if max_examples is not None:
        dataset = dataset.take(int(max_examples))
    arrays = _to_numpy(dataset.filter(has_box), None, "oxford_iiit_pet", data_dir)
    if arrays is None:
        raise ValueError(
            f"No example of split {split!r} has a head box: only the 'train' split of "
            "oxford_iiit_pet has them; use e.g. split='train[80%:]' for evaluation."
        )
    images, labels, boxes = arrays
    return images, labels.astype(np.int32), boxes.astype(np.float32)


def load_pets_segmentation(
    split="train",
    image_size=128,
    *,
    keep_aspect: bool = False,
    data_dir=None,
    download: bool = False,
    max_examples: int | None = None,
):
    """Oxford-IIIT Pet images with their trimap segmentation (both splits have trimaps).

    Args:
        split: TFDS split (slicing allowed); ``train`` has 3,680 images, ``test`` 3,669.
        image_size: output size, int or (height, width).
        keep_aspect: see ``load_pets_localization`` (padding is background).
        data_dir, download: see ``load_tfds``.
        max_examples: read at most this many examples.

    Returns:
        ``(images, masks)``: uint8 (N, H, W, 3) and uint8 (N, H, W) with 0 = background,
        1 = pet, 2 = border (the trimap's "not classified" ring; see ``PET_TRIMAP_CLASSES``).
        Masks are resized with nearest neighbour.
    """
    import tensorflow as tf

    size_hw = _image_size(image_size)
    dataset = load_tfds("oxford_iiit_pet", split, data_dir=data_dir, download=download)
    # trimap values: 1 = pet, 2 = background, 3 = border
    lookup = tf.constant([0, 1, 0, 2] + [0] * 252, tf.uint8)

    def convert(example):
        image, *_ = _resize(tf, example["image"], size_hw, keep_aspect, "bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        trimap = tf.gather(lookup, tf.cast(example["segmentation_mask"], tf.int32))
        mask, *_ = _resize(tf, trimap, size_hw, keep_aspect, "nearest")
        return image, tf.cast(mask[..., 0], tf.uint8)

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    arrays = _to_numpy(dataset, max_examples, "oxford_iiit_pet", data_dir)
    if arrays is None:
        raise ValueError(f"Split {split!r} of oxford_iiit_pet is empty.")
    return arrays
