"""PruneWrapper: every registered layer type wraps, and the bias follows its filter."""

import warnings

import keras
import numpy as np
import pytest
from helpers import wrapped_names

import tfprune


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
    from tfprune.masking.ranking import apply_target

    apply_target(pruned, 0.5)
    for wrapper in tfprune.wrappers_of(pruned):
        assert wrapper.sparsity() == pytest.approx(0.5)
        spec = wrapper.spec
        weight = wrapper.weight_array()
        per_filter = (
            np.abs(spec.to_canonical(weight))
            .reshape(spec.filter_count(weight.shape), -1)
            .max(axis=1)
        )
        bias = wrapper.layer.bias.numpy()
        np.testing.assert_array_equal(bias[per_filter == 0], 0)  # bias follows the filter


def test_the_schedule_state_is_read_and_written_by_name():
    from tfprune.masking.wrappers import SCHEDULE_STATE

    wrapper = tfprune.masking.PruneWrapper(keras.layers.Dense(4))
    wrapper.build((None, 3))
    assert wrapper.schedule_values() == dict.fromkeys(SCHEDULE_STATE, 0.0)
    wrapper.set_schedule_values({"steps_seen": 12.0})
    wrapper.set_schedule_values({"paced": 1.0, "reference": 0.5})
    assert wrapper.schedule_values() == {
        "paced": 1.0, "accepted_target": 0.0, "reference": 0.5, "steps_seen": 12.0
    }  # fmt: skip
    assert wrapper.steps_seen() == 12
    with pytest.raises(KeyError, match="steps"):
        wrapper.set_schedule_values({"steps": 3.0})


def test_the_wrapper_takes_one_policy_and_the_settings_of_0_1_0_with_a_warning():
    from tfprune.masking.policies import Policy

    policy = Policy.from_settings({"granularity": "unstructured", "schedule": 0.3})
    wrapper = tfprune.masking.PruneWrapper(keras.layers.Dense(4), policy=policy, min_filters=2)
    assert wrapper.policy is policy and wrapper.min_filters == 2
    with pytest.warns(DeprecationWarning, match="granularity=, schedule=.*policy="):
        old = tfprune.masking.PruneWrapper(
            keras.layers.Dense(4), granularity="unstructured", schedule=0.3
        )
    assert old.policy == policy
    # Its config holds the policy once, and reads back to an equal wrapper.
    config = wrapper.get_config()
    assert not set(config) & {"granularity", "criterion", "schedule", "ranking", "target"}
    assert tfprune.masking.PruneWrapper.from_config(config).policy == policy


def test_a_policy_whose_settings_do_not_go_together_fails_when_built():
    from tfprune.masking.policies import Policy

    with pytest.raises(ValueError, match="ranking"):
        Policy.from_settings({"ranking": "best"})
    with pytest.raises(ValueError, match="2:4.*ends at sparsity 0.5"):
        Policy.from_settings({"granularity": "2:4", "schedule": 0.3})
    with pytest.raises(TypeError, match="latency_table"):
        Policy.from_settings({"target": "latency"})


def test_wrapped_layers_see_training_and_keras_masks_as_unwrapped_ones_do():
    # The wrappers call their layer's `call` directly where its own __call__ would repeat
    # theirs; `training` and a Keras mask (padding) must still arrive.
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True, name="embed")(inputs)
    x = keras.layers.LSTM(8, dropout=0.5, return_sequences=True, name="lstm")(x)
    x = keras.layers.LSTM(8, name="last")(x)  # reads the mask the wrapped LSTM passes on
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*does not support masking")
        pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    assert wrapped_names(pruned) == ["embed", "lstm", "last"]

    def run(which, tokens, **kwargs):
        return keras.ops.convert_to_numpy(which(np.asarray(tokens), **kwargs))

    padded = np.array([[3, 4, 5, 0, 0], [7, 1, 2, 9, 0]], "int32")
    unpadded = padded[:, :3]
    np.testing.assert_allclose(run(pruned, padded), run(model, padded), atol=1e-6)
    np.testing.assert_allclose(run(pruned, padded[:1]), run(pruned, unpadded[:1]), atol=1e-6)
    assert np.abs(run(pruned, padded, training=True) - run(pruned, padded)).max() > 1e-3
    # Without a Keras mask the wrapped layers' own __call__ is skipped: `training` still
    # reaches BatchNormalization (batch statistics) and a layer's own use of it.
    conv = keras.layers.Conv2D(8, 3, name="conv")
    dense = _ShiftedWhenTraining(6, name="shifted")
    layers = [keras.Input((4, 4, 3)), conv, keras.layers.BatchNormalization()]
    layers += [keras.layers.Flatten(), dense, keras.layers.Dense(2)]
    plain = keras.Sequential(layers)
    pruned = tfprune.prune(plain, schedule=tfprune.OneShot(0.5))
    assert wrapped_names(pruned) == ["conv", "shifted"]
    images = np.random.default_rng(0).normal(size=(4, 4, 4, 3)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(
            run(pruned, images, training=training), run(plain, images, training=training), atol=1e-5
        )
    assert np.abs(run(pruned, images, training=True) - run(pruned, images)).max() > 1e-2


class _ShiftedWhenTraining(keras.layers.Dense):
    """A Dense layer whose call reads `training` (as a noise or dropout layer of a user's own)."""

    def call(self, inputs, training=None):
        return super().call(inputs) + (1.0 if training else 0.0)


@pytest.mark.parametrize("wrapper_policy", ["mixed_float16", "float32"])
def test_wrapped_layers_compute_in_their_own_mixed_precision(wrapper_policy):
    # Built under mixed precision; pruned under it (the wrappers share the layers' policy, and
    # skip their layers' own __call__) or after it was reset (they do not, and Keras casts).
    try:
        keras.config.set_dtype_policy("mixed_float16")
        conv = keras.layers.Conv2D(8, 3, name="conv")
        layers = [keras.Input((6, 6, 3)), conv, keras.layers.BatchNormalization()]
        layers += [keras.layers.Flatten(), keras.layers.Dense(2, name="head", dtype="float32")]
        model = keras.Sequential(layers)
        keras.config.set_dtype_policy(wrapper_policy)
        pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    finally:
        keras.config.set_dtype_policy("float32")
    (wrapper,) = tfprune.wrappers_of(pruned)
    assert wrapper.dtype_policy.name == wrapper_policy
    images = np.random.default_rng(0).normal(size=(4, 6, 6, 3)).astype("float32")
    assert keras.ops.convert_to_numpy(wrapper(images)).dtype == np.float16
    for training in (False, True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(pruned(images, training=training)),
            keras.ops.convert_to_numpy(model(images, training=training)),
        )
