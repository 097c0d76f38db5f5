"""Argument checks shared by every public function, with one wording for each kind of mistake.

A wrong type raises `TypeError`, a value out of range `ValueError`; both name the argument,
say what it must be and what it got.
"""

from __future__ import annotations

import numbers
import os
import pathlib

import keras
import numpy as np

from tfprune.core import keras_internals


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _interval(low, high, include_low, include_high) -> str:
    if high is None:
        return f"{'>=' if include_low else '>'} {low:g}"
    if low is None:
        return f"{'<=' if include_high else '<'} {high:g}"
    return f"in {'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"


def check_number(
    name: str, value, low=None, high=None, *, include_low=True, include_high=True, hint=""
) -> float:
    """`value` as a float, if it is a real number within the given bounds.

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        low: the lower bound, or `None` for none. Defaults to `None`.
        high: the upper bound, or `None` for none. Defaults to `None`.
        include_low: whether `low` itself is allowed. Defaults to `True`.
        include_high: whether `high` itself is allowed. Defaults to `True`.
        hint: a sentence appended to the range message (what to do instead). Defaults to "".

    Returns:
        `float(value)`.

    Raises:
        TypeError: for anything but a real number (booleans included).
        ValueError: for a number outside the bounds.

    Example:

    >>> check_number("eps", 0.1, low=0)
    0.1
    >>> check_number("rate", 1.5, 0, 1, include_low=False, include_high=False)
    Traceback (most recent call last):
    ...
    ValueError: rate must be in (0, 1), got 1.5.
    """
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    too_low = low is not None and (value < low or (value == low and not include_low))
    too_high = high is not None and (value > high or (value == high and not include_high))
    if too_low or too_high or np.isnan(value):
        message = (
            f"{name} must be {_interval(low, high, include_low, include_high)}, got {value!r}."
        )
        raise ValueError(f"{message} {hint}" if hint else message)
    return float(value)


def check_fraction(name: str, value, hint="") -> float:
    """`value` as a float in [0, 1): a share of something to remove, never all of it.

    Args:
        name: the argument's name.
        value: what the caller passed.
        hint: a sentence appended to the range message. Defaults to "".

    Returns:
        `float(value)`.

    Raises:
        TypeError: for anything but a real number.
        ValueError: for a number outside [0, 1).

    Example:

    >>> check_fraction("target", 0.5)
    0.5
    """
    return check_number(name, value, 0, 1, include_high=False, hint=hint)


def check_integer(name: str, value, minimum=None) -> int:
    """`value`, if it is an integer (not a boolean) of at least `minimum`.

    Args:
        name: the argument's name.
        value: what the caller passed.
        minimum: the smallest allowed value, or `None`. Defaults to `None`.

    Returns:
        `int(value)`.

    Raises:
        TypeError: for anything but an integer.
        ValueError: for an integer below `minimum`.

    Example:

    >>> check_integer("steps", 10, minimum=1)
    10
    """
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_choice(name: str, value, choices):
    """`value`, if it is one of `choices`.

    Args:
        name: the argument's name.
        value: what the caller passed.
        choices: the allowed values.

    Returns:
        `value`.

    Raises:
        ValueError: for anything else.

    Example:

    >>> check_choice("ranking", "global", ("local", "global"))
    'global'
    """
    if not any(value == choice and type(value) is type(choice) for choice in choices):
        listed = [repr(c) for c in choices]
        allowed = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} or {listed[-1]}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    return value


