"""shrink: every coupling rule by hand, random networks by hypothesis, real applications."""

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfprune
from conftest import random_network
from tfprune import modelwalk
from tfprune.ranking import apply_target


def randomize_bn(model, seed=0):
    """Trained-looking BN statistics and LayerNormalization weights, so constants after a
    pruned filter are not trivially zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_bn(layer, seed + 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c), rng.uniform(0.5, 2, c)]
            )
        elif isinstance(layer, keras.layers.LayerNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if w.name == "gamma" else rng.normal(0, 0.5, w.shape) for w in layer.weights])


def prune_and_shrink(model, target=0.3, **kwargs):
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(target), **kwargs)
    apply_target(pruned, target)
    return pruned, tfprune.shrink(pruned)


def max_diff(a, b, x):
    return float(np.abs(np.asarray(a(x, training=False)) - np.asarray(b(x, training=False))).max())


def inputs_for(model, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *model.input_shape[1:]), dtype=np.float32)


def widths(model):
    return {layer.name: layer.output.shape[-1] for layer in model.layers if hasattr(layer, "filters") or hasattr(layer, "units")}


# ----------------------------------------------------------------------------- coupling rules


def test_conv_to_conv_through_bn_relu_pool():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(6, 3, padding="same", name="c2")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="out")(x))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, protect=["out"])
    assert small.get_layer("c1").filters == 4 and small.get_layer("c2").filters == 3
    assert small.get_layer("bn").gamma.shape == (4,)
    assert small.get_layer("c2").kernel.shape == (3, 3, 4, 3)
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_residual_add_prunes_the_whole_stage_consistently():
    inputs = keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(stem)
    x = keras.layers.Add(name="add1")([stem, a])
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
    x = keras.layers.Add(name="add2")([x, b])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned, small = prune_and_shrink(model, 0.5, protect=None)
    masks = [w.mask_array()[..., :].reshape(-1, 8).any(axis=0) for w in tfprune.wrappers_of(pruned)]
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])  # one channel set for stem, a and b
    assert {small.get_layer(n).filters for n in ("stem", "a", "b")} == {4}
    assert small.get_layer("head").kernel.shape == (4, 3)
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@pytest.mark.parametrize("merge", [keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average, keras.layers.Maximum, keras.layers.Minimum])
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
    x = keras.layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=multiplier, name="sep")(x)
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
    np.testing.assert_array_equal(small.get_layer("fc").kernel.numpy(), pruned.get_layer("fc").kernel.numpy()[rows])
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


def test_constants_fold_into_the_next_bias_only_where_exact():
    """Zeroed filters with a nonzero bias leave a constant channel: a dense or valid-padding
    reader absorbs it into its bias; a same-padding 3x3 reader must keep it."""
    inputs = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    valid = keras.layers.Conv2D(3, 3, padding="valid", use_bias=False, name="valid_reader")(a)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    same = keras.layers.Conv2D(3, 3, padding="same", name="same_reader")(b)
    c = keras.layers.Conv2D(4, 1, name="c")(inputs)
    dense = keras.layers.Dense(3, name="dense_reader")(keras.layers.GlobalAveragePooling2D()(c))
    model = keras.Model(inputs, [valid, same, dense])
    for name in ("a", "b", "c"):
        layer = model.get_layer(name)
        kernel = layer.kernel.numpy()
        kernel[..., :2] = 0
        layer.set_weights([kernel, np.array([0.5, -1.0, 0.2, 0.3], np.float32)])
    small = tfprune.shrink(model)
    assert small.get_layer("a").filters == 2 and small.get_layer("valid_reader").use_bias
    assert small.get_layer("b").filters == 4  # zero padding would see the constant differently
    assert small.get_layer("c").filters == 2
    x = inputs_for(model)
    for got, want in zip(small(x), model(x)):
        assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 1e-5


def test_barriers_pin_channels_and_explain_says_why():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="before_reshape")(inputs)
    x = keras.layers.Reshape((36, 8))(x)  # keeps the channel axis: see-through
    x = keras.layers.Conv1D(8, 3, padding="same", name="before_lambda")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.Conv1D(8, 1, name="after_lambda")(x)
    x = keras.layers.Reshape((8, 36))(x)  # moves channels: a barrier
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    assert rows["before_reshape"]["removable"] == 8
    assert rows["before_lambda"]["removable"] == 0 and "Lambda" in rows["before_lambda"]["reasons"][0]
    assert rows["after_lambda"]["removable"] == 0 and "changes the channel count" in rows["after_lambda"]["reasons"][0]
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.3), protect=None)
    assert [w.layer.name for w in tfprune.wrappers_of(pruned)] == ["before_reshape"]
    with pytest.raises(ValueError, match="'before_lambda' cannot be pruned: Lambda"):
        tfprune.prune(model, layers=["before_lambda"])


@pytest.mark.parametrize(
    "make_norm",
    [
        lambda: keras.layers.LayerNormalization(name="norm"),
        lambda: keras.layers.LayerNormalization(center=False, name="norm"),
        lambda: keras.layers.LayerNormalization(axis=3, epsilon=1e-6, name="norm"),
        lambda: keras.layers.RMSNormalization(name="norm"),
    ],
    ids=["layer_norm", "no_center", "axis3", "rms_norm"],
)
def test_normalization_over_channels_passes_channels_through(make_norm):
    """The pruned channels' gamma (and beta) are masked, so they leave the normalization at
    zero; the shrunk layer keeps them in its mean and variance, so the kept channels agree."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = make_norm()(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, layers=["conv"])
    assert isinstance(pruned.get_layer("prune_norm"), tfprune.ChannelMaskWrapper)
    norm = small.get_layer("norm")
    assert type(norm).__name__ == "Shrunk" + type(model.get_layer("norm")).__name__
    assert norm.removed_values == [0.0] * 4 and small.get_layer("reader").kernel.shape[2] == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5
    # a stock layer of the kept width would normalise differently: the statistics matter
    stock_class = type(model.get_layer("norm"))

    def as_stock(layer):
        if layer is not norm:
            return layer.__class__.from_config(layer.get_config())
        config = {k: v for k, v in layer.get_config().items() if k != "removed_values"}
        return stock_class.from_config(config)

    stock = keras.models.clone_model(small, clone_function=as_stock)
    stock.set_weights(small.get_weights())
    assert type(stock.get_layer("norm")) is stock_class
    assert max_diff(stock, pruned, inputs_for(model)) > 1e-3


