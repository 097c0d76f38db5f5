"""PairedOptimizer: each variable moves as its own optimizer alone would move it, the
learning rate and step count are the model's optimizer's, and a method's model saves and
loads with both optimizers' state."""

import keras
import numpy as np
import pytest

from tfprune.core.paired_optimizer import PairedOptimizer


def variables():
    rng = np.random.default_rng(0)
    return [
        keras.Variable(rng.normal(size=(3, 2)).astype("float32"), name="kernel"),
        keras.Variable(rng.normal(size=(4,)).astype("float32"), name="scores"),
        keras.Variable(rng.normal(size=(2,)).astype("float32"), name="bias"),
    ]


def gradients(step):
    rng = np.random.default_rng(step)
    return [rng.normal(size=shape).astype("float32") for shape in ((3, 2), (4,), (2,))]


def test_each_variable_moves_as_its_own_optimizer_alone_would_move_it():
    paired_variables, alone = variables(), variables()
    paired = PairedOptimizer(
        keras.optimizers.SGD(0.1, momentum=0.9), keras.optimizers.Adam(0.01), [paired_variables[1]]
    )
    weights_alone = keras.optimizers.SGD(0.1, momentum=0.9)
    own_alone = keras.optimizers.Adam(0.01)
    for step in range(3):
        grads = gradients(step)
        paired.apply(grads, paired_variables)
        weights_alone.apply([grads[0], grads[2]], [alone[0], alone[2]])
        own_alone.apply([grads[1]], [alone[1]])
    for mine, reference in zip(paired_variables, alone):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(reference), atol=1e-7
        )
    # Both optimizers' state is the paired one's (what JAX's stateless step carries).
    assert len(paired.variables) == len(weights_alone.variables) + len(own_alone.variables)
    assert int(paired.iterations) == 3


def test_learning_rate_and_step_count_are_the_model_optimizers():
    paired = PairedOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.Adam(0.01), ["scores"])
    assert float(paired.learning_rate) == pytest.approx(0.1)
    paired.learning_rate = 0.05  # what ReduceLROnPlateau does
    assert float(paired.parts.weights.learning_rate) == pytest.approx(0.05)
    assert float(paired.parts.own.learning_rate) == pytest.approx(0.01)
    assert paired.iterations is paired.parts.weights.iterations


def test_built_without_its_own_variables_names_them():
    paired = PairedOptimizer("sgd", "adam", ["leap/scores_0"])
    with pytest.raises(ValueError, match=r"\['leap/scores_0'\] are not among the trainable"):
        paired.build(variables())


def test_config_round_trip_keeps_both_optimizers():
    paired = PairedOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.Adam(0.01), ["scores"])
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(paired))
    assert isinstance(copy, PairedOptimizer) and copy.own_paths == ("scores",)
    assert type(copy.parts.weights).__name__ == "SGD"
    assert float(copy.parts.own.learning_rate) == pytest.approx(0.01)
