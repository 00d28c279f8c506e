"""Probes of issue 15 (items 8, 9, 11): bad downloads, interrupted cache saves, bad builder input.

Each test reproduces a probe that used to crash deep inside a library, leak a file or build
nonsense, and checks the clear behaviour that replaced it. Tiny models and data only.
"""

import errno
import os
import shutil
import stat
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from bestiary_keras import pretrained  # noqa: E402
from bestiary_keras.datasets import cache as cache_module  # noqa: E402
from bestiary_keras.datasets import tfds_data  # noqa: E402
from bestiary_keras.datasets.scenes import make_scenes  # noqa: E402
from bestiary_keras.datasets.tfds_data import DatasetNotAvailableError, load_tfds  # noqa: E402
from bestiary_keras.detection import (  # noqa: E402
    backbones, fast_rcnn, proposals, rcnn, yolo_data, yolov2)
from bestiary_keras.segmentation import metrics  # noqa: E402
from bestiary_keras.segmentation.refinenet import refinenet  # noqa: E402
from bestiary_keras.segmentation.segnet import segnet  # noqa: E402
from bestiary_keras.segmentation.unet import unet  # noqa: E402


# ============================================================ item 8: partial or corrupt downloads
class BestiaryProbeCounts(tfds.core.GeneratorBasedBuilder):
    """A two-split dataset prepared offline in a test folder (one TFRecord shard per split)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict({"x": tfds.features.Tensor(shape=(), dtype=np.int64)})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(20), "test": self._generate_examples(6)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"x": i}


PROBE = "bestiary_probe_counts"


@pytest.fixture(scope="module")
def prepared_copy(tmp_path_factory):
    """A complete prepared copy of ``BestiaryProbeCounts`` (prepared once, copied per test)."""
    folder = tmp_path_factory.mktemp("tfds_prepared")
    BestiaryProbeCounts(data_dir=str(folder)).download_and_prepare()
    return folder


@pytest.fixture
def data_dir(prepared_copy, tmp_path):
    target = tmp_path / "tfds"
    shutil.copytree(prepared_copy, target)
    return target


def _shard(data_dir, split):
    (path,) = (data_dir / PROBE / "1.0.0").glob(f"{PROBE}-{split}.tfrecord-*")
    return path


def _assert_clear_message(error, name, data_dir):
    message = str(error.value)
    assert f"tfds build {name} --data_dir {data_dir}" in message  # the unprepared case's command
    assert "never downloads at run time" in message and "download=True" in message
    return message


def test_complete_copy_loads_every_split_and_slice(data_dir):
    values = [int(x["x"]) for x in load_tfds(PROBE, "train", data_dir=data_dir)]
    assert sorted(values) == list(range(20))
    assert len(list(load_tfds(PROBE, "test[2:]", data_dir=data_dir))) == 4
    assert len(list(load_tfds(PROBE, "train[:50%]+test", data_dir=data_dir))) == 16


def test_cut_short_shard(data_dir):
    shard = _shard(data_dir, "train")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size * 2 // 3])  # a partial copy
    with pytest.raises(DatasetNotAvailableError) as error:
        load_tfds(PROBE, "train[:10%]", data_dir=data_dir)
    message = _assert_clear_message(error, PROBE, data_dir)
    assert "only partly prepared or corrupt" in message and "cut short" in message
    assert f"Delete the folder {data_dir / PROBE}" in message
    # the other split's shard is whole: still readable
    assert len(list(load_tfds(PROBE, "test", data_dir=data_dir))) == 6


def test_missing_shard(data_dir):
    _shard(data_dir, "test").unlink()
    with pytest.raises(DatasetNotAvailableError, match="is missing") as error:
        load_tfds(PROBE, "test", data_dir=data_dir)
    _assert_clear_message(error, PROBE, data_dir)


def test_garbage_shard(data_dir):
    _shard(data_dir, "test").write_bytes(b"not a TFRecord file")
    with pytest.raises(DatasetNotAvailableError, match="holds 0 whole records, not the 6"):
        load_tfds(PROBE, "test", data_dir=data_dir)


def test_unreadable_metadata(data_dir):
    info = data_dir / PROBE / "1.0.0" / "dataset_info.json"
    info.write_text(info.read_text()[:40])  # was: protobuf ParseError from tfds.builder
    with pytest.raises(DatasetNotAvailableError, match="metadata cannot be read") as error:
        load_tfds(PROBE, "train", data_dir=data_dir)
    _assert_clear_message(error, PROBE, data_dir)


@pytest.mark.parametrize("with_metadata", [False, True])
def test_version_folder_without_splits(tmp_path, with_metadata):
    """Was ``KeyError: splits is empty`` (notebook 08 only catches DatasetNotAvailableError)."""
    version = tmp_path / "mnist" / "3.0.1"
    version.mkdir(parents=True)
    if with_metadata:  # dataset_info.json and features.json, no split: an interrupted copy
        tfds.builder("mnist", data_dir=str(tmp_path / "elsewhere")).info.write_to_directory(
            str(version))
    with pytest.raises(DatasetNotAvailableError, match="records no split") as error:
        load_tfds("mnist", "test", data_dir=tmp_path)
    _assert_clear_message(error, "mnist", tmp_path)


def test_pets_loader_on_a_partial_copy(tmp_path):
    """Notebook 08's call, on a version folder that holds nothing yet."""
    (tmp_path / "oxford_iiit_pet" / "4.0.0").mkdir(parents=True)
    with pytest.raises(DatasetNotAvailableError) as error:
        tfds_data.load_pets_segmentation("train", 32, data_dir=tmp_path, max_examples=2)
    _assert_clear_message(error, "oxford_iiit_pet", tmp_path)


