"""One mixed_float16 training step for the main model of each notebook trained with a Keras loss.

The ``full`` profile on a GPU builds the models under ``mixed_float16`` (float16 compute, float32
variables), ``plan.compile`` casts the outputs to float32 and scales the loss. TensorFlow's CPU
kernels run float16 too, so a custom layer or loss that mixes a float32 constant with a float16
tensor fails here as it would on the GPU. Each case builds a small version of the notebook's
model in ``plan.scope()``, compiles it as the notebook does (the notebook's loss; SGD where the
notebook calls ``TRAINING.compile`` itself), trains one step on a tiny batch of the right shapes
and checks the loss is finite and the global policy is float32 again afterwards.

The models with their own ``train_step`` (Fast/Faster/Mask R-CNN, the depth ViewSynthesis) are in
``tests/test_distributed.py::test_models_with_their_own_train_step_scale_the_loss``.
"""

import keras
import numpy as np
import pytest

from bestiary_keras.distributed import plan_for


def _sgd():
    return keras.optimizers.SGD(1e-3)


def _rng():
    return np.random.default_rng(0)


def _images(n, size, channels=3, scale=1.0):
    return (_rng().uniform(0, 1, (n, size, size, channels)) * scale).astype(np.float32)


# ------------------------------------------------------------------------------ classification
def _vgg_localiser(plan):  # 01: compile_localiser(model, training=TRAINING)
    from bestiary_keras.classification import vgg, vgg_protocol

    with plan.scope():
        model = vgg.vgg("A", input_shape=(32, 32, 3), num_classes=3, base_width=4, fc_units=8,
                        box_head=True, dropout=0.5, weight_decay=5e-4,
                        kernel_initializer="he_normal", fc_initializer="glorot_uniform")
    model = vgg_protocol.compile_localiser(model, learning_rate=0.01, momentum=0.9,
                                           box_loss_weight=1.0, training=plan)
    y = vgg_protocol.localisation_targets(np.array([0, 1, 2, 0]),
                                          np.array([[4, 4, 20, 24]] * 4, np.float32), 32)
    return model, (_images(4, 32), y)


def _cifar_resnet(plan):  # 02
    from bestiary_keras.classification import resnet

    with plan.scope():
        model = resnet.cifar_resnet(1, residual=True, filters=(4, 8, 8), input_shape=(32, 32, 3),
                                    num_classes=3)
    model = plan.compile(model, optimizer=_sgd, loss="sparse_categorical_crossentropy",
                         metrics=["accuracy"])
    return model, (_images(4, 32), np.array([0, 1, 2, 0]))


def _rcnn_classifier(plan):  # 03: the region CNN's logits
    from bestiary_keras.detection import rcnn

    with plan.scope():
        cnn = rcnn.region_cnn((16, 16, 3), 2, widths=(4, 4, 8), convs_per_stage=1,
                              fc_units=(8, 8), bn_momentum=0.9)
        model = keras.Model(cnn.input, cnn.outputs[0])
    model = plan.compile(model, optimizer=_sgd,
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         metrics=["accuracy"])
    return model, (_images(4, 16, scale=255.0), np.array([0, 1, 2, 0]))


# ------------------------------------------------------------------------------ detection
_BOXES = np.array([[[8, 8, 40, 40], [30, 20, 60, 50]], [[4, 10, 24, 60], [0, 0, 0, 0]]],
                  np.float32)
_LABELS = np.array([[0, 2], [1, -1]])


def _yolo_v1(plan):  # 06
    from bestiary_keras.detection import yolo, yolo_data

    with plan.scope():
        model = yolo.yolo_v1((64, 64, 3), 3, grid_size=8, boxes_per_cell=2, widths=(8, 8, 8, 8),
                             reduce_channels=4, hidden_units=16)
    model = plan.compile(model, optimizer=_sgd,
                         loss=yolo.YoloV1Loss(boxes_per_cell=2, num_classes=3))
    y = yolo_data.encode_yolo_v1_targets(_BOXES, _LABELS, 64, 8, 3)
    return model, (_images(2, 64, scale=255.0), y)


def _ablation(row):  # 07: one row of the YOLOv2 ablation
    def case(plan):
        from bestiary_keras.detection import ablation

        anchors = np.array([[12, 12], [20, 20], [28, 28]], np.float32)
        config = dict(ablation.ablation_configs())[row]
        with plan.scope():
            detector = ablation.build_ablation_detector(
                config, num_classes=3, hand_anchors=anchors, kmeans_anchors=anchors)
        model = plan.compile(detector.model, optimizer=_sgd, loss=detector.loss)
        y = detector.encode(_BOXES, _LABELS, 64)
        return model, (_images(2, 64, scale=255.0), y)

    return case


