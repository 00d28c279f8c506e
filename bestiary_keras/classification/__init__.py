"""Classification networks: VGG (notebook 01) and ResNet (notebook 02)."""

from .vgg import (
    SHALLOW_INIT_LAYERS,
    VGG_BLOCK_WIDTHS,
    VGG_CONFIGS,
    VGG_DEPTHS,
    DensePrediction,
    configuration_table,
    dense_predict,
    fully_convolutional,
    localisation_errors,
    localisation_targets,
    per_class_box_loss,
    preprocess,
    transfer_weights,
    build_vgg,
    vgg11,
    vgg13,
    vgg16,
    vgg19,
    vgg_block,
)