def test_layer_normalization_keeps_a_removed_nonzero_constant_in_its_statistics():
    """A dead Dense unit outputs its bias (2.0): the shrunk LayerNormalization must still
    count that 2.0 in its mean and variance."""
    inputs = keras.Input((5,))
    x = keras.layers.Dense(4, name="d")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    kernel, bias = model.get_layer("d").get_weights()
    kernel[:, 1], bias[1] = 0.0, 2.0
    model.get_layer("d").set_weights([kernel, bias])
    model.get_layer("norm").set_weights([np.array([1.0, 0.0, 0.7, 1.3], np.float32), np.array([0.1, 0.0, -0.2, 0.3], np.float32)])
    small = tfprune.shrink(model)
    norm = small.get_layer("norm")
    assert norm.removed_values == [2.0]
    assert max_diff(small, model, np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)) <= 1e-5
    # Shrinking again adds to what the layer already remembers.
    kernel, bias = small.get_layer("d").get_weights()
    kernel[:, 0], bias[0] = 0.0, -1.0
    small.get_layer("d").set_weights([kernel, bias])
    gamma, beta = small.get_layer("norm").get_weights()
    gamma[0] = beta[0] = 0.0
    small.get_layer("norm").set_weights([gamma, beta])
    smaller = tfprune.shrink(small)
    norm = smaller.get_layer("norm")
    assert norm.removed_values == [2.0, -1.0]
    assert max_diff(smaller, small, np.random.default_rng(1).normal(size=(8, 5)).astype(np.float32)) <= 1e-5


def test_shrunk_layer_normalization_quantizes_like_the_masked_model(tmp_path):
    """int8 export: the shrunk model's error against its float self is no worse than the
    masked model's (a formulation through sums of squares once measured 2.3x worse)."""
    keras.utils.set_random_seed(0)
    model = convnext_style()
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.3)
    assert any(isinstance(layer, tfprune.ShrunkLayerNormalization) for layer in small.layers)
    calibration, test = (np.random.default_rng(seed).random((64, 16, 16, 3), dtype=np.float32) for seed in (0, 1))
    errors = {}
    for name, candidate in (("masked", tfprune.strip(pruned)), ("shrunk", small)):
        path = tfprune.export_tflite(candidate, tmp_path / f"{name}.tflite", quantize="int8", representative_data=calibration)
        (quantized,) = tfprune.run_tflite(path, test)
        errors[name] = float(np.abs(quantized - np.asarray(candidate(test))).mean())
    assert errors["shrunk"] <= 1.3 * errors["masked"]