def test_unreadable_record_while_reading(tmp_path):
    """A shard whose framing is whole but whose bytes are not: caught while converting."""
    path = str(tmp_path / "records.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(b"x" * 64)
    data = bytearray(open(path, "rb").read())
    data[20] ^= 0xFF  # inside the record: its checksum no longer matches
    open(path, "wb").write(bytes(data))
    dataset = tf.data.TFRecordDataset(path).map(lambda record: (record,))
    with pytest.raises(DatasetNotAvailableError, match="a record cannot be read"):
        tfds_data._to_numpy(dataset, None, "oxford_iiit_pet", tmp_path)


def test_unknown_split_is_still_tfds_own_error(data_dir):
    with pytest.raises((KeyError, ValueError), match="validation"):
        load_tfds(PROBE, "validation", data_dir=data_dir)


# ----------------------------------------------------------------------------- weights
@pytest.fixture
def offline_cache(monkeypatch, tmp_path):
    """An empty Keras cache in tmp_path, and any download attempt fails."""
    from keras.src.utils import file_utils

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: get_file{args}")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", no_download)
    monkeypatch.setattr(file_utils, "get_file", no_download)
    (tmp_path / "models").mkdir()
    return tmp_path / "models" / pretrained.weights_file_name("vgg16", include_top=False)


