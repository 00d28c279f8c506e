"""Classification networks: VGG (notebook 01) and ResNet (notebook 02).

- ``vgg``: the configurations of the paper's table 1, the builders (``vgg``, ``vgg11`` ...
  ``vgg19``), the per-class box loss and the paper's preprocessing.
- ``vgg_protocol``: VGG's training and testing protocol: initialisation from net A,
  localisation targets and optimiser, fully convolutional dense evaluation, ILSVRC errors.
- ``resnet_blocks``: the residual blocks and stages, on tensors (``ZeroPadShortcut`` too).
- ``resnet``: the builders (``resnet``, ``resnet18`` ... ``resnet152``, ``cifar_resnet``).
- ``experiments``: notebook 02's measurements: depth counting, gradient norms at
  initialisation, the fixed-budget training loop.

Import the submodules directly (``from bestiary_keras.classification import resnet``).
"""

__all__ = ["experiments", "resnet", "resnet_blocks", "vgg", "vgg_protocol"]
