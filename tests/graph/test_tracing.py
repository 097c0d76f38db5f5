"""Tracing: custom layers written out as their sublayers and ops compute what they computed,
at any batch size and length, with their weights as trainable weights of their own."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops

from keras_hub_zoo import FAMILIES
from keras_io_layers import sequence_pooled, text_classifier
from tfprune.graph.tracing import is_custom, written_out
from tfprune.layers import registry


def unknown_with_weights(layer):
    return is_custom(layer) and layer.weights and not registry.has_rule(layer)


def flat(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def max_difference(a, b, x):
    pairs = zip(flat(a(x, training=False)), flat(b(x, training=False)))
    return max(float(np.abs(u - v).max()) for u, v in pairs)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_keras_hub_blocks_are_written_out_and_compute_the_same_function(family, tmp_path):
    build, inputs = FAMILIES[family]
    keras.utils.set_random_seed(0)
    model = build()
    copy, tracer = written_out(model, select=lambda layer: is_custom(layer) and layer.weights)
    assert tracer.refused == {}
    # Left whole: layers without weights (Whisper's Padder) and subclasses of layers
    # tfprune knows (its caching attention is a MultiHeadAttention).
    assert not [layer.name for layer in copy.layers if unknown_with_weights(layer)]
    for batch, length in ((2, 6), (3, 9)):  # sizes the trace was never told
        assert max_difference(model, copy, inputs(batch, length)) <= 1e-6
    # Its own weights: changing the copy leaves the original alone.
    original = [np.copy(w) for w in model.get_weights()]
    for variable in copy.trainable_variables:
        variable.assign(variable + 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(original, model.get_weights()))
    path = tmp_path / f"{family}.keras"
    copy.save(path)
    assert max_difference(copy, keras.saving.load_model(path), inputs(2, 6)) == 0.0


def test_a_block_shared_across_depth_stays_shared():
    build, inputs = FAMILIES["albert"]
    model = build()  # ALBERT calls one TransformerEncoder at every depth
    copy, _ = written_out(model)
    assert copy.count_params() == model.count_params()
    assert max_difference(model, copy, inputs(2, 8)) <= 1e-6


class Projection(keras.layers.Layer):
    """A dense layer written with its kernel used directly, plus a learned position table."""

    def __init__(self, units, length, **kwargs):
        super().__init__(**kwargs)
        self.units, self.length = units, length

    def build(self, shape):
        self.kernel = self.add_weight(shape=(shape[-1], self.units), name="kernel")
        self.positions = self.add_weight(shape=(self.length, self.units), name="positions")
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        y = ops.matmul(x, self.kernel)
        return self.norm(y + self.positions[: ops.shape(x)[1]])


def test_weights_a_block_reads_directly_stay_trainable_weights():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, Projection(6, 16, name="projection")(inputs))
    copy, _ = written_out(model, select=is_custom)
    assert sorted(v.path for v in copy.trainable_variables) == [
        "projection_kernel/value",
        "projection_norm/beta",
        "projection_norm/gamma",
        "projection_positions/value",
    ]
    x = np.random.default_rng(0).random((4, 5, 4), dtype=np.float32)
    assert max_difference(model, copy, x) <= 1e-6
    copy.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = keras.ops.convert_to_numpy(copy.get_layer("projection_kernel").value).copy()
    copy.fit(x, np.ones((4, 5, 6)), epochs=1, verbose=0)
    after = keras.ops.convert_to_numpy(copy.get_layer("projection_kernel").value)
    assert not np.allclose(before, after)


class ValueBranch(keras.layers.Layer):
    """Branches on a tensor's value: no symbolic trace can follow it."""

    def build(self, shape):
        self.dense = keras.layers.Dense(shape[-1])

    def call(self, x):
        if float(ops.convert_to_numpy(ops.sum(x))) > 0:
            return self.dense(x)
        return x

    def compute_output_shape(self, shape):
        return shape


class ListedWeight(keras.layers.Layer):
    """Keeps its variable in a list, where the trace cannot swap it for a layer."""

    def build(self, shape):
        self.dense = keras.layers.Dense(shape[-1])
        self.scales = [self.add_weight(shape=shape[-1:], initializer="ones")]

    def call(self, x):
        return self.dense(x) * self.scales[0]


