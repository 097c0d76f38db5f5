"""Every piece of private Keras API that tfprune relies on, one small accessor each.

Keras 3 exposes a functional model's layer graph only through private attributes (its
nodes, each tensor's history, a Sequential model's inner functional model), and a few
layer types tfprune must recognise (Keras ops such as `x + y`, ConvNeXt's `LayerScale`)
live under `keras.src`. Nothing else in tfprune touches them: a Keras release that moves
one breaks the accessor here and its test in `tests/core/test_keras_internals.py`, and
nowhere else. Tested with Keras 3.15; `pyproject.toml` caps Keras below the next minor
release until it has been tested (README, "Testing a newer Keras").
"""

from __future__ import annotations

import contextlib
import dataclasses

import keras
from keras.src.models.functional import Functional
from keras.src.ops import nn as nn_ops
from keras.src.ops import numpy as numpy_ops
from keras.src.saving.serialization_lib import SafeModeScope


def is_functional(model, subclasses: bool = True) -> bool:
    """Whether `model` holds a functional graph of layers (a `Functional` instance).

    Models built with `keras.Model(inputs, outputs)` are; so are subclasses that build one
    in their `__init__` (KerasHub's backbones and tasks). Sequential models and truly
    subclassed models are not.

    Args:
        model: any object.
        subclasses: whether subclasses of `Functional` count. Defaults to `True`.

    Returns:
        True for a functional model.
    """
    return isinstance(model, Functional) if subclasses else type(model) is Functional


def graph_of(model):
    """The functional graph behind `model`: itself, or a built Sequential model's inner one.

    Args:
        model: a built functional or Sequential model.

    Returns:
        A functional model with the same layers.
    """
    return model._functional if isinstance(model, keras.Sequential) else model


@dataclasses.dataclass
class NodeCall:
    """One call of a layer or Keras op in a functional graph.

    Attributes:
        operation: the layer, nested model or op (`keras.Operation`) called.
        inputs: the symbolic input tensors of this call, in order.
        outputs: its symbolic output tensors.
        arguments: the call's arguments, tensors and constants alike (for
            `array_arguments` and `fill_arguments`).
    """

    operation: object
    inputs: list
    outputs: list
    arguments: object


def node_calls(functional) -> list[NodeCall]:
    """The calls of a functional graph in topological order, model inputs left out.

    Args:
        functional: a functional model (see `graph_of`).

    Returns:
        A list of `NodeCall`s; a nested model appears as one call.
    """
    calls = []
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if node.is_input or node.operation is None:
                continue
            calls.append(
                NodeCall(
                    node.operation, list(node.input_tensors), list(node.outputs), node.arguments
                )
            )
    return calls


def calls_of(layer) -> list[tuple[list, list]]:
    """Every call of `layer` recorded in the graphs it was used in.

    Args:
        layer: a layer or model.

    Returns:
        `(input tensors, output tensors)` per call, in the order they were made.
    """
    return [
        (list(node.input_tensors), list(node.output_tensors))
        for node in getattr(layer, "_inbound_nodes", [])
    ]


def producer_of(tensor) -> tuple[object, int]:
    """Which call produced a symbolic tensor.

    Args:
        tensor: a `keras.KerasTensor` of a functional graph.

    Returns:
        `(operation, call index)`; `calls_of(operation)[call index]` is that call.
    """
    operation, node_index, _ = tensor._keras_history
    return operation, node_index


def array_arguments(arguments) -> list:
    """The array constants a call received besides its tensors (`x + np.ones(8)`).

    Args:
        arguments: `NodeCall.arguments`.

    Returns:
        Every argument that has a shape and is not a symbolic tensor.
    """
    flat = keras.tree.flatten((arguments.args, arguments.kwargs))
    return [a for a in flat if not isinstance(a, keras.KerasTensor) and hasattr(a, "shape")]


def fill_arguments(arguments, values: dict) -> tuple[list, dict]:
    """A call's arguments with its symbolic tensors replaced by values.

    Args:
        arguments: `NodeCall.arguments`.
        values: `{id(symbolic tensor): value}`.

    Returns:
        `(args, kwargs)` to call the operation with.
    """
    return arguments.fill_in(values)


@contextlib.contextmanager
def unsafe_deserialization():
    """Let `from_config` rebuild Python lambdas (Keras' safe mode off) inside the block.

    Used when cloning the user's own layers from memory, never when loading files.
    """
    with SafeModeScope(False):
        yield


def attention_projections(layer) -> dict:
    """The four projections of a `MultiHeadAttention` layer.

    Args:
        layer: a built `keras.layers.MultiHeadAttention`.

    Returns:
        `{"query", "key", "value", "output"}` -> their `EinsumDense` layers. The query, key
        and value kernels are `(model dim, heads, head dim)`, the output kernel
        `(heads, head dim, model dim)`.
    """
    return {name: getattr(layer, f"_{name}_dense") for name in ("query", "key", "value", "output")}


def loss_tracker(model):
    """The metric behind `logs["loss"]` that a custom `train_step` must update.

    Args:
        model: a compiled `keras.Model`.

    Returns:
        Its `keras.metrics.Mean` loss tracker.
    """
    return model._loss_tracker


def numpy_op(name: str) -> type:
    """The class of a Keras numpy op as it appears in a graph (`"Add"` for `x + y`).

    Args:
        name: the class name in `keras.ops.numpy`'s implementation.

    Returns:
        The `keras.Operation` subclass.
    """
    return getattr(numpy_ops, name)


def nn_op(name: str) -> type:
    """The class of a Keras nn op as it appears in a graph (`"Relu"` for `keras.ops.relu`).

    Args:
        name: the class name in `keras.ops.nn`'s implementation.

    Returns:
        The `keras.Operation` subclass.
    """
    return getattr(nn_ops, name)


def convnext_layer_scale() -> type | None:
    """The `LayerScale` layer of `keras.applications`' ConvNeXt, or None if Keras has none.

    Returns:
        The layer class, or `None`.
    """
    try:
        from keras.src.applications.convnext import LayerScale
    except ImportError:
        return None
    return LayerScale
