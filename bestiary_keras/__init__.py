"""bestiary_keras: the code behind the notebooks of "Deep Learning: Bestiary".

Modules, by lecture family (each notebook imports its builders from one obvious place):

- ``runtime``: profiles (``ci``/``default``/``full``), seeding, ``report`` of measured results.
- ``datasets``: the offline scene generator shared by all chapters, real-data (TFDS) loaders.
- ``geometry``: boxes (IoU, encodings) shared by classification+localisation and detection.
- ``training``, ``plotting``: small helpers for fitting and figures.
- ``classification``: VGG (notebook 01) and ResNet (notebook 02).
- ``pretrained``: ImageNet weights when cached, random weights (and a message) offline.
- ``runner``: the ``bestiary`` console command that executes the notebooks headless.
"""

__version__ = "0.1.0"
