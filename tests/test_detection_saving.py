"""Every custom detection layer, loss and subclassed detector survives ``model.save`` and
``keras.models.load_model`` with identical outputs (and its settings)."""

import keras
import numpy as np

from bestiary_keras.detection import backbones, fast_rcnn, faster_rcnn, mask_rcnn, yolo, yolov2
from bestiary_keras.detection.roi_align import RoIAlign
from bestiary_keras.detection.roi_pooling import RoIMaxPooling

RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
ROIS = np.array([[[0, 0, 16, 16], [4, 8, 30, 20]], [[2, 2, 12, 30], [0, 0, 32, 32]]],
                np.float32)


def _reload(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    return keras.models.load_model(path)


def _roi_model(layer):
    features = keras.Input((8, 8, 4), name="features")
    rois = keras.Input((2, 4), name="rois")
    return keras.Model([features, rois], layer(features, rois))


def test_roi_pooling_layers_survive_save_and_load(tmp_path):
    features = RNG.normal(size=(2, 8, 8, 4)).astype(np.float32)
    for layer in (RoIMaxPooling((2, 3), 0.25, name="pool"),
                  RoIAlign(3, 0.25, sampling_ratio=2, aligned=False, name="align")):
        model = _roi_model(layer)
        loaded = _reload(model, tmp_path)
        np.testing.assert_array_equal(loaded.predict([features, ROIS], verbose=0),
                                      model.predict([features, ROIS], verbose=0))
        assert type(loaded.layers[-1]) is type(layer)
        assert loaded.layers[-1].get_config() == layer.get_config()


def test_yolo_models_and_losses_survive_save_and_load(tmp_path):
    v1 = yolo.yolo_v1((32, 32, 3), 3, grid_size=4, boxes_per_cell=2, widths=(4, 8, 8, 8), hidden_units=16)
    v1.compile(loss=yolo.YoloV1Loss(boxes_per_cell=2, num_classes=3))
    loaded = _reload(v1, tmp_path)
    np.testing.assert_array_equal(loaded.predict(IMAGES, verbose=0), v1.predict(IMAGES, verbose=0))
    assert isinstance(loaded.loss, yolo.YoloV1Loss)
    v2 = yolov2.yolo_v2(num_classes=3, anchors=[[8, 8], [16, 16]], head_filters=8,
                        backbone=backbones.darknet_backbone((4, 4, 8, 8)))
    v2.compile(loss=yolov2.YoloV2Loss([[8, 8], [16, 16]], location="offset"))
    loaded = _reload(v2, tmp_path)
    np.testing.assert_array_equal(loaded.predict(IMAGES, verbose=0), v2.predict(IMAGES, verbose=0))
    assert loaded.loss.location == "offset"
    assert any(isinstance(layer, yolov2.SpaceToDepth) for layer in loaded.layers)


def _same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_fast_rcnn_survives_save_and_load(tmp_path):
    model = fast_rcnn.fast_rcnn((32, 32, 3), 3, widths=(4, 8, 8), convs_per_stage=1, pool_size=2,
                                fc_units=(8, 8), rois_per_image=4, seed=5)
    loaded = _reload(model, tmp_path)
    assert isinstance(loaded, fast_rcnn.FastRCNN)
    assert (loaded.rois_per_image, loaded.seed, loaded.image_size) == (4, 5, 32)
    _same_weights(model, loaded)
    inputs = {"images": IMAGES, "proposals": ROIS}
    for got, expected in zip(loaded(inputs), model(inputs)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_faster_and_mask_rcnn_survive_save_and_load(tmp_path):
    settings = dict(widths=(4, 8, 8), convs_per_stage=1, anchor_scales=(8, 16), rpn_width=8,
                    pool_size=2, fc_units=(8, 8), post_nms_test=6)
    model = faster_rcnn.faster_rcnn((32, 32, 3), 3, **settings)
    loaded = _reload(model, tmp_path)
    assert isinstance(loaded, faster_rcnn.FasterRCNN) and loaded.post_nms_test == 6
    np.testing.assert_array_equal(loaded.anchors, model.anchors)
    _same_weights(model, loaded)
    for got, expected in zip(loaded(IMAGES), model(IMAGES)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    for got, expected in zip(loaded.detect_batch(IMAGES), model.detect_batch(IMAGES)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))

    masks = mask_rcnn.mask_rcnn((32, 32, 3), 3, mask_stride=4, mask_pool_size=2, mask_width=8,
                                mask_convs=1, softmax=True, **settings)
    loaded = _reload(masks, tmp_path)
    assert isinstance(loaded, mask_rcnn.MaskRCNN) and loaded.softmax
    assert isinstance(loaded.mask_pool, RoIAlign)
    _same_weights(masks, loaded)
    for got, expected in zip(loaded.segment_batch(IMAGES), masks.segment_batch(IMAGES)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
