"""What tracing and the op rules must not get wrong: channels whose counts an op bakes in
are pinned, shrink stays exact, and the user's layers are left as they were."""

import keras
import numpy as np
import pytest
from keras import ops

import tfprune
from tfprune.core import keras_internals
from tfprune.graph.tracing import written_out
from tfprune.masking.ranking import apply_target


def shrunk(model, target=0.5, **kwargs):
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(target), **kwargs)
    apply_target(pruned, target)
    return pruned, tfprune.shrink(tfprune.strip(pruned))


def difference(a, b, x):
    return float(np.abs(keras.ops.convert_to_numpy(a(x)) - keras.ops.convert_to_numpy(b(x))).max())


class SlicedGLU(keras.layers.Layer):
    """A gated unit written with slices of one projection: the bounds count channels."""

    def build(self, shape):
        self.up = keras.layers.Dense(16, name="up")
        self.down = keras.layers.Dense(shape[-1], name="down")

    def call(self, x):
        h = self.up(x)
        return self.down(h[..., :8] * ops.sigmoid(h[..., 8:]))


class SplitGLU(SlicedGLU):
    """The same, with `ops.split` into two equal sections."""

    def call(self, x):
        gate, value = ops.split(self.up(x), 2, axis=-1)
        return self.down(ops.sigmoid(gate) * value)


def glu_model(block):
    inputs = keras.Input((5, 8))
    x = inputs + block(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x)))


def test_a_slice_of_the_channels_pins_them_and_an_equal_split_ties_its_sections():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((2, 5, 8), dtype=np.float32)
    sliced = {row["layer"]: row for row in tfprune.explain(glu_model(SlicedGLU(name="glu")))}
    assert sliced["glu_up"]["removable"] == 0
    assert "a part of the channels" in sliced["glu_up"]["reasons"][0]
    pruned, small = shrunk(glu_model(SplitGLU(name="glu")), layers=["glu_up"])
    assert small.get_layer("glu_up").units == 8  # 4 gated units of 8 left, both halves
    assert difference(small, tfprune.strip(pruned), x) <= 1e-5


class ScaledAttention(keras.layers.Layer):
    """Attention with a learned temperature per head, `(heads, 1, 1)` (Swin V2's
    logit_scale), or a learned bias per head given to `ops.dot_product_attention`."""

    def __init__(self, fused, **kwargs):
        super().__init__(**kwargs)
        self.fused = fused

    def build(self, shape):
        def projection(name):
            return keras.layers.EinsumDense("bqm,muh->bquh", (None, 4, 4), name=name)

        self.q, self.k, self.v = projection("query"), projection("key"), projection("value")
        self.out = keras.layers.EinsumDense("bquh,uhm->bqm", (None, shape[-1]), name="output")
        self.scale = self.add_weight(shape=(4, 1, 1), initializer="ones", name="scale")
        self.bias = self.add_weight(shape=(1, 4, 6, 6), initializer="zeros", name="bias")

    def call(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.fused:
            return self.out(ops.dot_product_attention(q, k, v, bias=self.bias))
        scores = ops.softmax(ops.einsum("bquh,bkuh->buqk", q, k) * self.scale, axis=-1)
        return self.out(ops.einsum("buqk,bkuh->bquh", scores, v))


@pytest.mark.parametrize("fused", [False, True])
def test_a_weight_with_one_entry_per_head_pins_the_heads(fused):
    inputs = keras.Input((6, 16))
    x = inputs + ScaledAttention(fused, name="attention")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x)))
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert rows["attention_query"]["removable"] == 0
    assert "4" in rows["attention_query"]["reasons"][0]  # the count baked in


def test_a_softmax_over_several_axes_is_read():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = ops.softmax(x, axis=(1, 2))  # a spatial softmax: the channels pass
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x)))
    assert {row["layer"]: row for row in tfprune.explain(model)}["conv"]["removable"] == 8


class Noisy(keras.layers.Layer):
    """Shifts its output in training, by a Python branch on `training`."""

    def build(self, shape):
        self.dense = keras.layers.Dense(shape[-1], name="dense")

    def call(self, x, training=None):
        y = self.dense(x)
        return y + 0.1 if training else y


class Holder(keras.layers.Layer):
    """Calls a layer it holds, one it shares with the rest of the model, keeps its last
    output as an attribute, and scales by a weight with a regularizer and a constraint."""

    def __init__(self, shared, **kwargs):
        super().__init__(**kwargs)
        self.shared = shared
        self.dense = keras.layers.Dense(8, name="dense")

    def build(self, shape):
        self.gamma = self.add_weight(
            shape=(8,), initializer="ones", regularizer="l2", constraint="non_neg", name="gamma"
        )

    def call(self, x):
        self.last = self.shared(self.dense(x)) * self.gamma
        return self.last + x


def test_the_written_out_model_keeps_sharing_regularizers_and_leaves_the_layers_alone():
    keras.utils.set_random_seed(0)
    shared = keras.layers.Dense(8, name="shared")
    inputs = keras.Input((8,))
    first, second = Holder(shared, name="emb"), Holder(shared, name="second")
    x = second(first(shared(inputs)))
    x = keras.layers.Dense(8, name="emb_dense_1")(x)  # a name the trace would also pick
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    kept = first.last  # what Keras' own build left there
    copy, tracer = written_out(model)
    assert tracer.refused == {}
    assert copy.count_params() == model.count_params()  # `shared` is one layer still
    assert len(copy.losses) == len(model.losses) == 2
    assert copy.get_layer("emb_gamma").value.constraint is not None
    assert first.last is kept and len(keras_internals.calls_of(shared)) == 1
    x = np.random.default_rng(0).random((3, 8), dtype=np.float32)
    assert difference(copy, model, x) <= 1e-6


def test_a_layer_that_acts_otherwise_in_training_or_calls_what_it_does_not_hold_stays_whole():
    outside = keras.layers.Dense(4, name="outside")

    class Borrower(keras.layers.Layer):
        def build(self, shape):
            self.dense = keras.layers.Dense(4, name="dense")

        def call(self, x):
            return outside(self.dense(x))

    for layer, reason in (
        (Noisy(name="noisy"), "branches on `training`"),
        (Borrower(name="borrower"), "'outside' (Dense), which it does not hold"),
    ):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, layer(inputs))
        copy, tracer = written_out(model)
        assert copy is model and reason in tracer.refused[layer.name]
    assert keras_internals.calls_of(outside) == []
