"""Running a user's model for a check without changing it."""

from __future__ import annotations

import contextlib

import keras


@contextlib.contextmanager
def state_kept(model):
    """Inside the block, `model` may be called; afterwards its state is as it was.

    A forward pass can move state even in inference mode: a BatchNormalization node built
    with `training=True`, a random augmentation layer's seed, a stateful metric. Every
    non-trainable variable is written back on leaving the block (trainable ones only move
    under an optimizer).

    Args:
        model: a Keras model or layer.

    Yields:
        Nothing.

    Example:

    >>> inputs = keras.Input((3,))
    >>> normed = keras.layers.BatchNormalization()(inputs, training=True)
    >>> model = keras.Model(inputs, normed)
    >>> with state_kept(model):
    ...     _ = model(np.random.rand(8, 3) + 5.0)
    >>> keras.ops.convert_to_numpy(model.layers[-1].moving_mean).tolist()
    [0.0, 0.0, 0.0]
    """
    variables = list(model.non_trainable_variables)
    saved = [keras.ops.convert_to_numpy(v) for v in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def inference_outputs(model, inputs) -> list:
    """The model's outputs on `inputs` in inference mode, as numpy arrays; `model` is left
    exactly as it was (see `state_kept`).

    Args:
        model: a Keras model.
        inputs: what the model takes: an array, a list of arrays, or a dict by input name.

    Returns:
        The outputs, flattened, as numpy arrays.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5)])
    >>> inference_outputs(model, np.ones((1, 4)))[0].tolist()  # no dropout in inference
    [[1.0, 1.0, 1.0, 1.0]]
    """
    with state_kept(model):
        outputs = model(inputs, training=False)
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]
