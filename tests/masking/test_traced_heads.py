"""Attention written with ops inside custom layers: its heads (and grouped key/value heads)
prune as units, `shrink` removes them from every projection and rewrites the reshapes, and
the smaller model computes the same function, saves and exports."""

import keras
import numpy as np
import pytest
from keras import ops

import tfprune
from tfprune.masking.ranking import apply_target


class SplitHeadsAttention(keras.layers.Layer):
    """Self-attention as keras.io writes it by hand: one Dense per projection, reshapes into
    heads on sizes read from the input, and matmuls."""

    def __init__(self, heads, size, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.size = heads, size

    def build(self, shape):
        width = self.heads * self.size
        self.q, self.k, self.v = (keras.layers.Dense(width, name=n) for n in "qkv")
        self.out = keras.layers.Dense(shape[-1], name="out")

    def call(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]

        def heads(t):
            return ops.transpose(
                ops.reshape(t, (batch, length, self.heads, self.size)), (0, 2, 1, 3)
            )

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / self.size**0.5)
        merged = ops.transpose(ops.matmul(scores, v), (0, 2, 1, 3))
        return self.out(ops.reshape(merged, (batch, length, self.heads * self.size)))


class GroupedQueryAttention(keras.layers.Layer):
    """Grouped-query attention as KerasHub's Llama writes it: EinsumDense projections into
    heads, a rotation of each head's halves, key/value heads repeated for their queries, and
    either einsum attention or `ops.dot_product_attention`."""

    def __init__(self, heads, kv_heads, size, fused=False, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.kv_heads, self.size, self.fused = heads, kv_heads, size, fused

    def build(self, shape):
        def projection(name, heads):
            return keras.layers.EinsumDense("bqm,muh->bquh", (None, heads, self.size), name=name)

        self.q = projection("query", self.heads)
        self.k = projection("key", self.kv_heads)
        self.v = projection("value", self.kv_heads)
        self.out = keras.layers.EinsumDense("bquh,uhm->bqm", (None, shape[-1]), name="output")

    def rotate(self, t):
        first, second = ops.split(t, 2, axis=-1)
        return ops.concatenate([-second, first], axis=-1) * 0.5 + t

    def call(self, x):
        q, k, v = self.rotate(self.q(x)), self.rotate(self.k(x)), self.v(x)
        groups = self.heads // self.kv_heads
        k, v = ops.repeat(k, groups, axis=2), ops.repeat(v, groups, axis=2)
        if self.fused:
            return self.out(ops.dot_product_attention(q, k, v))
        scores = ops.softmax(ops.einsum("bquh,bkuh->buqk", q, k) / self.size**0.5, axis=-1)
        return self.out(ops.einsum("buqk,bkuh->bquh", scores, v))


class SwiGLU(keras.layers.Layer):
    """A gated feed-forward network: unit j of the gate and up projections, input j of down."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, shape):
        self.gate = keras.layers.Dense(self.units, use_bias=False, name="gate")
        self.up = keras.layers.Dense(self.units, use_bias=False, name="up")
        self.down = keras.layers.Dense(shape[-1], use_bias=False, name="down")

    def call(self, x):
        return self.down(ops.silu(self.gate(x)) * self.up(x))


def transformer(attention, length=6, width=16):
    inputs = keras.Input((length, width))
    x = inputs + attention(keras.layers.LayerNormalization(name="norm1")(inputs))
    x = x + SwiGLU(32, name="mlp")(keras.layers.LayerNormalization(name="norm2")(x))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def prune_and_shrink(model, target=0.4, **kwargs):
    pruned = tfprune.prune(
        model, schedule=tfprune.OneShot(target), target="flops", ranking="global", **kwargs
    )
    apply_target(pruned, target)
    return pruned, tfprune.shrink(tfprune.strip(pruned))


def kept_filters(wrapper):
    """Which filters a wrapper's mask keeps."""
    spec = wrapper.spec
    canonical = spec.to_canonical(wrapper.mask_array())
    return canonical.reshape(canonical.shape[0], -1).any(axis=1)


def heads_of(mask, size):
    """Which heads a filter mask keeps whole (each head `size` consecutive filters)."""
    blocks = np.asarray(mask).reshape(-1, size)
    assert np.all(blocks == blocks[:, :1]), "a head is pruned in part"
    return blocks[:, 0].astype(bool)


def test_heads_of_a_hand_written_attention_prune_as_units(tmp_path):
    keras.utils.set_random_seed(0)
    model = transformer(SplitHeadsAttention(4, 4, name="attention"))
    pruned, small = prune_and_shrink(model)
    masks = {w.layer.name: kept_filters(w) for w in tfprune.wrappers_of(pruned)}
    kept = {name: heads_of(masks[f"attention_{name}"], 4) for name in "qkv"}
    assert kept["q"].tolist() == kept["k"].tolist() == kept["v"].tolist()
    assert 0 < kept["q"].sum() < 4
    width = 4 * int(kept["q"].sum())
    assert (
        small.get_layer("attention_q").units
        == width
        == small.get_layer("attention_out").kernel.shape[0]
    )
    x = np.random.default_rng(0).random((3, 6, 16), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    tfprune.save_model(small, tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    assert np.abs(loaded(x) - small(x)).max() <= 1e-6
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x[:1]) <= 1e-4


@pytest.mark.parametrize("fused", [False, True])
def test_grouped_query_heads_go_with_their_key_value_head(fused):
    keras.utils.set_random_seed(0)
    model = transformer(GroupedQueryAttention(4, 2, 4, fused=fused, name="attention"))
    # Heads only (with the feed-forward units, the ranking takes those first here).
    pruned, small = prune_and_shrink(model, 0.15, layers=lambda layer: "attention" in layer.name)
    masks = {w.layer.name: kept_filters(w) for w in tfprune.wrappers_of(pruned)}
    query, key = masks["attention_query"], masks["attention_key"]
    np.testing.assert_array_equal(np.repeat(key, 2), query)  # a key head and its 2 queries
    np.testing.assert_array_equal(masks["attention_value"], key)
    kept = int(key.sum())
    assert 0 < kept < 2
    assert tuple(small.get_layer("attention_query").kernel.shape) == (16, 2 * kept, 4)
    assert tuple(small.get_layer("attention_key").kernel.shape) == (16, kept, 4)
    assert small.get_layer("mlp_gate").units == small.get_layer("mlp_up").units == 32
    x = np.random.default_rng(1).random((3, 6, 16), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5


def test_a_reshape_merging_the_last_two_axes_passes_channels_on():
    # DeepSpeech2's conv-to-RNN step: (time, frequency, channels) -> (time, frequency *
    # channels), each feature belonging to channel `i % channels`, as Flatten's do.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 6, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Reshape((10, 6 * 8), name="merge")(x)
    x = keras.layers.GRU(4, name="gru")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert rows["conv"]["removable"] == 8
    pruned = tfprune.prune(model, layers=["conv"], schedule=0.5)
    apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    assert small.get_layer("conv").filters == 4
    assert small.get_layer("gru").get_weights()[0].shape[0] == 6 * 4
    x = np.random.default_rng(0).random((2, 10, 6, 1), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
