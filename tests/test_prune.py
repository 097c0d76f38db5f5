import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import small_cnn, weights_of

import tfprune


def wrapped_names(model):
    return [w.layer.name for w in tfprune.wrappers_of(model)]


def test_default_protects_first_conv_and_classifier(cnn):
    pruned = tfprune.prune(cnn)
    assert wrapped_names(pruned) == ["conv2", "conv3"]
    assert all(isinstance(w, tfprune.PruneWrapper) for w in tfprune.wrappers_of(pruned))


def test_prune_returns_a_copy_and_leaves_the_user_model_alone(cnn, data):
    before = weights_of(cnn)
    layers_before = list(cnn.layers)
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(*data, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    assert cnn.layers == layers_before
    assert not tfprune.wrappers_of(cnn)
    for a, b in zip(before, weights_of(cnn)):
        np.testing.assert_array_equal(a, b)
    assert not any(layer in cnn.layers for layer in pruned.layers[1:])


def test_pruned_model_computes_the_same_function_before_any_mask(cnn, data):
    pruned = tfprune.prune(cnn)
    np.testing.assert_allclose(pruned(data[0]), cnn(data[0]), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"layers": ["conv1", "head"]}, ["conv1", "head"]),
        ({"layers": ["conv1", "conv3"]}, ["conv1", "conv3"]),
        ({"layers": keras.layers.Conv2D, "protect": None}, ["conv1", "conv2", "conv3"]),
        ({"layers": lambda layer: layer.name.endswith("3")}, ["conv3"]),
        ({"exclude": ["conv3"]}, ["conv2"]),
        ({"exclude": keras.layers.Conv2D, "protect": None}, ["head"]),
        ({"protect": None}, ["conv1", "conv2", "conv3", "head"]),
        ({"protect": ["conv2"]}, ["conv1", "conv3", "head"]),
    ],
)
def test_layer_selection(cnn, kwargs, expected):
    assert wrapped_names(tfprune.prune(cnn, granularity="unstructured", **kwargs)) == expected


def test_filter_pruning_skips_layers_whose_channels_are_the_models_outputs(cnn):
    pruned = tfprune.prune(cnn, protect=None)
    assert wrapped_names(pruned) == ["conv1", "conv2", "conv3"]  # not the head: its filters are the outputs
    followers = [layer for layer in pruned.layers if isinstance(layer, tfprune.ChannelMaskWrapper)]
    assert [f.layer.name for f in followers] == ["bn"]  # BN after conv2 follows its masks
    with pytest.raises(ValueError, match="'head' cannot be pruned: a model output"):
        tfprune.prune(cnn, layers=["conv2", "head"])


def test_sequential_model_is_supported(data):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.Conv2D(8, 3, name="c2"),
            keras.layers.Flatten(),
            keras.layers.Dense(16, name="fc"),
            keras.layers.Dense(4, name="out"),
        ]
    )
    pruned = tfprune.prune(model)
    assert isinstance(pruned, keras.Sequential)
    assert wrapped_names(pruned) == ["c2", "fc"]
    np.testing.assert_allclose(pruned(data[0]), model(data[0]), atol=1e-6)


def test_nested_models_are_pruned_inside(data):
    inner_in = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, name="inner_conv1")(inner_in)
    h = keras.layers.Conv2D(8, 3, name="inner_conv2")(h)
    backbone = keras.Model(inner_in, h, name="backbone")
    inputs = keras.Input((12, 12, 1))
    x = backbone(inputs)
    x = keras.layers.Conv2D(8, 3, name="outer_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="head")(x)
    model = keras.Model(inputs, outputs)
    pruned = tfprune.prune(model)
    assert wrapped_names(pruned) == ["inner_conv2", "outer_conv"]
    np.testing.assert_allclose(pruned(data[0]), model(data[0]), atol=1e-6)


def test_keras_applications_mobilenetv2_prunes_and_trains():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=3)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.3))
    names = wrapped_names(pruned)
    assert "Conv1" not in names and "predictions" not in names  # auto-protected
    assert any("depthwise" in n for n in names) and any("project" in n for n in names)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-5)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    pruned.fit(x, np.arange(4) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    summary = tfprune.summary(pruned).to_dict()
    assert 0.25 < 1 - summary["total"]["effective_flops"] / summary["total"]["flops"] < 0.35


def test_global_ranking_prunes_unevenly_to_the_overall_target(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5), ranking="global", protect=None)
    wrappers = tfprune.wrappers_of(pruned)
    # Scores are normalised per layer, so scaling a whole layer changes nothing; making 12
    # of conv2's 16 filters tiny relative to the rest must make global ranking take them.
    conv2 = pruned.get_layer("prune_conv2").layer
    scale = np.where(np.arange(16) < 12, 1e-3, 1.0).astype(np.float32)
    conv2.kernel.assign(conv2.kernel * scale)
    from tfprune.callbacks import model_sparsity
    from tfprune.ranking import apply_target

    apply_target(pruned, 0.5)
    per_layer = {w.layer.name: w.sparsity() for w in wrappers}
    assert model_sparsity(wrappers) == pytest.approx(0.5, abs=0.06)
    assert per_layer["conv2"] == 0.75
    assert per_layer["conv2"] > max(v for k, v in per_layer.items() if k != "conv2")


@pytest.mark.parametrize("ranking,tolerance", [("local", 0.05), ("global", 0.02)])
def test_flops_target_removes_that_fraction_of_model_flops_after_shrink(cnn, ranking, tolerance):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.4), target="flops", ranking=ranking)
    from tfprune.ranking import apply_target

    plan = apply_target(pruned, 0.4)
    removed = 1 - tfprune.count_flops(tfprune.shrink(pruned)) / tfprune.count_flops(cnn)
    assert removed == pytest.approx(0.4, abs=tolerance)
    assert plan.removed() == pytest.approx(removed, abs=1e-9)  # the plan counts as shrink builds


