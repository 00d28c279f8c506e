"""Unsupervised depth and ego-motion from video (Zhou et al., CVPR 2017), notebook 14.

``geometry``: intrinsics, pose vectors, the differentiable inverse warp; ``networks``: the
disparity and pose/explainability networks and the view-synthesis trainer; ``losses``:
photometric, smoothness and explainability terms; ``metrics``: depth errors and trajectory
error; ``plots``: depth maps, synthesised views, point clouds.
"""

__all__ = ["geometry", "losses", "metrics", "networks", "plots"]
