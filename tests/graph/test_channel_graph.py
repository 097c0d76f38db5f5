"""The channel graph's coupling rules, each checked by shrinking a model built for it."""

import keras
import numpy as np
import pytest
from helpers import inputs_for, max_diff, prune_and_shrink, randomize_bn

import tfprune


@pytest.mark.parametrize(
    "merge",
    [
        keras.layers.Subtract,
        keras.layers.Multiply,
        keras.layers.Average,
        keras.layers.Maximum,
        keras.layers.Minimum,
    ],
)
def test_other_elementwise_merges_couple_their_inputs(merge):
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    b = keras.layers.Conv2D(8, 1, name="b")(inputs)
    x = merge()([a, b])
    x = keras.layers.Conv2D(4, 1, name="c")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    pruned, small = prune_and_shrink(model, 0.5, protect=None)
    assert small.get_layer("a").filters == small.get_layer("b").filters == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_concatenate_shifts_channel_indices_by_offsets():
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(6, 3, padding="same", name="b")(inputs)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.Conv2D(5, 1, name="mix")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=None)
    a_w = pruned.get_layer("prune_a")
    a_w.assign_mask(np.broadcast_to(np.array([1, 0, 1, 0], np.float32), a_w.mask.shape))
    b_w = pruned.get_layer("prune_b")
    b_w.assign_mask(np.broadcast_to(np.array([0, 1, 1, 1, 1, 0], np.float32), b_w.mask.shape))
    small = tfprune.shrink(pruned)
    kept_rows = [0, 2, 5, 6, 7, 8]  # a's 0, 2 and b's 1-4 shifted by a's 4 channels
    mix = pruned.get_layer("mix").kernel.numpy()
    np.testing.assert_array_equal(small.get_layer("mix").kernel.numpy(), mix[:, :, kept_rows, :])
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_follows_its_input_channels(multiplier):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 1, name="expand")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=multiplier, name="dw")(x)
    x = keras.layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=multiplier, name="sep")(
        x
    )
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, protect=["sep"])
    assert small.get_layer("expand").filters == 3
    assert small.get_layer("dw").kernel.shape == (3, 3, 3, multiplier)
    assert small.get_layer("sep").depthwise_kernel.shape[2] == 3 * multiplier
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_flatten_to_dense_uses_channels_last_expansion():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["conv"])
    conv = pruned.get_layer("prune_conv")
    keep = np.array([1, 1, 0, 1, 0, 0], np.float32)
    conv.assign_mask(np.broadcast_to(keep, conv.mask.shape))
    small = tfprune.shrink(pruned)
    rows = [i for i in range(96) if keep[i % 6]]
    np.testing.assert_array_equal(
        small.get_layer("fc").kernel.numpy(), pruned.get_layer("fc").kernel.numpy()[rows]
    )
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_squeeze_excite_broadcast_multiply_and_reshape():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("swish")(x)
    se = keras.layers.GlobalAveragePooling2D()(x)
    se = keras.layers.Reshape((1, 1, 8))(se)
    se = keras.layers.Conv2D(2, 1, activation="swish", name="se_reduce")(se)
    se = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply()([x, se])
    x = keras.layers.Conv2D(4, 1, name="project")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, protect=["project", "se_reduce"])
    assert small.get_layer("conv").filters == small.get_layer("se_expand").filters == 4
    assert small.get_layer("se_reduce").kernel.shape[2] == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_keras_ops_in_the_graph_follow_the_layers_rules():
    """`x + shortcut`, `x * 2.0` and `keras.ops.relu(x)` are ops, not layers; a constant
    with the old channel count baked in is a barrier."""
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(inputs)
    x = keras.ops.relu(a + b) * 2.0
    x = keras.layers.Conv2D(8, 3, padding="same", name="reader")(x)
    y = keras.layers.Conv2D(8, 1, name="biased")(x) + np.linspace(0, 1, 8).astype(np.float32)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(y)))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    assert rows["a"]["removable"] == rows["b"]["removable"] == rows["reader"]["removable"] == 8
    assert (
        rows["biased"]["removable"] == 0
        and "constant of 8 channels" in rows["biased"]["reasons"][0]
    )
    pruned, small = prune_and_shrink(model, 0.5, layers=["a", "b"])
    np.testing.assert_array_equal(
        pruned.get_layer("prune_a").mask_array(), pruned.get_layer("prune_b").mask_array()
    )
    assert small.get_layer("a").filters == small.get_layer("b").filters == 4
    assert small.get_layer("reader").kernel.shape[2] == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@pytest.mark.parametrize("multiplier", [1, 2])
def test_grouped_conv_with_one_group_per_channel_is_depthwise(multiplier):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Conv2D(8 * multiplier, 3, padding="same", groups=8, name="grouped_dw")(x)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(
        x
    )  # two channels per group
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    assert rows["conv"]["removable"] == 8 and rows["reader"]["removable"] == 0
    assert (
        "grouped convolution with several input channels per group" in rows["reader"]["reasons"][0]
    )
    pruned, small = prune_and_shrink(model, 0.5, layers=["conv", "grouped_dw"])
    assert pruned.get_layer("prune_grouped_dw").spec.coupled
    dw = small.get_layer("grouped_dw")
    assert (dw.groups, dw.filters, dw.kernel.shape) == (
        4,
        4 * multiplier,
        (3, 3, 1, 4 * multiplier),
    )
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: keras.layers.Dropout(0.3),
        lambda: keras.layers.SpatialDropout2D(0.3),
        lambda: keras.layers.GaussianNoise(0.1),
        lambda: keras.layers.LeakyReLU(0.1),
        lambda: keras.layers.ELU(),
        lambda: keras.layers.PReLU(),
        lambda: keras.layers.ZeroPadding2D(1),
        lambda: keras.layers.Cropping2D(1),
        lambda: keras.layers.UpSampling2D(2),
        lambda: keras.layers.Resizing(5, 5),
        lambda: keras.layers.AveragePooling2D(2, padding="same"),
        lambda: keras.layers.MaxPooling2D(2),
    ],
    ids=lambda make: type(make()).__name__,
)
def test_pass_through_layers_carry_channels(make_layer):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = make_layer()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, layers=["conv"])
    assert small.get_layer("conv").filters == 4
    assert small.get_layer("reader").kernel.shape[2] == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


class DropPath(keras.layers.Layer):
    """Stochastic depth: drops whole examples in training, the identity in inference."""

    def __init__(self, rate=0.5, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, x, training=None):
        if not training:
            return x
        keep = keras.random.uniform((keras.ops.shape(x)[0], 1, 1, 1)) >= self.rate
        return x * keras.ops.cast(keep, x.dtype) / (1 - self.rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class LayerScale(keras.layers.Layer):
    """A learned per-channel scale read directly, as ConvNeXt-style custom blocks write it."""

    def build(self, shape):
        self.gamma = self.add_weight(shape=shape[-1:], initializer="ones", name="gamma")

    def call(self, x):
        return x * self.gamma


def test_stochastic_depth_and_layer_scale_pass_channels_and_shrink():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = DropPath(name="drop")(LayerScale(name="scale")(x))
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert rows["conv"]["removable"] == 8  # through the scale's Weight and the drop path
    pruned, small = prune_and_shrink(model, 0.5, layers=["conv"])
    assert small.get_layer("conv").filters == 4
    assert tuple(small.get_layer("scale_gamma").value.shape) == (4,)
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5