def test_every_supported_layer_type_can_be_wrapped():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    x = keras.layers.Conv2DTranspose(8, 3, padding="same", name="tconv")(x)
    x = keras.layers.Reshape((64, 8))(x)
    x = keras.layers.Conv1D(8, 3, padding="same", name="conv1d")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, name="fc")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    pruned = tfprune.prune(model, protect=None, exclude=["head"], schedule=tfprune.OneShot(0.5))
    assert wrapped_names(pruned) == ["conv", "dw", "sep", "tconv", "conv1d", "fc"]
    from tfprune.ranking import apply_target

    apply_target(pruned, 0.5)
    for wrapper in tfprune.wrappers_of(pruned):
        assert wrapper.sparsity() == pytest.approx(0.5)
        spec = wrapper.spec
        weight = wrapper.weight_array()
        per_filter = np.abs(spec.to_canonical(weight)).reshape(spec.filter_count(weight.shape), -1).max(axis=1)
        bias = wrapper.layer.bias.numpy()
        np.testing.assert_array_equal(bias[per_filter == 0], 0)  # bias follows the filter


# ----------------------------------------------------------------------------- bad input


def test_tf_keras_model_is_rejected():
    import tf_keras

    legacy = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(TypeError, match="tf_keras .*Keras 3"):
        tfprune.prune(legacy)


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="subclassed model.*functional"):
        tfprune.prune(net)


def test_unbuilt_model_is_rejected():
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        tfprune.prune(keras.Sequential([keras.layers.Dense(2)]))


def test_explicitly_requested_unprunable_layer_is_rejected(cnn):
    before = weights_of(cnn)
    with pytest.raises(ValueError, match="'bn' \\(BatchNormalization\\) cannot be pruned"):
        tfprune.prune(cnn, layers=["bn"])
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        tfprune.prune(cnn, layers=["conv9"])
    with pytest.raises(ValueError, match="exclude: .*'nope'"):
        tfprune.prune(cnn, exclude=["nope"])
    for a, b in zip(before, weights_of(cnn)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"schedule": tfprune.OneShot(0.99)}, ValueError, "impossible"),
        ({"schedule": tfprune.OneShot(0.95), "target": "flops"}, ValueError, "impossible"),
        ({"ranking": "sideways"}, ValueError, "ranking"),
        ({"target": "latency"}, ValueError, "target"),
        ({"round_to": 0}, ValueError, "round_to"),
        ({"round_to": {"conv2": 0}}, ValueError, "round_to"),
        ({"round_to": {"conv9": 8}}, ValueError, "not pruned layers"),
        ({"granularity": "2:4", "schedule": 0.3}, ValueError, "ends at sparsity 0.5"),
        ({"granularity": "2:4", "schedule": 0.5, "ranking": "global"}, ValueError, "ranking='local'"),
        ({"granularity": 7}, TypeError, "granularity"),
        ({"schedule": "cubic"}, TypeError, "schedule"),
        ({"protect": None, "exclude": lambda layer: True}, ValueError, "no layer to prune"),
    ],
)
def test_bad_arguments_raise_clear_errors(cnn, kwargs, error, message):
    with pytest.raises(error, match=message):
        tfprune.prune(cnn, **kwargs)


def test_granularity_that_a_layer_cannot_take_names_the_layer():
    model = small_cnn()
    with pytest.raises(ValueError, match="'conv2'.*8 input channels to be a multiple of 3"):
        tfprune.prune(model, granularity="block:1x3", schedule=0.5, layers=["conv2"])


def test_already_pruned_model_is_rejected(cnn):
    with pytest.raises(ValueError, match="already pruned"):
        tfprune.prune(tfprune.prune(cnn))


def test_round_to_per_layer(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5), round_to={"conv2": 8, "*": 4})
    assert {w.layer.name: w.round_to for w in tfprune.wrappers_of(pruned)} == {"conv2": 8, "conv3": 4}
    tfprune.apply_target(pruned, 0.5)
    kept = {w.layer.name: int(w.mask_array().reshape(-1, w.mask_array().shape[-1]).any(axis=0).sum()) for w in tfprune.wrappers_of(pruned)}
    assert kept["conv2"] % 8 == 0 and kept["conv3"] % 4 == 0


def _greedy_reference(score, family_of, cost, goal, n_families):
    """The global ranking's rule, one step at a time (what `ranking._greedy` vectorises)."""
    taken, closed, removed = np.zeros(score.size, bool), set(), 0.0
    for i in range(score.size):
        if family_of[i] in closed:
            continue
        if score[i] != -np.inf and removed + cost[i] - goal > goal - removed:
            closed.add(family_of[i])
            continue
        taken[i] = True
        removed += cost[i]
    return taken


@given(
    n=st.integers(1, 60),
    families=st.integers(1, 5),
    goal_share=st.floats(0.0, 1.2),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=200, deadline=None)
def test_vectorised_global_greedy_matches_the_step_by_step_rule(n, families, goal_share, seed):
    from tfprune.ranking import _greedy

    rng = np.random.default_rng(seed)
    score = np.sort(np.where(rng.random(n) < 0.2, -np.inf, rng.random(n)))
    family_of = rng.integers(0, families, n)
    cost = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0], n) * rng.choice([1.0, rng.random() + 0.5])
    goal = goal_share * cost.sum()
    expected = _greedy_reference(score, family_of, cost, goal, families)
    np.testing.assert_array_equal(_greedy(score, family_of, cost, goal, families), expected)