def check_path(path, argument: str = "path") -> pathlib.Path:
    """`path` as a `pathlib.Path`.

    Args:
        path: a `str` or `os.PathLike`.
        argument: the argument's name, for the message. Defaults to "path".

    Returns:
        The path.

    Raises:
        TypeError: for anything else.

    Example:

    >>> check_path("model.tflite").name
    'model.tflite'
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a str or os.PathLike, got {type(path).__name__}.")
    return pathlib.Path(path)


def check_labels(model, y) -> np.ndarray:
    """`y` as a 1-D array of integer class ids that fit `model`'s class scores.

    Args:
        model: a classifier with one `(batch, classes)` output.
        y: the labels.

    Returns:
        The labels as a NumPy array.

    Raises:
        ValueError: for labels that are not 1-D integers, or lie outside `[0, classes)`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> check_labels(model, [0, 2, 1]).shape
    (3,)
    """
    y = np.asarray(y)
    classes = model.outputs[0].shape[-1]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D array of integer class ids, got shape {y.shape} and dtype "
            f"{y.dtype}."
        )
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(
            f"labels must lie in [0, {classes}) for this model's {classes} outputs; got "
            f"{y.min()}..{y.max()}."
        )
    return y


def check_model(model, function: str) -> None:
    """Raise a clear error unless `model` is a built Keras 3 model with a graph of layers.

    Functional and Sequential models qualify, and so do subclasses that build a functional
    graph in their `__init__` (KerasHub's backbones and tasks).

    Args:
        model: what the user passed.
        function: the public function's name, for the message.

    Raises:
        TypeError: for tf_keras (Keras 2) models, subclassed models without a graph of
            layers, and non-models.
        ValueError: for a model that is not built yet.

    Example:

    >>> check_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), "prune")
    """
    module = type(model).__module__
    if module.startswith(("tf_keras", "tensorflow.python.keras", "keras.api._v2")) or (
        hasattr(model, "layers") and not isinstance(model, keras.Model) and "keras" in module
    ):
        raise TypeError(
            f"{function}: got a tf_keras (Keras 2) model, {type(model).__name__} from '{module}'. "
            "tfprune works on Keras 3 models: build the model with `import keras` (keras>=3) and "
            "without TF_USE_LEGACY_KERAS=1."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"{function}: expected a keras.Model, got {type(model).__name__}.")
    if not isinstance(model, keras.Sequential) and not keras_internals.is_functional(model):
        raise TypeError(
            f"{function}: '{model.name}' ({type(model).__name__}) is a subclassed model with no "
            "graph of layers: its call() is Python code that tfprune cannot see through. tfprune "
            "reads functional and Sequential models, including subclasses that build their graph "
            "with super().__init__(inputs=..., outputs=...) as KerasHub models do. Build it that "
            "way, with keras.Input(...) and layer calls, or as keras.Sequential([...])."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"{function}: model '{model.name}' is not built. Give it a keras.Input(shape=...) (for "
            "Sequential, as the first layer) so tfprune can trace shapes."
        )


def check_input_shapes(model, input_shapes, function: str) -> list[tuple]:
    """The shape each of `model`'s inputs takes, batch axis first (unknown there), with the
    sizes `input_shapes` fixes where the model leaves them unknown.

    Args:
        model: a built Keras model.
        input_shapes: `None` (the model's own shapes), one shape for a model with one input,
            a list of shapes in input order, or `{input name: shape}`; each shape without the
            batch axis, as `keras.Input(shape=...)` takes it (`None` leaves a size unknown).
        function: the public function's name, for the message.

    Returns:
        One shape tuple per model input, in order.

    Raises:
        TypeError: for `input_shapes` of the wrong type.
        ValueError: for an unknown input name, a shape of another rank, or a size that
            contradicts one the model fixes; the message names the input.

    Example:

    >>> tokens = keras.Input((None,), dtype="int32", name="token_ids")
    >>> model = keras.Model(tokens, keras.layers.Embedding(10, 4)(tokens))
    >>> check_input_shapes(model, {"token_ids": (128,)}, "export_tflite")
    [(None, 128)]
    """
    names = [tensor.name for tensor in model.inputs]
    given = shapes_by_name(names, input_shapes, function)
    return [_merged_shape(t, given.get(t.name), function) for t in model.inputs]


def shapes_by_name(names: list, input_shapes, function: str) -> dict:
    """`input_shapes` as `{input name: shape}` for inputs called `names`, in their order.

    Args:
        names: the inputs' names, in order.
        input_shapes: `None`, one shape for a single input, a list of shapes in order, or a
            dict by name.
        function: the public function's name, for the message.

    Returns:
        A dict, empty for `None`.

    Raises:
        TypeError: for `input_shapes` of the wrong type.
        ValueError: for unknown names or a count that does not match.

    Example:

    >>> shapes_by_name(["token_ids", "padding_mask"], [(8,), (8,)], "export_tflite")
    {'token_ids': (8,), 'padding_mask': (8,)}
    """
    if input_shapes is None:
        return {}
    if isinstance(input_shapes, dict):
        unknown = sorted(set(input_shapes) - set(names))
        if unknown:
            raise ValueError(
                f"{function}: input_shapes names {unknown}, which are not inputs of the model; "
                f"its inputs are {names}."
            )
        return dict(input_shapes)
    if not isinstance(input_shapes, (list, tuple)):
        raise TypeError(
            f"{function}: input_shapes must be a shape, a list of shapes or a dict by input "
            f"name, got {type(input_shapes).__name__}."
        )
    shapes = list(input_shapes)
    if len(names) == 1 and all(d is None or isinstance(d, int) for d in shapes):
        shapes = [tuple(shapes)]
    if len(shapes) != len(names):
        raise ValueError(
            f"{function}: input_shapes has {len(shapes)} shapes; the model has {len(names)} "
            f"inputs ({names})."
        )
    return dict(zip(names, shapes))


def _merged_shape(tensor, shape, function) -> tuple:
    own = tuple(tensor.shape)
    if shape is None:
        return own
    shape = tuple(shape)
    if len(shape) != len(own) - 1:
        raise ValueError(
            f"{function}: input '{tensor.name}' has shape {own[1:]} (batch left out), but "
            f"input_shapes gives it {shape}, of another rank."
        )
    for size, fixed in zip(shape, own[1:]):
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(
                f"{function}: input_shapes gives input '{tensor.name}' the size {size!r}; sizes "
                "are positive integers (or None)."
            )
        if fixed is not None and size is not None and size != fixed:
            raise ValueError(
                f"{function}: input '{tensor.name}' has shape {own[1:]}, which input_shapes "
                f"contradicts with {shape}."
            )
    return (own[0], *(fixed if size is None else size for size, fixed in zip(shape, own[1:])))