def test_normalization_that_cannot_zero_a_channel_or_pools_other_axes_is_a_barrier():
    inputs = keras.Input((6, 8))
    x = keras.layers.Conv1D(8, 3, padding="same", name="into_unscaled")(inputs)
    x = keras.layers.LayerNormalization(scale=False, name="unscaled")(x)
    x = keras.layers.Conv1D(8, 3, padding="same", name="into_time_norm")(x)
    x = keras.layers.LayerNormalization(axis=1, name="time_norm")(x)
    x = keras.layers.Conv1D(8, 3, padding="same", name="into_two_axes")(x)
    x = keras.layers.LayerNormalization(axis=[1, 2], name="two_axes")(x)
    x = keras.layers.Conv1D(8, 3, padding="same", name="free")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(x)))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    for name in ("into_unscaled", "into_time_norm", "into_two_axes"):
        assert rows[name]["removable"] == 0
        assert "normalises over other axes than the channels alone, or has no per-channel scale" in rows[name]["reasons"][0]
    assert rows["free"]["removable"] == 8
    with pytest.raises(ValueError, match="last axis only"):
        tfprune.ShrunkLayerNormalization(axis=1)(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="removed_values must be finite"):
        tfprune.ShrunkRMSNormalization(removed_values=[np.nan])


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
    assert rows["biased"]["removable"] == 0 and "constant of 8 channels" in rows["biased"]["reasons"][0]
    pruned, small = prune_and_shrink(model, 0.5, layers=["a", "b"])
    np.testing.assert_array_equal(pruned.get_layer("prune_a").mask_array(), pruned.get_layer("prune_b").mask_array())
    assert small.get_layer("a").filters == small.get_layer("b").filters == 4
    assert small.get_layer("reader").kernel.shape[2] == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@pytest.mark.parametrize("multiplier", [1, 2])