@pytest.mark.parametrize(
    "layer, reason",
    [
        (ValueBranch(name="branchy"), "cannot run on symbolic tensors"),
        (ListedWeight(name="listed"), "reads weights other than through an attribute"),
    ],
)
def test_a_layer_that_cannot_be_traced_stays_whole_and_says_why(layer, reason):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    copy, tracer = written_out(model, select=is_custom)
    assert copy is model
    assert reason in tracer.refused[layer.name]


def test_keras_io_custom_layers_are_written_out():
    keras.utils.set_random_seed(0)
    for model, x in (
        (text_classifier(), np.random.default_rng(0).integers(0, 100, (3, 16))),
        (sequence_pooled(), np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)),
    ):
        copy, tracer = written_out(model, select=is_custom)
        left = [layer for layer in copy.layers if unknown_with_weights(layer)]
        assert tracer.refused == {} and not left
        assert max_difference(model, copy, x) <= 1e-6


# --------------------------------------------------------------------- random custom blocks
class Heads(keras.layers.Layer):
    """Self-attention written with reshapes, transposes and matmuls on `ops.shape` sizes."""

    def __init__(self, heads, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads

    def build(self, shape):
        width = shape[-1]
        self.qkv = keras.layers.Dense(3 * width, name="qkv")
        self.out = keras.layers.Dense(width, name="out")

    def call(self, x):
        batch, length, width = ops.shape(x)
        size = width // self.heads
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)

        def split(t):
            return ops.transpose(ops.reshape(t, (batch, length, self.heads, size)), (0, 2, 1, 3))

        scores = ops.softmax(ops.matmul(split(q), ops.transpose(split(k), (0, 1, 3, 2))))
        merged = ops.reshape(
            ops.transpose(ops.matmul(scores, split(v)), (0, 2, 1, 3)), (batch, length, width)
        )
        return self.out(merged)


class Gated(keras.layers.Layer):
    """A gated feed-forward network (SwiGLU) with a kernel read directly."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.gate = keras.layers.Dense(self.units, name="gate", use_bias=False)
        self.up = self.add_weight(shape=(shape[-1], self.units), name="up")
        self.down = keras.layers.Dense(shape[-1], name="down")

    def call(self, x):
        return self.down(ops.silu(self.gate(x)) * ops.matmul(x, self.up))


class Block(keras.layers.Layer):
    """A residual block of random parts; `pre_norm` is branched on in Python, as
    configuration, and `scale` is an argument of the call."""

    def __init__(self, parts, pre_norm, **kwargs):
        super().__init__(**kwargs)
        self.parts, self.pre_norm = list(parts), pre_norm

    def build(self, shape):
        makers = {
            "heads": lambda i: Heads(2, name=f"heads_{i}"),
            "gated": lambda i: Gated(8, name=f"gated_{i}"),
        }
        self.inner = [makers[part](i) for i, part in enumerate(self.parts)]
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.gamma = self.add_weight(shape=shape[-1:], initializer="ones", name="gamma")

    def call(self, x, scale=1.0):
        for inner in self.inner:
            y = inner(self.norm(x) if self.pre_norm else x)
            x = x + scale * self.gamma * y  # LayerScale
        return x if self.pre_norm else self.norm(x)


@settings(max_examples=6, deadline=None)
@given(
    parts=st.lists(st.sampled_from(["heads", "gated"]), min_size=1, max_size=3),
    pre_norm=st.booleans(),
    shared=st.booleans(),
    scale=st.sampled_from([1.0, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_random_custom_blocks_trace_to_the_same_function(parts, pre_norm, shared, scale, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 8))
    first = Block(parts, pre_norm, name="first")
    second = first if shared else Block(list(reversed(parts)), not pre_norm, name="second")
    model = keras.Model(inputs, second(first(inputs, scale=scale), scale=scale))
    copy, tracer = written_out(model, select=is_custom)
    assert tracer.refused == {}
    assert copy.count_params() == model.count_params()  # a shared block stays shared
    rng = np.random.default_rng(seed)
    for batch, length in ((1, 3), (4, 7)):
        x = rng.standard_normal((batch, length, 8)).astype("float32")
        assert max_difference(model, copy, x) <= 1e-6
