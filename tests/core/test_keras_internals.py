"""One test per accessor of private Keras API: a Keras upgrade that moves one fails here."""

import keras
import numpy as np
import pytest

from tfprune.core import keras_internals


@pytest.fixture
def functional():
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden + 1.0), name="functional")


def test_is_functional_tells_graph_models_from_the_rest(functional):
    class Subclassed(keras.Model):
        def call(self, x):
            return x

    class BuiltFunctionally(keras.Model):
        def __init__(self):
            inputs = keras.Input((4,))
            super().__init__(inputs, keras.layers.Dense(2)(inputs))

    assert keras_internals.is_functional(functional)
    assert keras_internals.is_functional(BuiltFunctionally())
    assert not keras_internals.is_functional(Subclassed())
    assert not keras_internals.is_functional(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    )


def test_graph_of_a_sequential_model_is_functional():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    graph = keras_internals.graph_of(model)
    assert keras_internals.is_functional(graph) and [layer.name for layer in graph.layers[1:]] == [
        "fc"
    ]


def test_node_calls_are_in_topological_order_without_inputs(functional):
    calls = keras_internals.node_calls(functional)
    names = [getattr(call.operation, "name", type(call.operation).__name__) for call in calls]
    assert names[0] == "hidden" and names[-1] == "out" and len(calls) == 3  # hidden, `+ 1.0`, out
    add = calls[1]
    assert isinstance(add.operation, keras_internals.numpy_op("Add"))
    assert add.inputs == [functional.get_layer("hidden").output] and add.outputs[0].shape == (
        None,
        3,
    )


def test_calls_of_lists_every_call_of_a_shared_layer():
    shared = keras.layers.Dense(3, name="shared")
    a, b = keras.Input((4,)), keras.Input((4,))
    keras.Model([a, b], [shared(a), shared(b)])
    calls = keras_internals.calls_of(shared)
    assert [inputs[0] for inputs, _ in calls] == [a, b]
    assert all(outputs[0].shape == (None, 3) for _, outputs in calls)


def test_producer_call_and_sublayers():
    inputs = keras.Input((3, 8))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    outputs = attention(inputs, inputs)
    call = keras_internals.producer_call(outputs)
    assert call.operation is attention and call.inputs[0] is inputs
    assert keras_internals.producer_call(inputs).operation is None
    dense = [s for s in keras_internals.sublayers(attention) if type(s).__name__ == "EinsumDense"]
    assert len(dense) == 4  # query, key, value, output


def test_producer_of_a_tensor(functional):
    operation, index = keras_internals.producer_of(functional.get_layer("out").output)
    assert operation is functional.get_layer("out") and index == 0


def test_array_arguments_and_fill_arguments():
    inputs = keras.Input((3,))
    outputs = inputs * np.array([1.0, 2.0, 3.0], np.float32)
    call = keras_internals.node_calls(keras.Model(inputs, outputs))[0]
    (constant,) = keras_internals.array_arguments(call.arguments)
    np.testing.assert_array_equal(constant, [1.0, 2.0, 3.0])
    args, kwargs = keras_internals.fill_arguments(
        call.arguments, {id(inputs): np.ones((1, 3), np.float32)}
    )
    np.testing.assert_array_equal(call.operation(*args, **kwargs), [[1.0, 2.0, 3.0]])


def test_unsafe_deserialization_rebuilds_a_lambda():
    layer = keras.layers.Lambda(lambda t: t * 2.0)
    with keras_internals.unsafe_deserialization():
        clone = keras.layers.Lambda.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(np.ones((1, 2), np.float32)), [[2.0, 2.0]])


def test_attention_projections_have_the_documented_kernels():
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5)
    attention(np.zeros((1, 4, 6), np.float32), np.zeros((1, 4, 6), np.float32))
    projections = keras_internals.attention_projections(attention)
    assert sorted(projections) == ["key", "output", "query", "value"]
    assert tuple(projections["query"].kernel.shape) == (6, 2, 3)
    assert tuple(projections["value"].kernel.shape) == (6, 2, 5)
    assert tuple(projections["output"].kernel.shape) == (2, 5, 6)


def test_op_classes_are_keras_operations():
    for op in (
        keras_internals.numpy_op("Add"),
        keras_internals.numpy_op("Multiply"),
        keras_internals.nn_op("Relu"),
    ):
        assert issubclass(op, keras.Operation)
    inputs = keras.Input((3,))
    (call,) = keras_internals.node_calls(keras.Model(inputs, keras.ops.relu(inputs)))
    assert isinstance(call.operation, keras_internals.nn_op("Relu"))


