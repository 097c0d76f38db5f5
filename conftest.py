"""Doctests: the examples in tfprune's docstrings run as part of the suite.

Examples assume `import keras, numpy as np, tfprune`, as Keras' own docstrings assume
`keras` and `np`; each starts from a fresh seed.
"""

import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A backend's gradient module imports that backend's library: without it, nothing to collect.
collect_ignore = [
    f"tfprune/core/gradients_{backend}.py"
    for backend in ("jax", "torch")
    if importlib.util.find_spec(backend) is None
]

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tfprune  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    keras.utils.set_random_seed(0)
    doctest_namespace.update(keras=keras, np=np, tfprune=tfprune)