def _backbone_classifier(row):  # 07: pretrain_classifier(..., training=TRAINING)'s model
    def case(plan):
        from bestiary_keras.detection import ablation, yolov2

        config = dict(ablation.ablation_configs())[row]
        with plan.scope():
            backbone = ablation.new_backbone(config)
            model = yolov2.backbone_classifier(backbone, 3)
        model = plan.compile(model, optimizer=_sgd, loss="sparse_categorical_crossentropy",
                             metrics=["accuracy"])
        return model, (_images(4, 32, scale=255.0), np.array([0, 1, 2, 0]))

    return case


# ------------------------------------------------------------------------------ segmentation
def _segmentation(build, size, channels=3, num_classes=3, weighted=False):
    def case(plan):
        with plan.scope():
            model = build()
        model = plan.compile(model, optimizer=_sgd,
                             loss=keras.losses.SparseCategoricalCrossentropy())
        out = model.output_shape[1]
        labels = _rng().integers(0, num_classes, (2, out, out)).astype(np.int32)
        batch = (_images(2, size, channels), labels)
        if weighted:  # 09 and 10 weight each pixel by its class
            batch += (np.array([1.0, 2.0, 0.5], np.float32)[labels],)
        return model, batch

    return case


def _unet():  # 08, the valid U-Net
    from bestiary_keras.segmentation.unet import unet

    return unet((44, 44, 1), 2, depth=2, filters=4, name="unet")


def _unet_upsampling():  # 08, the slides' snippet
    from bestiary_keras.segmentation.unet import unet_upsampling

    return unet_upsampling((44, 44, 1), 2, depth=2, filters=4, name="unet_upsampling")


def _segnet():  # 09: max-pooling indices
    from bestiary_keras.segmentation.segnet import segnet

    return segnet((16, 16, 3), 3, filters=(4, 8), convs=(1, 1), name="small_segnet")


def _refinenet():  # 10
    from bestiary_keras.segmentation.refinenet import refinenet

    return refinenet((32, 32, 3), 3, encoder_filters=(8, 8, 8, 8), refine_filters=(8,) * 4,
                     batch_norm=True)


# ------------------------------------------------------------------------------ pose
def _cpm(plan):  # 12: compile_cpm(..., training=TRAINING)
    from bestiary_keras.datasets.figures import make_figures
    from bestiary_keras.pose import cpm

    figures = make_figures(2, 64, seed=0, cache=False)
    with plan.scope():
        model = cpm.cpm((64, 64, 3), 14, stages=2, trunk_filters=(8, 8), stage_filters=8)
    model = cpm.compile_cpm(model, learning_rate=1e-3, steps=4, training=plan)
    batches = cpm.CPMBatches(figures.images, figures.keypoints[:, 0], stages=2, sigma=3.0,
                             batch_size=2, steps=1)
    return model, batches[0]


def _openpose(plan):  # 13: compile_openpose(..., training=TRAINING)
    from bestiary_keras.datasets.figures import LIMBS, make_figures
    from bestiary_keras.pose import openpose

    figures = make_figures(2, 64, people=(2, 3), seed=3, cache=False)
    maps, pafs = openpose.openpose_targets(figures.keypoints, figures.person_masks, LIMBS,
                                           image_size=64, map_size=16, sigma=3.0)
    with plan.scope():
        model = openpose.openpose((64, 64, 3), 14, 13, stages=2, trunk_filters=(8, 8), filters=8,
                                  refine_dilations=(1, 2))
    model = openpose.compile_openpose(model, 3e-3, steps=4, training=plan)
    batches = openpose.OpenPoseBatches(figures.images, maps, pafs, stages=2, batch_size=2,
                                       steps=1, seed=0)
    return model, batches[0]


# ------------------------------------------------------------------------------ metric learning
def _siamese_digits(plan):  # 15: the contrastive loss on the distance of a pair
    from bestiary_keras.metric_learning import losses, siamese

    with plan.scope():
        branch = siamese.digit_branch((8, 8, 1), embedding_dim=2, filters=(4, 8),
                                      hidden_units=8)
        model = siamese.siamese_network(branch)
    model = plan.compile(model, optimizer=_sgd, loss=losses.ContrastiveLoss(margin=1.0))
    x = _images(8, 8, 1)
    return model, ([x[:4], x[4:]], np.array([1, 0, 1, 0], np.float32))


def _siamese_patches(loss_name):  # 15: the patch descriptor with mined negatives
    def case(plan):
        from bestiary_keras.metric_learning import losses, siamese

        loss = {"hardest": losses.HardestNegativeContrastiveLoss(margin=2.0),
                "mined": losses.MinedContrastiveLoss(margin=2.0, positive_ratio=2,
                                                     negative_ratio=4)}[loss_name]
        with plan.scope():
            net = siamese.patch_descriptor((32, 32, 1), descriptor_dim=8, filters=(4, 8))
            model = siamese.descriptor_pair_network(net)
        model = plan.compile(model, optimizer=_sgd, loss=loss)
        x = _rng().normal(size=(16, 32, 32, 1)).astype(np.float32)
        return model, ([x[:8], x[8:]], np.arange(8, dtype=np.float32))

    return case


