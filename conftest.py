"""pytest set-up shared by the unit tests and nbval's notebook runs.

Notebooks executed by nbval run in kernels that inherit this process's environment, so the
`ci` profile is chosen here unless the caller set another one.
"""

import os

os.environ.setdefault("BESTIARY_PROFILE", "ci")
os.environ.setdefault("BESTIARY_SEED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # unit tests draw off-screen (kernels keep their inline backend)