def test_grouped_conv_with_one_group_per_channel_is_depthwise(multiplier):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Conv2D(8 * multiplier, 3, padding="same", groups=8, name="grouped_dw")(x)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", groups=2, name="grouped")(x)  # two channels per group
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    assert rows["conv"]["removable"] == 8 and rows["reader"]["removable"] == 0
    assert "grouped convolution with several input channels per group" in rows["reader"]["reasons"][0]
    pruned, small = prune_and_shrink(model, 0.5, layers=["conv", "grouped_dw"])
    assert pruned.get_layer("prune_grouped_dw").spec.coupled
    dw = small.get_layer("grouped_dw")
    assert (dw.groups, dw.filters, dw.kernel.shape) == (4, 4 * multiplier, (3, 3, 1, 4 * multiplier))
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_nested_models_get_their_new_input_width():
    """A nested Sequential (ConvNeXt's downsampling blocks) whose input channels are removed
    is rebuilt on the new width, not on the width in its config."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="outer")(inputs)
    down = keras.Sequential([keras.Input((8, 8, 8)), keras.layers.LayerNormalization(name="ln"), keras.layers.Conv2D(6, 2, strides=2, name="down")], name="down_block")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(down(x))))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, layers=["outer"])
    block = small.get_layer("down_block")
    assert isinstance(block, keras.Sequential) and block.input_shape == (None, 8, 8, 4)
    assert block.get_layer("down").kernel.shape == (2, 2, 4, 6)
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


def test_nested_models_shrink_inside_and_stay_nested():
    inner_in = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="inner_a")(inner_in)
    h = keras.layers.BatchNormalization(name="inner_bn")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="inner_b")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 1, name="outer")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x)))
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, protect=None)
    assert isinstance(small.get_layer("backbone"), keras.Model)
    assert small.get_layer("backbone").get_layer("inner_a").filters == 4
    assert small.get_layer("backbone").get_layer("inner_b").filters == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


# ----------------------------------------------------------------------------- random networks


@given(
    model=random_network(),
    target=st.floats(0.1, 0.6),
    ranking=st.sampled_from(["local", "global"]),
    seed=st.integers(0, 1000),
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_networks_shrink_to_the_same_function(model, target, ranking, seed):
    randomize_bn(model, seed)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(target), ranking=ranking, protect=None)
    # Random masks: random criterion scores instead of weight norms.
    rng = np.random.default_rng(seed)
    for wrapper in tfprune.wrappers_of(pruned):
        wrapper.criterion = lambda weight, layer: rng.random(weight.shape)
    apply_target(pruned, target)
    small = tfprune.shrink(pruned)
    assert small.count_params() <= pruned.count_params()
    assert max_diff(small, pruned, inputs_for(model, seed=seed)) <= 1e-5


# ----------------------------------------------------------------------------- real architectures


def densenet_style():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    for block in range(3):
        h = keras.layers.BatchNormalization()(x)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(8, 1, name=f"bottleneck{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(4, 3, padding="same", name=f"growth{block}")(h)
        x = keras.layers.Concatenate()([x, h])
    x = keras.layers.Conv2D(8, 1, name="transition")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="densenet_style")


def efficientnet_style():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("swish")(x)
    for block in range(2):
        shortcut = x
        h = keras.layers.Conv2D(32, 1, use_bias=False, name=f"expand{block}")(x)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("swish")(h)
        h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("swish")(h)
        se = keras.layers.GlobalAveragePooling2D()(h)
        se = keras.layers.Reshape((1, 1, 32))(se)
        se = keras.layers.Conv2D(4, 1, activation="swish", name=f"se_reduce{block}")(se)
        se = keras.layers.Conv2D(32, 1, activation="sigmoid", name=f"se_expand{block}")(se)
        h = keras.layers.Multiply()([h, se])
        h = keras.layers.Conv2D(16, 1, use_bias=False, name=f"project{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        x = keras.layers.Add()([shortcut, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="efficientnet_style")


def convnext_style():
    """ConvNeXt blocks: depthwise 7x7, LayerNormalization over channels, an inverted Dense
    bottleneck and a residual Add, with LayerNormalization before each downsampling."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 4, strides=4, name="stem")(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_norm")(x)
    for stage, width in enumerate((16, 32)):
        if stage:
            x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"down_norm{stage}")(x)
            x = keras.layers.Conv2D(width, 2, strides=2, name=f"down{stage}")(x)
        shortcut = x
        h = keras.layers.DepthwiseConv2D(7, padding="same", name=f"dw{stage}")(x)
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"norm{stage}")(h)
        h = keras.layers.Dense(4 * width, activation="gelu", name=f"expand{stage}")(h)
        h = keras.layers.Dense(width, name=f"project{stage}")(h)
        x = keras.layers.Add()([shortcut, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="convnext_style")


def small_cnn():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="c3")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="plain_cnn")


def convnext_tiny():
    """keras.applications' ConvNeXt: LayerNormalization over channels, depthwise convolutions
    written as grouped Conv2D, LayerScale, `inputs + x` residuals, nested Sequential stems."""
    return keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None, classes=4)


