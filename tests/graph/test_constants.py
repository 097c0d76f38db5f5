"""Constant channels: a zeroed filter carries its bias through the layers after it, and
only as far as that stays a constant."""

import keras
import numpy as np
import pytest

from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.constants import constant_channels


def zero_filter(layer, index, bias):
    kernel, biases = layer.get_weights()
    kernel[..., index], biases[index] = 0.0, bias
    layer.set_weights([kernel, biases])


@pytest.mark.parametrize(
    "border,constant", [(keras.layers.Cropping2D, True), (keras.layers.ZeroPadding2D, False)]
)
def test_a_zeroed_filter_carries_its_bias_through_relu_and_bn_but_not_zero_padding(
    border, constant
):
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 1, name="conv")
    x = keras.layers.ReLU()(conv(inputs))
    x = keras.layers.BatchNormalization(name="bn")(x)
    pooled = keras.layers.AveragePooling2D(3, strides=1)(border(1)(x))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="reader")(pooled))
    zero_filter(model.get_layer("conv"), 1, 0.5)
    model.get_layer("bn").set_weights([np.full(3, 2.0), np.full(3, 0.1), np.zeros(3), np.ones(3)])
    values = constant_channels(ChannelGraph(model))
    after_bn = values[id(x)]
    assert np.isnan(after_bn[[0, 2]]).all()
    assert after_bn[1] == pytest.approx(2.0 * 0.5 / np.sqrt(1 + 1e-3) + 0.1, rel=1e-5)
    # Averaging over a border of zeros changes the constant near the edges.
    assert np.isnan(values[id(pooled)][1]) != constant


def test_a_channel_multiplied_by_zero_is_zero_and_merges_agree():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, name="features")
    h = dense(inputs)
    gated = keras.layers.Multiply()(
        [h, keras.layers.Dense(3, kernel_initializer="zeros", name="gate")(inputs)]
    )
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(gated))
    values = constant_channels(ChannelGraph(model))
    assert np.isnan(values[id(h)]).all()
    np.testing.assert_array_equal(values[id(gated)], [0.0, 0.0, 0.0])