def _hdf5_bytes(path):
    """Writes a small file laid out as Keras' legacy weight files are; returns its bytes."""
    with h5py.File(path, "w") as file:
        file.attrs["layer_names"] = [b"dense"]
        layer = file.create_group("dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0"]
        layer.create_dataset("dense/kernel:0", data=np.arange(50_000, dtype="float32"))
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "another network"])
def test_corrupt_weight_file_gives_random_weights_and_a_message(offline_cache, capsys, damage):
    whole = _hdf5_bytes(offline_cache)
    if damage == "truncated":  # was: OSError "truncated file" from h5py
        offline_cache.write_bytes(whole[: len(whole) // 2])
    elif damage == "empty":
        offline_cache.write_bytes(b"")
    elif damage == "garbage":
        offline_cache.write_bytes(b"<html>502 Bad Gateway</html>")
    else:  # a readable HDF5 file whose one layer is not VGG16's 13 (ValueError in Keras)
        with h5py.File(offline_cache, "w") as file:
            file.attrs["layer_names"] = [b"other"]
            file.create_group("other").attrs["weight_names"] = []
    keras.utils.set_random_seed(0)
    model, loaded = pretrained.load_application("vgg16", include_top=False,
                                                input_shape=(32, 32, 3))
    message = capsys.readouterr().out
    assert loaded is False and model.name == "vgg16"
    assert "ImageNet weights for VGG16 are not cached" in message
    assert f"the file {offline_cache} is corrupt or incomplete" in message
    assert "continuing with random weights" in message and "delete that file" in message
    if damage == "truncated":
        # the same random weights as when the file is missing: one build, weights=None
        offline_cache.unlink()
        keras.utils.set_random_seed(0)
        missing, loaded = pretrained.load_application("vgg16", include_top=False,
                                                      input_shape=(32, 32, 3))
        assert loaded is False
        for a, b in zip(model.weights, missing.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_unreadable_weights_problem_names_the_cause(tmp_path):
    path = tmp_path / "w.h5"
    whole = _hdf5_bytes(path)
    assert pretrained.unreadable_weights_problem(path) is None
    path.write_bytes(whole[:1000])
    assert "truncated" in pretrained.unreadable_weights_problem(path)
    with h5py.File(path, "w") as file:
        file.create_dataset("x", data=[1])
    assert "no layer_names" in pretrained.unreadable_weights_problem(path)


# ============================================================ item 9: no temporary file left
def _temporaries(folder):
    return sorted(p.name for p in folder.glob("*" + cache_module.TEMPORARY_SUFFIX))


def _failing_save(error):
    def save(file, **arrays):
        file.write(b"the first bytes of a long file")  # a save that fails part-way
        raise error

    return save


@pytest.mark.parametrize("error, raised", [
    (OSError(errno.ENOSPC, "No space left on device"), None),  # disk full: not saved, no error
    (KeyboardInterrupt(), KeyboardInterrupt),  # Ctrl-C during the save
    (ValueError("cannot compress"), ValueError),
])
def test_interrupted_save_leaves_no_temporary_file(tmp_path, monkeypatch, error, raised):
    monkeypatch.setattr(np, "savez_compressed", _failing_save(error))
    path = tmp_path / "cache" / "scenes_x.npz"
    if raised is None:
        assert cache_module.save_npz_atomic(path, a=np.zeros(3)) is False
    else:
        with pytest.raises(raised):
            cache_module.save_npz_atomic(path, a=np.zeros(3))
    assert list(path.parent.iterdir()) == []


def test_unwritable_cache_is_not_an_error(tmp_path):
    (tmp_path / "file").write_text("a file where the cache folder should be")
    assert cache_module.save_npz_atomic(tmp_path / "file" / "x.npz", a=np.zeros(1)) is False


def test_stale_temporaries_are_swept_fresh_ones_kept(tmp_path):
    stale, fresh = tmp_path / "tmpold.tmp.npz", tmp_path / "tmpnew.tmp.npz"
    stale.write_bytes(b"killed mid-save two hours ago")
    fresh.write_bytes(b"another process, saving right now")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert cache_module.save_npz_atomic(tmp_path / "x.npz", a=np.arange(4))
    assert _temporaries(tmp_path) == ["tmpnew.tmp.npz"]
    with np.load(tmp_path / "x.npz") as data:
        np.testing.assert_array_equal(data["a"], np.arange(4))


def test_scene_and_proposal_caches_leak_nothing_and_share_one_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("BESTIARY_CACHE", str(tmp_path))
    real_save = np.savez_compressed
    monkeypatch.setattr(np, "savez_compressed", _failing_save(OSError(errno.ENOSPC, "full")))
    scenes = make_scenes(2, 40, object_size=(10, 16), seed=11)  # generated, not cached
    boxes, _ = proposals.scene_proposals(scenes, verbose=False, max_proposals=20)
    assert len(boxes) == 2 and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(np, "savez_compressed", _failing_save(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        proposals.scene_proposals(scenes, verbose=False, max_proposals=20)
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(np, "savez_compressed", real_save)
    old_umask = os.umask(0o077)  # mkstemp's 0600 must not survive, whatever the umask
    try:
        make_scenes(2, 40, object_size=(10, 16), seed=11)
        proposals.scene_proposals(scenes, verbose=False, max_proposals=20)
    finally:
        os.umask(old_umask)
    files = sorted(tmp_path.iterdir())
    assert [p.name.split("_")[0] for p in files] == ["proposals", "scenes"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
    cached, seconds = proposals.scene_proposals(scenes, verbose=False, max_proposals=20)
    assert seconds == 0.0 and all(np.array_equal(a, b) for a, b in zip(cached, boxes))


# ============================================================ item 11: builders and bad input
def test_yolo_v2_input_size_says_multiple_of_8_and_nearest_sizes():
    model = yolov2.yolo_v2(num_classes=2, anchors=((12.0, 12.0),), head_filters=8, passthrough_filters=4,
                           backbone=backbones.darknet_backbone((4, 4, 8, 8)))
    assert model(np.zeros((1, 56, 64, 3), np.float32)).shape == (1, 7, 8, 1, 7)
    with pytest.raises(ValueError, match="multiples of 8.*56 or 64 for the height"):
        model(np.zeros((1, 60, 60, 3), np.float32))  # was: a reshape error inside SpaceToDepth
    with pytest.raises(ValueError, match="got a 16x13 map.*48 or 56 for the width") as error:
        model(np.zeros((1, 64, 52, 3), np.float32))
    assert "for the height" not in str(error.value)


def test_space_to_depth_alone_and_saved(tmp_path):
    with pytest.raises(ValueError, match="multiples of 2.*14 or 16 for the width"):
        yolov2.SpaceToDepth(2)(np.zeros((1, 4, 15, 1), np.float32))
    with pytest.raises(ValueError, match="input_stride must be >= 1, got 0"):
        yolov2.SpaceToDepth(2, input_stride=0)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, yolov2.SpaceToDepth(2, input_stride=4, name="reorg")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(model(x), loaded(x))
    assert loaded.get_layer("reorg").input_stride == 4
    old_config = {"name": "old", "block_size": 2}  # saved before input_stride existed
    assert yolov2.SpaceToDepth.from_config(old_config).input_stride == 1


@pytest.mark.parametrize("anchors", [((-16.0, 16.0), (22.0, 22.0)), ((0.0, 8.0),),
                                     ((np.nan, 8.0),)])
def test_non_positive_anchors_refused(anchors):
    boxes, labels = np.array([[[8, 8, 24, 24]]], np.float32), np.array([[0]])
    with pytest.raises(ValueError, match=r"anchors must be positive, finite.*anchors="):
        yolov2.yolo_v2(num_classes=2, anchors=anchors, head_filters=8)
    with pytest.raises(ValueError, match="anchors must be positive"):
        yolo_data.encode_yolo_v2_targets(boxes, labels, 32, anchors, 2)
    with pytest.raises(ValueError, match="anchors must be positive"):
        yolov2.YoloV2Loss(anchors)
    with pytest.raises(ValueError, match="anchors is empty"):
        yolo_data.encode_yolo_v2_targets(boxes, labels, 32, np.zeros((0, 2)), 2)


ENCODERS = {
    "v1": lambda boxes, labels: yolo_data.encode_yolo_v1_targets(boxes, labels, 64, 8, 3),
    "v2": lambda boxes, labels: yolo_data.encode_yolo_v2_targets(boxes, labels, 64, [[8, 8]], 3),
}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_target_encoders_refuse_centre_size_and_outside_boxes(encoder):
    encode = ENCODERS[encoder]
    labels = np.array([[0, 1]])
    centre_size = np.array([[[10, 10, 20, 20], [30, 30, 10, 12]]], np.float32)  # cx, cy, w, h
    with pytest.raises(ValueError, match=r"boxes\[0, 1\] = \[30.0, 30.0, 10.0, 12.0\] has x_max "
                                         r"< x_min.*must be xyxy.*cxcywh_to_xyxy"):
        encode(centre_size, labels)  # was: silently dropped (area 0)
    outside = np.array([[[10, 10, 20, 20], [70, 5, 90, 20]]], np.float32)
    with pytest.raises(ValueError, match=r"boxes\[0, 1\].*centre outside the 64x64 image.*"
                                         "image_size=64"):
        encode(outside, labels)  # was: encoded in the last column
    mostly_outside = np.array([[[10, 10, 20, 20], [-20, 10, 4, 20]]], np.float32)
    with pytest.raises(ValueError, match="wholly \\(or mostly\\) outside"):
        encode(mostly_outside, labels)  # was: encoded in the last column, on the other edge
    # still accepted: padding with any box, zero-area objects (cut away by a crop), boxes that
    # reach past the border
    fine = np.array([[[10, 10, 20, 20], [64, 5, 64, 20], [50, 50, 70, 70], [9, 9, 1, 1]]],
                    np.float32)
    targets = encode(fine, np.array([[0, 1, 2, -1]]))
    assert targets[..., 0].sum() == 2


def test_segmentation_builders_refuse_no_classes_and_no_channels():
    with pytest.raises(ValueError, match="num_classes must be an int >= 1.*num_classes=0"):
        unet((16, 16, 1), 0, depth=1, filters=2, padding="same")  # was: Keras' "filters=0"
    with pytest.raises(ValueError, match="num_classes=0"):
        segnet((16, 16, 3), 0, filters=(4,), convs=(1,))
    with pytest.raises(ValueError, match="num_classes=0"):
        refinenet((16, 16, 3), 0, encoder_filters=(4, 4), encoder_blocks=(1, 1),
                  refine_filters=(4, 4))
    with pytest.raises(ValueError, match=r"number of image channels.*input_shape=\(92, 92, 0\)"):
        unet((92, 92, 0), 2, depth=1, filters=2)  # was: a model without input channels
    with pytest.raises(ValueError, match="number of image channels"):
        segnet((16, 16, None), 3, filters=(4,), convs=(1,))
    with pytest.raises(ValueError, match="stem_stride must be an int >= 1.*stem_stride=0"):
        refinenet((48, 48, 3), 5, stem_stride=0)  # was: ZeroDivisionError


def test_detector_builders_refuse_nonsense():
    with pytest.raises(ValueError, match=r"input_shape=\(20, 20, 3\).*multiple of the backbone's "
                                         "stride 8.*side of 16 or 24"):
        fast_rcnn.fast_rcnn((20, 20, 3), 3)  # was: a RoI scale of 1/10 instead of 1/8
    with pytest.raises(ValueError, match="stride 4.*side of 28 or 32"):
        fast_rcnn.fast_rcnn((30, 30, 3), 3, widths=(4, 4, 8))
    with pytest.raises(ValueError, match="num_classes must be an int >= 1.*num_classes=0"):
        fast_rcnn.fast_rcnn(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1.*num_classes=0"):
        rcnn.region_cnn(num_classes=0)  # was: a one-output (background only) network


def test_instance_scores_skip_images_without_cells():
    cells = np.zeros((24, 24), np.int32)
    cells[2:10, 2:10], cells[12:20, 12:20] = 1, 2
    predicted = cells.copy()
    predicted[12:20, 12:16] = 3  # one cell split in two
    empty = np.zeros_like(cells)
    noisy = empty.copy()
    noisy[0:4, 0:4] = 1  # a false positive on an empty image
    alone = metrics.instance_scores(cells, predicted)
    assert np.isfinite(list(alone.values())).all() and alone["voi_split"] > 0
    for other in (empty, noisy):  # was: NaN for every score but "matched"
        both = metrics.instance_scores(np.stack([cells, empty]), np.stack([predicted, other]))
        assert both == alone
    with pytest.raises(ValueError, match="true_instances has no cell in any of its 2"):
        metrics.instance_scores(np.stack([empty, empty]), np.stack([noisy, empty]))
