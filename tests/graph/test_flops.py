"""FLOPs counted from weights and traced shapes."""

import keras
import pytest

import tfprune
from conftest import conv_model


def test_flops_match_hand_counts():
    model = conv_model()
    conv = 2 * (3 * 3 * 3 * 4) * 8 * 8
    tconv = 2 * (3 * 3 * 2 * 4) * 8 * 8  # one scatter per input position
    flat = model.get_layer("fc").kernel.shape[0]
    fc = 2 * flat * 5
    assert tfprune.count_flops(model) == conv + tconv + fc


def test_dynamic_shapes_give_a_clear_error():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="'conv'.*not static"):
        tfprune.count_flops(model)
    assert {r.name: r for r in tfprune.summary(model).rows}["conv"].flops is None
