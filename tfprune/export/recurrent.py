"""How recurrent layers (LSTM, GRU, SimpleRNN, and Bidirectional or TimeDistributed around
them) go to LiteRT.

TensorFlow 2.21's converter turns a Keras recurrent layer into a WHILE loop, and it can do so
only when the tensors of one step have a static shape: recurrent models are traced at batch 1.
A loop runs outside XNNPACK; the same layer unrolled (one FULLY_CONNECTED chain per step) runs
about 5x faster in LiteRT on a 20-step model (BENCHMARKS.md), and full-integer quantization
works only on the unrolled form: calibrating the loop crashes the converter. So the exported
file unrolls every recurrent layer whose sequence length is fixed, up to `MAX_UNROLLED_STEPS`
steps for float files; the Keras model itself is never changed.
"""

from __future__ import annotations

import keras

from tfprune.core import keras_internals
from tfprune.core.modelwalk import all_layers, copy_weights

# Longer sequences stay loops in float files: unrolling grows the file and the conversion
# time by a graph copy per step.
MAX_UNROLLED_STEPS = 100


def is_recurrent(layer) -> bool:
    """Whether a layer is, or wraps (Bidirectional, TimeDistributed), a recurrent layer.

    Args:
        layer: a Keras layer.

    Returns:
        True for `keras.layers.RNN` and its subclasses, also inside wrappers.

    Example:

    >>> is_recurrent(keras.layers.Bidirectional(keras.layers.GRU(4)))
    True
    >>> is_recurrent(keras.layers.Dense(4))
    False
    """
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    # Not a Wrapper in Keras 3: its directions are its attributes.
    return isinstance(getattr(layer, "forward_layer", layer), keras.layers.RNN)


def recurrent_layers(model) -> list:
    """The recurrent layers of `model` (see `is_recurrent`), nested models included.

    Args:
        model: a Keras model.

    Returns:
        A list of layers, in layer order.

    Example:

    >>> inputs = keras.Input((5, 3))
    >>> model = keras.Model(inputs, keras.layers.LSTM(2, name="lstm")(inputs))
    >>> [layer.name for layer in recurrent_layers(model)]
    ['lstm']
    """
    return [layer for layer in all_layers(model) if is_recurrent(layer)]


def _steps(layer) -> int | None:
    """The sequence length a layer is called on (None if unknown, or different per call)."""
    lengths = {
        inputs[0].shape[1] if len(inputs[0].shape) > 1 else None
        for inputs, _ in keras_internals.calls_of(layer)
    }
    return lengths.pop() if len(lengths) == 1 else None


def _loop_flags(config) -> list:
    """The `unroll` entries of a (nested) layer config."""
    if isinstance(config, dict):
        return [v for k, v in config.items() if k == "unroll"] + [
            flag for value in config.values() for flag in _loop_flags(value)
        ]
    if isinstance(config, list):
        return [flag for value in config for flag in _loop_flags(value)]
    return []


def has_loops(model) -> bool:
    """Whether a recurrent layer of `model` runs as a loop (is not unrolled).

    Args:
        model: a Keras model.

    Returns:
        True if some recurrent layer is not unrolled.

    Example:

    >>> inputs = keras.Input((5, 3))
    >>> model = keras.Model(inputs, keras.layers.GRU(2)(inputs))
    >>> has_loops(model), has_loops(export_form(model))
    (True, False)
    """
    return any(not all(_loop_flags(layer.get_config())) for layer in recurrent_layers(model))


def _unrolled_config(config):
    """A layer config with `unroll` set wherever a (nested) recurrent config has the key."""
    if isinstance(config, dict):
        return {
            key: True if key == "unroll" else _unrolled_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_unrolled_config(value) for value in config]
    return config


def export_form(model, quantize=None):
    """The model to convert: `model` itself, or a copy with its recurrent layers unrolled.

    Args:
        model: a plain (stripped) Keras model.
        quantize: `None` or `"int8"`, as in `tfprune.export_tflite`. Defaults to `None`.

    Returns:
        `model` when nothing is unrolled, else a clone computing the same function.

    Raises:
        ValueError: for `"int8"` with a recurrent layer whose sequence length is not fixed,
            naming it.

    Example:

    >>> inputs = keras.Input((5, 3))
    >>> model = keras.Model(inputs, keras.layers.GRU(2, name="gru")(inputs))
    >>> export_form(model).get_layer("gru").unroll
    True
    """
    unroll = set()
    for layer in recurrent_layers(model):
        steps = _steps(layer)
        if steps is None and quantize == "int8":
            raise ValueError(
                f"export_tflite: int8 quantization needs recurrent layer '{layer.name}' unrolled, "
                "and that needs a fixed sequence length (it is called on length None). Build "
                "the model on keras.Input((steps, features)), or export it as float."
            )
        if steps is not None and (quantize == "int8" or steps <= MAX_UNROLLED_STEPS):
            unroll.add(id(layer))
    if not unroll:
        return model

    def clone(layer):
        config = layer.get_config()
        if id(layer) in unroll:
            config = _unrolled_config(config)
        return type(layer).from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy_weights(model, twin)
    return twin
