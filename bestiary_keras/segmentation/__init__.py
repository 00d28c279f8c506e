"""Semantic segmentation: U-Net (notebook 08), SegNet (09) and RefineNet (10).

Submodules (import from them, e.g. ``from bestiary_keras.segmentation.unet import unet``):

- ``unet``: the paper's valid-convolution U-Net, a ``padding="same"`` variant, the slide's
  snippet (``unet_upsampling``: ``UpSampling2D``, ``get_crop_shape`` and ``Cropping2D`` skips),
  valid input sizes;
- ``segnet``: SegNet, its max pooling with indices and max unpooling layers;
- ``refinenet``: RefineNet's residual conv units, multi-resolution fusion, chained residual
  pooling on a residual encoder;
- ``tiling``: the overlap-tile prediction; ``elastic``: elastic deformations and the training
  batches of notebook 08;
- ``losses``: the weight map for touching cells and the weighted cross-entropy;
- ``metrics``: foreground IoU, the ISBI-style instance scores and per-class IoU;
- ``topology``: simple points and the warping error (Jain et al. 2010), the pixel error;
- ``scenes``: the multi-class scenes of notebooks 09 and 10; ``plots``: the tile layout figure.

The cell images of notebook 08 come from ``bestiary_keras.datasets.cells.make_cells``.
"""

__all__ = ["elastic", "losses", "metrics", "plots", "refinenet", "scenes", "segnet", "tiling",
           "topology", "unet"]