def _triplet(plan):  # 16: Wohlhart and Lepetit's cost
    from bestiary_keras.metric_learning import triplet

    with plan.scope():
        branch = triplet.wohlhart_lepetit_net((32, 32, 1), descriptor_dim=3, hidden_units=8)
        model = triplet.triplet_network(branch)
    model = plan.compile(model, optimizer=_sgd, loss=triplet.TripletPoseLoss(0.01))
    x = _images(16, 32, 1)
    return model, ([x[0:4], x[4:8], x[8:12], x[12:16]], np.zeros(4, np.float32))


def _lift(stage):  # 17: the three LIFT stages, each with its LiftCost
    def case(plan):
        from bestiary_keras.metric_learning import lift, siamese

        with plan.scope():
            desc = siamese.patch_descriptor((32, 32, 1), 8, filters=(4, 8))
            ori = lift.orientation_net((32, 32, 1), filters=(4, 8), hidden_units=8)
            det = lift.detector_net(filters=(4,))
            if stage.startswith("desc"):
                model = lift.desc_stage(desc)
            else:
                desc.trainable = False
                if stage == "ori":
                    model = lift.ori_stage(ori, desc)
                else:
                    ori.trainable = False
                    model = lift.det_stage(det, ori, desc)
        cost = {"desc": lift.LiftCost(8, terms=("pair", "negative"), margin=2.0,
                                      mine_negatives=True),
                "desc_squared": lift.LiftCost(8, terms=("pair", "negative"), margin=1.0,
                                              squared=True, mine_negatives=True),
                "ori": lift.LiftCost(8, terms=("pair",)),
                "det": lift.LiftCost(8, terms=("pair", "class"))}[stage]
        model = plan.compile(model, optimizer=_sgd, loss=cost)
        p = [_rng().uniform(0, 1, (4, 64, 64, 1)).astype(np.float32) for _ in range(4)]
        if stage.startswith("desc"):
            inputs = [*p[:3], np.array([0.0, 0.5, -1.0, 3.0], np.float32)]
        else:
            inputs = p[:2] if stage == "ori" else p
        return model, (inputs, np.array([0, 1, 2, 3], np.float32))  # point ids for mining

    return case


CASES = {
    "01_vgg_localiser": _vgg_localiser,
    "02_cifar_resnet": _cifar_resnet,
    "03_rcnn_classifier": _rcnn_classifier,
    "06_yolo_v1": _yolo_v1,
    "07_yolo_backbone_classifier": _backbone_classifier("+ batch norm"),
    "07_darknet_backbone_classifier": _backbone_classifier("+ new network"),
    "07_yolo_dense_batch_norm": _ablation("+ batch norm"),
    "07_yolov2_anchors_offset": _ablation("+ convolutional, anchor boxes"),
    "07_yolov2_direct_passthrough": _ablation("+ passthrough"),
    "08_unet": _segmentation(_unet, 44, channels=1, num_classes=2),
    "08_unet_upsampling": _segmentation(_unet_upsampling, 44, channels=1, num_classes=2),
    "09_segnet": _segmentation(_segnet, 16, weighted=True),
    "10_refinenet": _segmentation(_refinenet, 32, weighted=True),
    "12_cpm": _cpm,
    "13_openpose": _openpose,
    "15_siamese_contrastive": _siamese_digits,
    "15_patches_hardest_negative": _siamese_patches("hardest"),
    "15_patches_mined": _siamese_patches("mined"),
    "16_triplet_pose": _triplet,
    "17_lift_desc": _lift("desc"),
    "17_lift_desc_squared": _lift("desc_squared"),
    "17_lift_ori": _lift("ori"),
    "17_lift_det": _lift("det"),
}


# Keras' UnitNormalization (ORI's output) caps 1 / norm at 1 / 1e-12, which float16 writes as inf
# (numpy warns); only an all-zero (cos, sin) would then differ from float32.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_one_mixed_float16_step_is_finite(name):
    assert keras.mixed_precision.global_policy().name == "float32"
    plan = plan_for("full", precision="mixed_float16")
    keras.utils.set_random_seed(0)
    try:
        model, batch = CASES[name](plan)
        assert keras.mixed_precision.global_policy().name == "float32"  # restored by the plan
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        policies = {layer.dtype_policy.name for layer in model._flatten_layers()}
        assert "mixed_float16" in policies  # built under the plan's policy
        assert all(keras.backend.standardize_dtype(o.dtype) == "float32"
                   for o in keras.tree.flatten(model.outputs))  # the loss sees float32
        logs = model.train_on_batch(*batch, return_dict=True)
        assert logs and all(np.isfinite(v) for v in logs.values()), logs
        assert keras.mixed_precision.global_policy().name == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")  # never leak into other tests
