"""shrink_heads: attention heads whose value projection is zero go, and the function stays."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.core import keras_internals
from tfprune.shrinking.heads import dead_heads


def attention_model(heads=4):
    inputs = keras.Input((5, 8))
    attention = keras.layers.MultiHeadAttention(heads, key_dim=2, name="attention")(inputs, inputs)
    return keras.Model(
        inputs, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling1D()(attention))
    )


def kill_heads(model, heads):
    value = keras_internals.attention_projections(model.get_layer("attention"))["value"]
    kernel, bias = value.get_weights()
    kernel[:, heads], bias[heads] = 0.0, 0.0
    value.set_weights([kernel, bias])


def test_dead_heads_are_removed_and_the_function_kept():
    keras.utils.set_random_seed(0)
    model = attention_model()
    kill_heads(model, [1, 3])
    assert dead_heads(model.get_layer("attention")).tolist() == [False, True, False, True]
    small = tfprune.shrinking.shrink_heads(model)
    assert small.get_layer("attention").num_heads == 2
    x = np.random.default_rng(0).normal(size=(4, 5, 8)).astype(np.float32)
    np.testing.assert_allclose(small(x), model(x), atol=1e-5)
    assert small.count_params() < model.count_params()


def test_at_least_one_head_stays_and_bad_models_are_refused():
    model = attention_model(heads=2)
    kill_heads(model, [0, 1])
    assert tfprune.shrinking.shrink_heads(model).get_layer("attention").num_heads == 1
    with pytest.raises(TypeError, match="shrink_heads: expected a keras.Model"):
        tfprune.shrinking.shrink_heads("model")
