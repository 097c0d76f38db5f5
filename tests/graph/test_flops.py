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


def strided_cnn(shape):
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="stem")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(8, 3, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def token_model(length):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(50, 8)(tokens)
    x = keras.layers.Conv1D(16, 3, strides=2, name="conv")(x)
    return keras.Model(tokens, keras.layers.Dense(2, name="fc")(x))


@pytest.fixture
def reference_size_restored():
    before = tfprune.reference_size()
    yield
    tfprune.set_reference_size(before)


def test_unknown_dimensions_count_at_the_reference_size(reference_size_restored):
    assert tfprune.reference_size() == 128
    assert tfprune.count_flops(strided_cnn((None, None, 3))) == tfprune.count_flops(
        strided_cnn((128, 128, 3))
    )
    assert tfprune.count_flops(token_model(None)) == tfprune.count_flops(token_model(128))
    tfprune.set_reference_size(20)
    assert tfprune.count_flops(strided_cnn((None, None, 3))) == tfprune.count_flops(
        strided_cnn((20, 20, 3))
    )
    rows = {r.name: r for r in tfprune.summary(token_model(None)).rows}
    assert rows["conv"].flops == 2 * 3 * 8 * 16 * 9  # length 20, kernel 3, stride 2: 9 steps
    # A known dimension is never replaced.
    assert tfprune.count_flops(strided_cnn((None, 40, 3))) == tfprune.count_flops(
        strided_cnn((20, 40, 3))
    )


@pytest.mark.parametrize("size", [0, 2.5, True])
def test_the_reference_size_is_checked(size, reference_size_restored):
    with pytest.raises((TypeError, ValueError), match="size"):
        tfprune.set_reference_size(size)
    assert tfprune.reference_size() == 128