ARCHITECTURES = {
    "plain_cnn": small_cnn,
    "mobilenetv2": lambda: keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4),
    "resnet50": lambda: keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=4),
    "densenet_style": densenet_style,
    "efficientnet_style": efficientnet_style,
    "convnext_style": convnext_style,
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architectures_prune_shrink_export_save_and_train(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[name]()
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.3)
    x = inputs_for(model)
    assert max_diff(small, pruned, x) <= 1e-5
    assert small.count_params() < 0.9 * pruned.count_params()
    assert tfprune.count_flops(small) < 0.85 * tfprune.count_flops(model)
    # exports and verifies in LiteRT
    path = tfprune.export_tflite(small, tmp_path / f"{name}.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    # saves and loads as .keras
    small.save(tmp_path / f"{name}.keras")
    loaded = keras.saving.load_model(tmp_path / f"{name}.keras")
    assert max_diff(loaded, small, x) <= 1e-6
    # trains further with a fresh compile: finite loss, and every shrunk layer learns
    loss = "sparse_categorical_crossentropy" if name != "plain_cnn" else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loaded.compile(keras.optimizers.Adam(1e-3), loss)
    before = {v.path: np.array(v) for v in loaded.trainable_variables}
    losses = loaded.fit(x, np.arange(len(x)) % 4, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    changed = {v.path for v in loaded.trainable_variables if not np.array_equal(before[v.path], np.array(v))}
    assert all(v.path in changed for v in loaded.trainable_variables if v.name == "kernel")


def test_convnext_tiny_shrinks_through_its_layer_normalization(tmp_path):
    """The real keras.applications ConvNeXt (28M parameters; .keras and training are covered
    by the ConvNeXt-style net above, to keep the suite quick)."""
    keras.utils.set_random_seed(0)
    model = convnext_tiny()
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.3)
    x = inputs_for(model)
    assert max_diff(small, pruned, x) <= 1e-5
    norms = [layer for layer in modelwalk.all_layers(small) if isinstance(layer, tfprune.ShrunkLayerNormalization)]
    assert len(norms) >= 10 and all(norm.removed_values for norm in norms)
    depthwise = [layer for layer in modelwalk.all_layers(small) if getattr(layer, "groups", 1) > 1]
    assert depthwise and all(layer.groups == layer.filters for layer in depthwise)
    assert tfprune.count_flops(small) < 0.8 * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "convnext_tiny.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_shrink_leaves_its_input_alone_and_rejects_bad_models(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    before = [w.copy() for w in pruned.get_weights()]
    tfprune.shrink(pruned)
    for a, b in zip(before, pruned.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="keras.Model"):
        tfprune.shrink(42)


@pytest.mark.parametrize("reduction,expected", [("sum", [0.0, 1.0]), ("mean", [0.0, 1.0]), ("max", [1.0, 0.0]), ("first", [1.0, 0.0])])
def test_group_reduction_combines_member_scores(reduction, expected):
    """Two convolutions meet at an Add. L1 scores per channel: a = (6, 4), b = (0, 5).
    sum (6, 9) and mean (3, 4.5) keep channel 1; max (6, 5) and first (a: 6, 4) keep channel 0."""
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, use_bias=False, name="a")(inputs)
    b = keras.layers.Conv2D(2, 1, use_bias=False, name="b")(inputs)
    x = keras.layers.Add()([a, b])
    x = keras.layers.Conv2D(2, 1, name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.get_layer("a").set_weights([np.array([[[[3.0, 2.0], [3.0, 2.0]]]], np.float32)])
    model.get_layer("b").set_weights([np.array([[[[0.0, 2.5], [0.0, 2.5]]]], np.float32)])
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["a", "b"], group_reduction=reduction)
    apply_target(pruned, 0.5)
    kept = pruned.get_layer("prune_a").mask_array()[0, 0, 0]
    np.testing.assert_array_equal(kept, pruned.get_layer("prune_b").mask_array()[0, 0, 0])
    assert kept.tolist() == expected
    small = tfprune.shrink(pruned)
    assert small.get_layer("a").filters == small.get_layer("b").filters == 1
    with pytest.raises(ValueError, match="group_reduction"):
        tfprune.prune(model, group_reduction="median")


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


def test_training_keeps_pruned_layer_norm_channels_at_zero_and_shrinks_exactly():
    """During fit the optimizer would revive a masked gamma or beta; the wrapper's constraint
    keeps them zero, so the stripped model still shrinks to the same function."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12,))
    x = keras.layers.Dense(16, activation="relu", name="d1")(inputs)
    x = keras.layers.LayerNormalization(name="norm")(x)
    x = keras.layers.Dense(16, activation="relu", name="d2")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, schedule=tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=4), protect=["head"])
    pruned.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x_train, y_train = rng.normal(size=(64, 12)).astype(np.float32), rng.integers(0, 3, 64)
    pruned.fit(x_train, y_train, batch_size=8, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
    kept = pruned.get_layer("prune_d1").mask_array().any(axis=0)
    assert kept.sum() == 8
    np.testing.assert_array_equal(pruned.get_layer("prune_norm").mask_array(), kept.astype(np.float32))
    gamma, beta = pruned.get_layer("prune_norm").layer.get_weights()
    assert not gamma[~kept].any() and not beta[~kept].any() and gamma[kept].all()
    stripped = tfprune.strip(pruned)
    small = tfprune.shrink(stripped)
    assert small.get_layer("norm").gamma.shape == (8,)
    assert max_diff(small, stripped, x_train) <= 1e-5
