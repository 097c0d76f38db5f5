"""Depthwise convolutions cut into kernel tiles compute what the whole kernel computes, and
export puts them where LiteRT's 7x7 depthwise kernels would run slowly."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.export.depthwise import export_form, split_layers
from tfprune.layers.split_depthwise import SplitDepthwiseConv2D, SplitGroupedConv2D, splittable


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 11),
    st.integers(1, 11),
    st.sampled_from(["same", "valid"]),
    st.integers(1, 2),
    st.booleans(),
    st.integers(1, 13),
    st.integers(1, 13),
    st.integers(0, 2**31 - 1),
)
def test_tiles_sum_to_the_whole_kernel(kh, kw, padding, multiplier, use_bias, h, w, seed):
    rng = np.random.default_rng(seed)
    channels = 3
    if padding == "valid":
        h, w = max(h, kh), max(w, kw)
    # Maps smaller than the kernel: some tiles read padding only and are left out.
    x = rng.standard_normal((2, h, w, channels)).astype(np.float32)
    arguments = dict(padding=padding, use_bias=use_bias, activation="relu")
    assert_same_function(
        keras.layers.DepthwiseConv2D((kh, kw), depth_multiplier=multiplier, **arguments),
        SplitDepthwiseConv2D((kh, kw), depth_multiplier=multiplier, **arguments),
        x,
        rng,
    )
    # ConvNeXt's form: Conv2D with one group per channel.
    assert_same_function(
        keras.layers.Conv2D(channels, (kh, kw), groups=channels, **arguments),
        SplitGroupedConv2D(channels, (kh, kw), groups=channels, **arguments),
        x,
        rng,
    )


def assert_same_function(whole, tiled, x, rng):
    """Both layers built on `x`, given the same random weights, compute the same."""
    whole.build(x.shape)
    tiled.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in whole.get_weights()]
    whole.set_weights(weights)
    tiled.set_weights(weights)
    np.testing.assert_allclose(tiled(x), whole(x), atol=1e-5)


def test_only_stride_one_depthwise_kernels_over_5x5_are_split():
    def built(layer, channels=4):
        layer.build((None, 16, 16, channels))
        return layer

    assert splittable(built(keras.layers.DepthwiseConv2D(7)))
    assert splittable(built(keras.layers.Conv2D(4, (1, 7), groups=4)))
    assert not splittable(built(keras.layers.DepthwiseConv2D(5)))
    assert not splittable(built(keras.layers.DepthwiseConv2D(7, strides=2)))
    assert not splittable(built(keras.layers.DepthwiseConv2D(7, dilation_rate=2)))
    assert not splittable(built(keras.layers.Conv2D(8, 7, groups=4)))  # 1 -> 2 channels a group
    assert not splittable(built(keras.layers.Conv2D(4, 7)))
    with pytest.raises(ValueError, match="strides=1"):
        SplitDepthwiseConv2D(7, strides=2)
    with pytest.raises(ValueError, match="groups=filters"):
        SplitGroupedConv2D(8, 7, groups=4)


def convnext_block(channels=8):
    """ConvNeXt's block as keras.applications writes it: a 7x7 grouped Conv2D, then
    LayerNormalization and the pointwise Dense layers, with a residual."""
    inputs = keras.Input((12, 12, channels))
    x = keras.layers.Conv2D(channels, 7, groups=channels, padding="same", name="dw")(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Dense(4 * channels, activation="gelu", name="pw1")(x)
    x = keras.layers.Dense(channels, name="pw2")(x)
    return keras.Model(inputs, keras.layers.Add()([inputs, x]))


def test_export_splits_the_7x7_kernel_and_leaves_the_model_alone(tmp_path):
    keras.utils.set_random_seed(0)
    model = convnext_block()
    x = np.random.default_rng(0).random((8, 12, 12, 8), dtype=np.float32)
    assert [layer.name for layer in split_layers(model)] == ["dw"]
    twin = export_form(model)
    assert type(twin.get_layer("dw")) is SplitGroupedConv2D
    np.testing.assert_allclose(twin(x), model(x), atol=1e-5)
    path = tfprune.export_tflite(model, tmp_path / "split.tflite")
    assert type(model.get_layer("dw")) is keras.layers.Conv2D  # the user's model is unchanged
    assert tfprune.verify_tflite(path, model, x) <= 1e-4
    operators = tfprune.inspect_tflite(path)["operators"]
    assert operators.count("DEPTHWISE_CONV_2D") == 4  # 5x5, 5x2, 2x5 and 2x2 tiles
    whole = tfprune.export_tflite(model, tmp_path / "whole.tflite", split_depthwise=False)
    assert tfprune.inspect_tflite(whole)["operators"].count("DEPTHWISE_CONV_2D") <= 1
    assert tfprune.verify_tflite(whole, model, x) <= 1e-4
    quantized = tfprune.export_tflite(
        model, tmp_path / "int8.tflite", quantize="int8", representative_data=x
    )
    scale = float(np.abs(model.predict(x, verbose=0)).max())
    assert tfprune.verify_tflite(quantized, model, x) <= 0.1 * scale


def test_a_pruned_convnext_block_shrinks_and_exports_split(tmp_path):
    keras.utils.set_random_seed(0)
    model = convnext_block(channels=16)
    x = np.random.default_rng(0).random((4, 12, 12, 16), dtype=np.float32)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=None)
    tfprune.apply_target(pruned, 0.5)
    masked = tfprune.strip(pruned)
    small = tfprune.shrink(masked)
    assert small.get_layer("pw1").units < 64
    np.testing.assert_allclose(small(x), masked(x), atol=1e-5)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_tiles_that_read_padding_only_are_left_out_and_int8_runs(tmp_path):
    # On a 2x2 map a 7x7 "same" kernel's taps 5-6 (either axis) read padding only: one tile
    # is left. Kept, its all-zero output calibrated to an empty int8 range XNNPACK refused.
    inputs = keras.Input((2, 2, 4))
    model = keras.Model(inputs, keras.layers.DepthwiseConv2D(7, padding="same")(inputs))
    x = np.random.default_rng(0).random((16, 2, 2, 4), dtype=np.float32)
    path = tfprune.export_tflite(model, tmp_path / "m.tflite")
    assert tfprune.inspect_tflite(path)["operators"].count("DEPTHWISE_CONV_2D") == 1
    assert tfprune.verify_tflite(path, model, x) <= 1e-4
    quantized = tfprune.export_tflite(
        model, tmp_path / "q.tflite", quantize="int8", representative_data=x
    )
    assert tfprune.verify_tflite(quantized, model, x) <= 0.1
