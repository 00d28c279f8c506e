"""Pose estimation: Convolutional Pose Machines and OpenPose (notebooks 12 and 13).

Submodules: ``heatmaps`` (confidence-map targets, decoding them to keypoints, PCK, left/right
swaps), ``losses`` (the per-stage L2 loss with unlabelled regions masked), ``cpm`` (the
multi-stage CPM), ``openpose`` / ``paf`` / ``decoding`` / ``evaluation`` (OpenPose: part
affinity fields, their decoding into people, OKS AP), ``plots`` (skeletons and belief maps).
The data come from ``bestiary_keras.datasets.figures``.
"""

__all__ = ["cpm", "decoding", "evaluation", "heatmaps", "losses", "openpose", "paf", "plots"]
