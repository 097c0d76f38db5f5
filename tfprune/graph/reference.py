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

import contextlib
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


@contextlib.contextmanager
def sized(size: int):
    """Count unknown input dimensions at `size` inside a `with` block, then as before.

    A `PruningPlan` runs under its policy's size, so that a model reloaded in a process set
    to another size prunes toward the same FLOPs.

    Args:
        size: a positive integer.

    Yields:
        Nothing; `reference_size()` is `size` inside the block.

    Raises:
        TypeError: for a size that is not an integer.
        ValueError: for a size below 1.

    Example:

    >>> with sized(32):
    ...     reference_size()
    32
    >>> reference_size()
    128
    """
    previous = _settings["size"]
    _settings["size"] = checks.check_integer("reference size", size, minimum=1)
    try:
        yield
    finally:
        _settings["size"] = previous


def _static(shape) -> bool:
    return all(dim is not None for dim in tuple(shape)[1:])


def _holds_sizes(tensor) -> bool:
    """Integer tensors of at most a few entries carry sizes (a traced layer's `Dimension`s):
    their values, not only their shapes, decide the shapes after them."""
    return "int" in str(tensor.dtype) and len(tensor.shape) <= 1 and _static(tensor.shape)


def _entry(tensor, size):
    """`(shape, value)` known for `tensor` at `size`, or `None`; value `None` unless a size."""
    if _static(tensor.shape) and not _holds_sizes(tensor):
        return tuple(tensor.shape), None
    entry = _traced.get((id(tensor), size))
    if entry is not None and entry[0]() is tensor:
        return entry[1], entry[2]
    return None


def _known(tensor, size):
    entry = _entry(tensor, size)
    return None if entry is None else entry[0]


def _remember(tensor, shape, size, value=None):
    key = (id(tensor), size)
    # The entry goes with its tensor, so the cache holds only the graphs still alive.
    _traced[key] = (weakref.ref(tensor, lambda _: _traced.pop(key, None)), tuple(shape), value)


def _at_size(shape, size) -> tuple:
    """A symbolic shape with its unknown sizes (not the batch) at the reference size."""
    shape = tuple(shape)
    return shape[:1] + tuple(size if d is None else d for d in shape[1:])


def _spec(tensor, shape):
    return keras.KerasTensor(shape, dtype=tensor.dtype)


def _output_entries(call, size) -> list[tuple]:
    """`(shape, value)` of each of the call's outputs, its inputs taken as known at `size`."""
    entries = {id(t): _entry(t, size) for t in call.inputs}
    if not any(value is not None for _, value in entries.values()):
        values = {id(t): _spec(t, entries[id(t)][0]) for t in call.inputs}
        args, kwargs = keras_internals.fill_arguments(call.arguments, values)
        outputs = keras.tree.flatten(call.operation.compute_output_spec(*args, **kwargs))
        if all(_static(o.shape) and not _holds_sizes(o) for o in outputs):
            return [(tuple(o.shape), None) for o in outputs]
    # Some layers leave sizes they could infer unknown (EinsumDense's output_shape entries
    # of None), and sizes need values: run the call once on batch 1 instead (zeros, and
    # the sizes' values). Tensors without a batch axis (a traced layer's weights) keep
    # their own shapes.
    arrays = {
        id(t): np.zeros(tuple(1 if d is None else d for d in shape), dtype=t.dtype)
        if value is None
        else np.asarray(value, dtype=t.dtype)
        for t, (shape, value) in ((t, entries[id(t)]) for t in call.inputs)
    }
    args, kwargs = keras_internals.fill_arguments(call.arguments, arrays)
    try:
        outputs = keras.tree.flatten(call.operation(*args, **kwargs))
    except Exception:  # a size the model cannot run at (positions past its longest sequence)
        return [(_at_size(o.shape, size), None) for o in call.outputs]
    result = []
    for symbolic, output in zip(call.outputs, outputs):
        shape = tuple(output.shape)
        if symbolic.shape and symbolic.shape[0] is None:
            shape = (None, *shape[1:])
        value = keras.ops.convert_to_numpy(output) if _holds_sizes(symbolic) else None
        result.append((shape, value))
    return result


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
            _remember(current, _at_size(current.shape, size), size)
            pending.pop()
            continue
        missing = [t for t in call.inputs if _known(t, size) is None]
        if missing:
            pending.extend(missing)
            continue
        for symbolic, (shape, value) in zip(call.outputs, _output_entries(call, size)):
            _remember(symbolic, shape, size, value)
        pending.pop()
    return _known(tensor, size)
