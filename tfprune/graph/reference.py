"""Concrete shapes for graphs with unknown dimensions, at a reference size.

A token model's inputs are `(batch, None)` and a KerasHub vision backbone's are
`(batch, None, None, 3)`: the graph knows every channel count but no length or spatial size,
so FLOPs cannot be counted from it. tfprune then counts them at a reference size: every
unknown non-batch dimension of a model input is taken as `reference_size()` (128 unless
`set_reference_size` says otherwise), and the shapes of the layers after it follow from
Keras' own shape inference (strides, pooling and reshapes included). A model built with
fixed sizes is counted at those sizes; the reference never changes a known dimension.
Layers inside a nested model are counted at the nested model's own inputs taken at the
reference size.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np

from tfprune.core import checks, keras_internals

_settings = {"size": 128}
# (id(tensor), size) -> (weak reference to the tensor, shape); an entry is dropped when its
# tensor is collected, and the weak reference makes a reused id a miss, not a wrong answer.
_traced: dict = {}


def reference_size() -> int:
    """The size unknown input dimensions are counted at.

    Returns:
        The reference size (128 by default).

    Example:

    >>> reference_size()
    128
    """
    return _settings["size"]


def set_reference_size(size: int) -> None:
    """Set the size at which unknown input dimensions (sequence length, image side) count.

    FLOPs targets, global ranking by FLOPs and `summary` use it for models whose inputs have
    `None` dimensions; attention's cost grows with the square of the length, so set it to the
    length the model will run at.

    Args:
        size: a positive integer, e.g. the sequence length or image side used in production.

    Raises:
        TypeError: for a size that is not an integer.
        ValueError: for a size below 1.

    Example:

    >>> set_reference_size(64)
    >>> reference_size()
    64
    >>> set_reference_size(128)
    """
    _settings["size"] = checks.check_integer("set_reference_size: size", size, minimum=1)


def _static(shape) -> bool:
    return all(dim is not None for dim in tuple(shape)[1:])


def _known(tensor, size):
    if _static(tensor.shape):
        return tuple(tensor.shape)
    entry = _traced.get((id(tensor), size))
    if entry is not None and entry[0]() is tensor:
        return entry[1]
    return None


def _remember(tensor, shape, size):
    key = (id(tensor), size)
    # The entry goes with its tensor, so the cache holds only the graphs still alive.
    _traced[key] = (weakref.ref(tensor, lambda _: _traced.pop(key, None)), tuple(shape))


def _spec(tensor, shape):
    return keras.KerasTensor(shape, dtype=tensor.dtype)


def _output_shapes(call, input_shapes) -> list[tuple]:
    """The call's output shapes for inputs of `input_shapes` (`{id(tensor): shape}`)."""
    values = {id(t): _spec(t, input_shapes[id(t)]) for t in call.inputs}
    args, kwargs = keras_internals.fill_arguments(call.arguments, values)
    shapes = [
        tuple(o.shape)
        for o in keras.tree.flatten(call.operation.compute_output_spec(*args, **kwargs))
    ]
    if all(_static(shape) for shape in shapes):
        return shapes
    # Some layers leave sizes they could infer unknown (EinsumDense's output_shape entries
    # of None): run the layer once on zeros of batch 1 instead.
    zeros = {id(t): np.zeros((1, *input_shapes[id(t)][1:]), dtype=t.dtype) for t in call.inputs}
    args, kwargs = keras_internals.fill_arguments(call.arguments, zeros)
    outputs = keras.tree.flatten(call.operation(*args, **kwargs))
    return [(None, *tuple(o.shape)[1:]) for o in outputs]


def concrete_shape(tensor) -> tuple:
    """The shape of a symbolic tensor with unknown dimensions taken at the reference size.

    Args:
        tensor: a `keras.KerasTensor` of a functional graph.

    Returns:
        Its shape; only the batch dimension may be `None`.

    Example:

    >>> inputs = keras.Input((None, None, 3))
    >>> x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    >>> concrete_shape(x)
    (None, 64, 64, 4)
    """
    size = reference_size()
    # Iterative, not recursive: graphs of a few hundred layers would exhaust the stack.
    pending = [tensor]
    while pending:
        current = pending[-1]
        if _known(current, size) is not None:
            pending.pop()
            continue
        call = keras_internals.producer_call(current)
        if call.operation is None:
            shape = tuple(current.shape)
            _remember(current, shape[:1] + tuple(size if d is None else d for d in shape[1:]), size)
            pending.pop()
            continue
        missing = [t for t in call.inputs if _known(t, size) is None]
        if missing:
            pending.extend(missing)
            continue
        shapes = _output_shapes(call, {id(t): _known(t, size) for t in call.inputs})
        for symbolic, shape in zip(call.outputs, shapes):
            _remember(symbolic, shape, size)
        pending.pop()
    return _known(tensor, size)
