"""Unknown input dimensions counted at the reference size, through Keras' shape inference."""

import keras
import pytest

import tfprune
from tfprune.graph.reference import concrete_shape


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


def test_concrete_shapes_follow_strides_and_pooling(reference_size_restored):
    model = strided_cnn((None, None, 3))
    assert concrete_shape(model.get_layer("conv").output) == (None, 30, 30, 8)
    tfprune.set_reference_size(32)
    assert concrete_shape(model.get_layer("conv").output) == (None, 6, 6, 8)


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
