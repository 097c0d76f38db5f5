"""The layer registry: which weight and axis is a filter, and teaching it new layers."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.layers import registry
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import LayerSpec

# One instance of every registered layer type, with the input it is built on.
LAYERS = [
    (keras.layers.Dense(6), (5,)),
    (keras.layers.Conv1D(6, 3), (9, 4)),
    (keras.layers.Conv2D(6, 3), (7, 7, 4)),
    (keras.layers.Conv3D(6, 2), (4, 4, 4, 3)),
    (keras.layers.Conv1DTranspose(6, 3), (5, 4)),
    (keras.layers.Conv2DTranspose(6, 3), (5, 5, 4)),
    (keras.layers.Conv3DTranspose(6, 2), (3, 3, 3, 4)),
    (keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (6, 6, 3)),
    (keras.layers.DepthwiseConv1D(3, depth_multiplier=2), (6, 3)),
    (keras.layers.SeparableConv1D(6, 3, depth_multiplier=2), (7, 3)),
    (keras.layers.SeparableConv2D(6, 3, depth_multiplier=2), (7, 7, 3)),
]


@pytest.mark.parametrize(
    "layer,input_shape",
    LAYERS,
    ids=lambda v: type(v).__name__ if isinstance(v, keras.layers.Layer) else "",
)
def test_filter_axes_index_output_channels(layer, input_shape):
    """Zeroing one filter (per the registry) must zero exactly that output channel."""
    spec = registry.spec_for(layer)
    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    out_channels = layer(x).shape[-1]
    kernel = named_variable(layer, spec.weight)
    assert spec.filter_count(kernel.shape) == out_channels
    canonical = spec.to_canonical(keras.ops.convert_to_numpy(kernel))
    canonical[2] = 0
    kernel.assign(spec.from_canonical(canonical, kernel.shape))
    bias = named_variable(layer, spec.bias)
    bias.assign(np.zeros(bias.shape))
    out = np.array(layer(x))
    assert np.all(out[..., 2] == 0)
    assert np.any(out[..., 1] != 0)


@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=5))
@settings(max_examples=40, deadline=None)
def test_canonical_view_round_trips(shape):
    spec = LayerSpec("kernel", filter_axes=(-1,), input_axis=-2)
    array = np.arange(np.prod(shape)).reshape(shape)
    canonical = spec.to_canonical(array)
    assert canonical.shape == (shape[-1], int(np.prod(shape[:-2])), shape[-2])
    np.testing.assert_array_equal(spec.from_canonical(canonical, array.shape), array)


def test_register_layer_extends_pruning_to_a_new_type(cnn):
    class MyDense(keras.layers.Dense):
        pass

    assert registry.spec_for(MyDense(2)) is registry.spec_for(
        keras.layers.Dense(2)
    )  # subclasses inherit
    tfprune.register_layer(
        MyDense, tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0, bias=None)
    )
    assert registry.spec_for(MyDense(2)).bias is None
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        tfprune.register_layer(int, registry.spec_for(MyDense(2)))
    with pytest.raises(TypeError, match="LayerSpec"):
        tfprune.register_layer(MyDense, {"weight": "kernel"})


def test_register_layer_by_registered_name_needs_no_import_of_the_class():
    @keras.saving.register_keras_serializable(package="tfprune_tests_library")
    class LibraryDense(keras.layers.Dense):
        pass

    assert registry.spec_for(LibraryDense(2)).bias == "bias"  # from Dense, its base class
    spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0, bias=None)
    tfprune.register_layer("tfprune_tests_library>LibraryDense", spec)
    assert registry.spec_for(LibraryDense(2)) is spec  # the name is more specific than Dense
    assert "LibraryDense" in registry.supported_types()
    with pytest.raises(TypeError, match="registered name"):
        tfprune.register_layer("LibraryDense", spec)  # a class name alone is no registered name


def test_register_layer_by_import_path_reaches_a_class_no_library_registered():
    class UnregisteredDense(keras.layers.Dense):
        pass

    spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0, bias=None)
    path = f"{UnregisteredDense.__module__}.{UnregisteredDense.__qualname__}"
    assert registry.spec_for(UnregisteredDense(2)) is not spec
    tfprune.register_layer(path, spec)
    assert registry.spec_for(UnregisteredDense(2)) is spec
    assert "UnregisteredDense" in registry.supported_types()


def test_register_channel_rule_lets_the_graph_see_through_a_custom_layer():
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = Doubler(name="doubler")(x)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    assert {r["layer"]: r["removable"] for r in tfprune.explain(model)}["conv"] == 0  # a barrier
    tfprune.layers.register_channel_rule(Doubler, tfprune.layers.ChannelRule("passthrough"))
    assert {r["layer"]: r["removable"] for r in tfprune.explain(model)}["conv"] == 8
    with pytest.raises(ValueError, match="kind"):
        tfprune.layers.register_channel_rule(Doubler, tfprune.layers.ChannelRule("sideways"))
    with pytest.raises(TypeError):
        tfprune.layers.register_channel_rule(Doubler, "passthrough")


def test_softmax_activation_is_a_barrier_but_relu_is_not():
    assert registry.channel_rule(keras.layers.Activation("softmax")) is None
    assert registry.channel_rule(keras.layers.Activation("relu")).kind == "passthrough"


def test_layer_normalization_passes_channels_only_when_it_normalises_them_alone():
    assert (
        registry.channel_rule(keras.layers.LayerNormalization(), (None, 5, 6)).kind == "passthrough"
    )
    assert (
        registry.channel_rule(keras.layers.LayerNormalization(axis=2), (None, 5, 6)).kind
        == "passthrough"
    )
    assert registry.channel_rule(keras.layers.LayerNormalization(axis=1), (None, 5, 6)) is None
    assert registry.channel_rule(keras.layers.LayerNormalization(scale=False), (None, 6)) is None
    assert registry.channel_rule(keras.layers.RMSNormalization(), (None, 6)).masked == ("scale",)
    assert "softmax" in registry.barrier_reason(keras.layers.Activation("softmax"))
