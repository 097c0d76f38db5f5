"""Shared fixtures: tiny real Keras 3 models and data, so the suite stays fast."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def small_cnn(name="cnn", input_shape=(12, 12, 1), classes=4):
    """Conv -> Conv -> BN -> strided Conv -> GAP -> Dense: the shape of the demo CNN."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


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


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


@st.composite
def random_network(draw):
    """Random functional CNNs with residual Adds, Concatenates, depthwise blocks, BN and
    LayerNormalization over channels."""
    keras.utils.set_random_seed(draw(st.integers(0, 2**16)))
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(draw(st.sampled_from([4, 8])), 3, padding="same")(inputs)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["residual", "concat", "depthwise", "plain", "pool", "layernorm"]))
        if kind == "residual":
            h = keras.layers.Conv2D(x.shape[-1], 3, padding="same")(x)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
            x = keras.layers.Add()([x, h])
        elif kind == "concat":
            h = keras.layers.Conv2D(draw(st.sampled_from([4, 6])), 1)(x)
            x = keras.layers.Concatenate()([x, h])
        elif kind == "depthwise":
            x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=draw(st.sampled_from([1, 2])))(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Conv2D(8, 1, activation="relu")(x)
        elif kind == "layernorm":
            x = keras.layers.LayerNormalization(center=draw(st.booleans()))(x)
            x = keras.layers.Conv2D(8, 1, activation="relu")(x)
        elif kind == "pool":
            x = keras.layers.MaxPooling2D()(x) if x.shape[1] > 2 else x
        else:
            padding = draw(st.sampled_from(["same", "valid"])) if x.shape[1] > 2 else "same"
            x = keras.layers.Conv2D(8, 3, padding=padding)(x)
            x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))