def test_convnext_layer_scale_is_the_applications_layer():
    layer_scale = keras_internals.convnext_layer_scale()
    assert layer_scale.__module__ == "keras.src.applications.convnext"
    layer = layer_scale(init_values=0.5, projection_dim=3)
    np.testing.assert_allclose(layer(np.ones((1, 3), np.float32)), [[0.5, 0.5, 0.5]])
    assert [tuple(w.shape) for w in layer.weights] == [(3,)]  # one unnamed per-channel weight


def test_filter_config_keeps_keras_automatic_config_underneath():
    class Automatic(keras.layers.Layer):  # no get_config: Keras writes one from __init__
        def __init__(self, units):
            super().__init__()
            self.units = units

    layer = Automatic(3)
    keras_internals.filter_config(layer, {"units"})
    assert layer.get_config() == {"units": 3}


def test_detached_copy_calls_without_adding_nodes_to_the_original():
    relu = keras.layers.ReLU(name="act")
    twin = keras_internals.detached_copy(relu)
    inputs = keras.Input((3,))
    keras.Model(inputs, twin(inputs))
    assert len(keras_internals.calls_of(twin)) == 1 and keras_internals.calls_of(relu) == []


def test_intercepted_layer_calls_can_take_a_call_over_and_restores_keras():
    dense = keras.layers.Dense(2)

    def replace(layer, args, kwargs):
        return "taken" if layer is dense else NotImplemented

    with keras_internals.intercepted_layer_calls(replace):
        assert dense(np.zeros((1, 3))) == "taken"
        assert keras.layers.Dense(2)(np.zeros((1, 3))).shape == (1, 2)
    assert dense(np.zeros((1, 3))).shape == (1, 2)


def test_patched_attributes_restores_even_after_an_error():
    original = keras.ops.shape
    with pytest.raises(RuntimeError):
        with keras_internals.patched_attributes(keras.ops, {"shape": None}):
            raise RuntimeError
    assert keras.ops.shape is original


def test_child_layers_are_the_direct_sublayers_only():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="deep")])

    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.first = keras.layers.Dense(2, name="first")
            self.inner = inner

    assert [layer.name for layer in keras_internals.child_layers(Holder())] == [
        "first",
        inner.name,
    ]


def test_op_function_and_einsum_equation_read_op_nodes():
    a, b = keras.Input((4, 3)), keras.Input((5, 3))
    model = keras.Model([a, b], keras.ops.einsum("bqd,bkd->bqk", a, b) + 1.0)
    functions = [
        keras_internals.op_function(call.operation) for call in keras_internals.node_calls(model)
    ]
    assert functions == ["einsum", "add"]
    einsum = keras_internals.node_calls(model)[0].operation
    assert keras_internals.einsum_equation(einsum) == "bqd,bkd->bqk"
    assert keras_internals.op_function(keras.layers.Dense(2)) is None


class _CountedDense(keras.layers.Dense):
    """A Dense layer that counts how often its `Layer.__call__` runs."""

    calls = 0

    def __call__(self, *args, **kwargs):
        type(self).calls += 1
        return super().__call__(*args, **kwargs)


def _wrapped(**settings):
    inner = _CountedDense(3, **settings)
    outer = keras.layers.Wrapper(inner)
    outer.build((None, 4))
    return outer, inner


def test_call_inside_skips_the_inner_call_machinery_only_where_it_would_repeat_the_outer():
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 4)), "float32")
    outer, inner = _wrapped()
    expected = keras.ops.convert_to_numpy(inner(x))
    _CountedDense.calls = 0
    out = keras_internals.call_inside(outer, inner, x, training=True)
    assert _CountedDense.calls == 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), expected)

    # Each of these needs Keras' own __call__: a mask to carry, a regulariser to record, a
    # different dtype policy to cast to.
    masked = keras.ops.convert_to_tensor(np.ones((2, 4)), "float32")
    keras.src.backend.set_keras_mask(masked, keras.ops.ones((2,), "bool"))
    keras_internals.call_inside(outer, inner, masked)
    outer, inner = _wrapped(activity_regularizer="l2")
    keras_internals.call_inside(outer, inner, x)
    assert len(inner.losses) == 1
    outer, inner = _wrapped(dtype="float16")
    assert (
        keras.ops.convert_to_numpy(keras_internals.call_inside(outer, inner, x)).dtype == "float16"
    )
    assert _CountedDense.calls == 3
