"""tfprune.prune: a copy of any Keras 3 model with masks, and clear errors for bad input."""

import keras
import numpy as np
import pytest
from helpers import small_cnn, weights_of, wrapped_names

import tfprune
from keras_io_layers import DepthToSpace, espcn


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
    assert wrapped_names(pruned) == ["c1", "c2", "fc"]
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
    assert wrapped_names(pruned) == ["inner_conv1", "inner_conv2", "outer_conv"]
    np.testing.assert_allclose(pruned(data[0]), model(data[0]), atol=1e-6)


# tests/shrinking/test_shrink.py prunes, trains, shrinks and exports MobileNetV2 in make test.
@pytest.mark.slow
def test_keras_applications_mobilenetv2_prunes_and_trains():
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=3
    )
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.3))
    names = wrapped_names(pruned)
    assert "predictions" not in names  # auto-protected
    # The first convolution is guarded: it keeps at least half its filters.
    (first,) = [w for w in tfprune.wrappers_of(pruned) if w.layer.name == "Conv1"]
    assert first.min_filters == first.layer.filters // 2
    assert any("depthwise" in n for n in names) and any("project" in n for n in names)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-5)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    pruned.fit(x, np.arange(4) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    summary = tfprune.summary(pruned).to_dict()
    assert 0.25 < 1 - summary["total"]["effective_flops"] / summary["total"]["flops"] < 0.35


def test_tf_keras_model_is_rejected():
    import tf_keras

    legacy = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    with pytest.raises(TypeError, match="tf_keras .*Keras 3"):
        tfprune.prune(legacy)


def test_truly_subclassed_model_is_rejected_saying_what_is_missing():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="'net'.*no graph of layers.*call\\(\\) is Python code"):
        tfprune.prune(net)


def test_unbuilt_model_is_rejected():
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        tfprune.prune(keras.Sequential([keras.layers.Dense(2)]))


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"schedule": tfprune.OneShot(0.99)}, ValueError, "impossible"),
        ({"schedule": tfprune.OneShot(0.97), "target": "flops"}, ValueError, "impossible"),
        ({"ranking": "sideways"}, ValueError, "ranking"),
        ({"target": "energy"}, ValueError, "target"),
        ({"target": "latency"}, TypeError, "latency_table"),
        ({"round_to": 0}, ValueError, "round_to"),
        ({"round_to": {"conv2": 0}}, ValueError, "round_to"),
        ({"round_to": {"conv9": 8}}, ValueError, "not pruned layers"),
        ({"granularity": "2:4", "schedule": 0.3}, ValueError, "ends at sparsity 0.5"),
        (
            {"granularity": "2:4", "schedule": 0.5, "ranking": "global"},
            ValueError,
            "ranking='local'",
        ),
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


def test_no_layer_to_prune_says_what_pins_or_protects_each_layer():
    inputs = keras.Input((20, 8))
    x = keras.layers.Conv1D(16, 3, name="conv")(inputs)
    x = keras.layers.Activation("softmax", name="attend")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    with pytest.raises(ValueError, match="'conv' \\(Activation 'attend' is a barrier"):
        tfprune.prune(model, protect=None)
    with pytest.raises(ValueError, match="'head' \\(excluded or protected\\)"):
        tfprune.prune(model)  # the first convolution is a candidate, pinned as above
    with pytest.raises(ValueError, match="'conv' \\(excluded or protected\\)"):
        tfprune.prune(model, protect=["conv"])


def test_custom_layers_without_kwargs_are_copied_and_the_pruned_model_saves(tmp_path):
    # keras.io's ESPCN: DepthToSpace's __init__ takes no **kwargs, which Keras' own
    # from_config cannot rebuild; the copy inside prune (and strip, shrink) can.
    keras.utils.set_random_seed(0)
    model = espcn(size=8)
    pruned = tfprune.prune(model, schedule=0.5)
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-6)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path, custom_objects={"DepthToSpace": DepthToSpace})
    np.testing.assert_allclose(loaded(x), pruned(x), atol=1e-6)
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    np.testing.assert_allclose(small(x), pruned(x), atol=1e-5)
