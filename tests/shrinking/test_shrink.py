"""tfprune.shrink: smaller models computing the same function, from hand-made nets to
keras.applications."""

import keras
import numpy as np
import pytest
from helpers import (
    build_network,
    convnext_style,
    densenet_style,
    efficientnet_style,
    inputs_for,
    max_diff,
    network_plans,
    prune_and_shrink,
    randomize_bn,
    randomly_pruned,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.core import modelwalk
from tfprune.masking.ranking import apply_target


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


def test_nested_models_get_their_new_input_width():
    """A nested Sequential (ConvNeXt's downsampling blocks) whose input channels are removed
    is rebuilt on the new width, not on the width in its config."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="outer")(inputs)
    down = keras.Sequential(
        [
            keras.Input((8, 8, 8)),
            keras.layers.LayerNormalization(name="ln"),
            keras.layers.Conv2D(6, 2, strides=2, name="down"),
        ],
        name="down_block",
    )
    model = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(down(x)))
    )
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
    model = keras.Model(
        inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    )
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.5, protect=None)
    assert isinstance(small.get_layer("backbone"), keras.Model)
    assert small.get_layer("backbone").get_layer("inner_a").filters == 4
    assert small.get_layer("backbone").get_layer("inner_b").filters == 4
    assert max_diff(small, pruned, inputs_for(model)) <= 1e-5


@given(
    plan=network_plans(),
    target=st.floats(0.1, 0.6),
    ranking=st.sampled_from(["local", "global"]),
    seed=st.integers(0, 1000),
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_networks_shrink_to_the_same_function(plan, target, ranking, seed):
    model = build_network(plan)
    randomize_bn(model, seed)
    pruned = randomly_pruned(model, target, seed, ranking)
    small = tfprune.shrink(pruned)
    assert small.count_params() <= pruned.count_params()
    assert max_diff(small, pruned, inputs_for(model, seed=seed)) <= 1e-5


def plain_cnn():
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


def resnet_style():
    """ResNet's bottleneck stages (1x1, 3x3, 1x1 with BN), a strided projection shortcut and
    an identity block: what ResNet50 is made of, at a size the suite can afford."""

    def bottleneck(x, width, stride, name):
        h = keras.layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{name}_a")(x)
        h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_b")(h)
        h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
        h = keras.layers.Conv2D(4 * width, 1, use_bias=False, name=f"{name}_c")(h)
        return keras.layers.BatchNormalization()(h)

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for stage, (width, stride) in enumerate(((8, 1), (16, 2))):
        shortcut = keras.layers.Conv2D(4 * width, 1, strides=stride, name=f"proj{stage}")(x)
        shortcut = keras.layers.BatchNormalization()(shortcut)
        x = keras.layers.ReLU()(
            keras.layers.Add()([shortcut, bottleneck(x, width, stride, f"s{stage}")])
        )
        x = keras.layers.ReLU()(keras.layers.Add()([x, bottleneck(x, width, 1, f"s{stage}_id")]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="resnet_style")


def convnext_tiny():
    """keras.applications' ConvNeXt: LayerNormalization over channels, depthwise convolutions
    written as grouped Conv2D, LayerScale, `inputs + x` residuals, nested Sequential stems."""
    return keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None, classes=4)


ARCHITECTURES = {
    "plain_cnn": plain_cnn,
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4
    ),
    "resnet50": lambda: keras.applications.ResNet50(
        input_shape=(32, 32, 3), weights=None, classes=4
    ),
    "resnet_style": resnet_style,
    "densenet_style": densenet_style,
    "efficientnet_style": efficientnet_style,
    "convnext_style": convnext_style,
}
# ResNet50 itself (25M parameters) takes a minute here: its bottlenecks and projection
# shortcuts are covered quickly by resnet_style, the real one by `make test-all`. MobileNetV2's
# inverted residuals are efficientnet_style's, and KerasHub's MobileNet runs in the fast suite.
SLOW = {"resnet50", "mobilenetv2"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ARCHITECTURES]
)
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
    # Heads without a softmax give logits; read as probabilities they clip to a constant
    # loss with no gradient.
    head = loaded.layers[-1]
    softmax = getattr(head, "activation", None) is keras.activations.softmax
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax)
    # Eagerly: tracing MobileNetV2's train step costs 20 s, one eager step 1 s; graph-mode
    # training of shrunk models is what fit_with_rebuilds' tests do.
    loaded.compile(keras.optimizers.Adam(1e-3), loss, run_eagerly=True)
    before = {v.path: np.array(v) for v in loaded.trainable_variables}
    losses = loaded.fit(x, np.arange(len(x)) % 4, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    changed = {
        v.path
        for v in loaded.trainable_variables
        if not np.array_equal(before[v.path], np.array(v))
    }
    assert all(v.path in changed for v in loaded.trainable_variables if v.name == "kernel")


@pytest.mark.slow  # 28M parameters; ConvNeXt's rules are covered quickly by convnext_style
def test_convnext_tiny_shrinks_through_its_layer_normalization(tmp_path):
    """The real keras.applications ConvNeXt (28M parameters; .keras and training are covered
    by the ConvNeXt-style net above, to keep the suite quick)."""
    keras.utils.set_random_seed(0)
    model = convnext_tiny()
    randomize_bn(model)
    pruned, small = prune_and_shrink(model, 0.3)
    x = inputs_for(model)
    assert max_diff(small, pruned, x) <= 1e-5
    norms = [
        layer
        for layer in modelwalk.all_layers(small)
        if isinstance(layer, tfprune.layers.ShrunkLayerNormalization)
    ]
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
