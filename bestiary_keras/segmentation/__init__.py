"""Semantic segmentation: U-Net (notebook 08), SegNet (09) and RefineNet (10).

- ``unet``: the paper's valid-convolution U-Net and the slides' ``padding="same"`` variant,
  valid input sizes; ``tiling``: the overlap-tile prediction; ``elastic``: elastic
  deformations; ``losses``: the weight map for touching cells and the weighted cross-entropy;
  ``metrics``: foreground IoU, the ISBI-style instance scores and per-class IoU.
- ``segnet`` and ``refinenet``: see those modules.

The cell images of notebook 08 come from ``bestiary_keras.datasets.cells.make_cells``.
"""

from bestiary_keras.segmentation.elastic import elastic_deform, random_displacement, warp
from bestiary_keras.segmentation.losses import (
    border_weight_term,
    class_balance_map,
    unet_weight_map,
    weighted_pixel_crossentropy,
)
from bestiary_keras.segmentation.metrics import (
    foreground_iou,
    instance_scores,
    instances_from_foreground,
    matched_fraction,
    mean_iou,
)
from bestiary_keras.segmentation.refinenet import (
    chained_residual_pooling,
    multi_resolution_fusion,
    refine_block,
    refinenet,
    residual_conv_unit,
    residual_encoder,
)
from bestiary_keras.segmentation.tiling import TileLayout, predict_tiled, tile_layout
from bestiary_keras.segmentation.unet import (
    count_conv_layers,
    crop_shape,
    nearest_valid_input_sizes,
    unet,
    unet_output_size,
    valid_input_sizes,
)
