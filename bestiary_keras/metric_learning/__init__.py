"""Metric learning: networks that map images to descriptors (notebooks 15 to 17).

Nearest-neighbour search among descriptors then does verification, recognition and pose
estimation, and matches feature points between images.

- ``losses``: the chapter's losses, each written once (contrastive, hardest in-batch negative,
  Wohlhart-Lepetit triplet and pair terms, LIFT's global cost), with a guarded distance.
- ``siamese``: Siamese networks (notebook 15): ``digit_branch``, ``patch_descriptor``
  (Simo-Serra et al.), ``siamese_network``, ``descriptor_pair_network``.
- ``data``: digits (scikit-learn, or TFDS ``mnist`` from disk) and class pairs.
- ``patches``: patches of the same scene point under random homographies and lighting (notebooks
  15 and 17), SIFT descriptors of patches, LIFT's quadruplets, image pairs.
- ``render``: a small NumPy rasteriser of shaded 3D objects (notebook 16).
- ``triplet``: triplet descriptors for object recognition and 3D pose (notebook 16).
- ``lift``: LIFT's detector, orientation and descriptor networks and the spatial transformer
  that joins them, the three training stages and their cost (notebook 17).
- ``lift_pipeline``: LIFT and SIFT on whole images, and their evaluation on image pairs.
- ``evaluation``: ROC, FPR95, verification, nearest-neighbour retrieval, repeatability,
  matching score, matches' average precision.
- ``plots``: figures of pairs, embeddings, distance histograms, ROC curves.

Label convention everywhere: 1 = same (class, scene point), 0 = different.

Builders follow one pattern: ``name(input_shape=..., <descriptor size>=..., *, options...,
name=...)`` for the networks (``digit_branch``, ``patch_descriptor``, ``wohlhart_lepetit_net``,
``detector_net``, ``orientation_net``), ``name(networks..., *, options..., name=...)`` for the
training models built around them (``siamese_network``, ``descriptor_pair_network``,
``triplet_network``, ``desc_stage``, ``ori_stage``, ``det_stage``).

Import the submodules directly (``from bestiary_keras.metric_learning import siamese``).
"""

__all__ = [
    "data", "evaluation", "lift", "lift_pipeline", "losses", "patches", "plots", "render",
    "siamese", "triplet",
]
