"""Shared fixtures: tiny real Keras 3 models and data, so the suite stays fast.

The test folders mirror the package (`tests/masking/test_prune.py` tests
`tfprune/masking/prune.py`); the helpers several of them use live in `helpers.py`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import small_cnn  # noqa: E402

from tfprune.zoo import digits_cnn, load_digits  # noqa: E402

# Scripts run in subprocesses, not test modules: the workers configure TensorFlow at import,
# and the fixture generator belongs to tfprune 0.1.0.
collect_ignore = ["mirrored_worker.py", "multi_worker_worker.py", "resume_worker.py", "fixtures"]


@pytest.fixture
def cnn():
    keras.utils.set_random_seed(0)
    return small_cnn()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 4, 64)
    return x, y


@pytest.fixture(scope="session")
def trained_digits():
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), (x_test, y_test) = load_digits()
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    return model, (x[:300], y[:300])


@pytest.fixture(scope="session")
def digits():
    (x, y), (x_test, y_test) = load_digits()
    return x, y, x_test[:120], y_test[:120]


@pytest.fixture(scope="session")
def trained_cnn(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    return model
