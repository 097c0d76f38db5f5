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
import functools
import re

import keras
from keras.src.backend import get_keras_mask
from keras.src.models.functional import Functional
from keras.src.ops import nn as nn_ops
from keras.src.ops import numpy as numpy_ops
from keras.src.saving.serialization_lib import SafeModeScope
from keras.src.utils.python_utils import is_default


def is_functional(model) -> bool:
    """Whether `model` holds a functional graph of layers (a `Functional` instance).

    Models built with `keras.Model(inputs, outputs)` are; so are subclasses that build one
    in their `__init__` (KerasHub's backbones and tasks). Sequential models and truly
    subclassed models are not.

    Args:
        model: any object.

    Returns:
        True for a functional model.

    Example:

    >>> inputs = keras.Input((4,))
    >>> is_functional(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    True
    """
    return isinstance(model, Functional)


def graph_of(model):
    """The functional graph behind `model`: itself, or a built Sequential model's inner one.

    Args:
        model: a built functional or Sequential model.

    Returns:
        A functional model with the same layers.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> is_functional(graph_of(model)), graph_of(model).layers[-1].name
    (True, 'fc')
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

    Example:

    >>> inputs = keras.Input((4,))
    >>> (call,) = node_calls(keras.Model(inputs, keras.layers.Dense(2, name="fc")(inputs)))
    >>> call.operation.name, tuple(call.outputs[0].shape)
    ('fc', (None, 2))
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

    Example:

    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(3, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    >>> [call.operation.name for call in node_calls(model)]
    ['hidden', 'out']
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

    Example:

    >>> shared = keras.layers.Dense(2)
    >>> a, b = keras.Input((4,)), keras.Input((4,))
    >>> _ = keras.Model([a, b], [shared(a), shared(b)])
    >>> len(calls_of(shared))
    2
    """
    return [
        (list(node.input_tensors), list(node.output_tensors))
        for node in getattr(layer, "_inbound_nodes", [])
    ]


def operand_calls(layer) -> list[list]:
    """Every call of `layer`, as the tensors it computes on: its positional arguments, then
    its keyword arguments, leaving out masks (keywords naming a mask: `attention_mask`,
    `padding_mask`, ...), which select entries and cost no multiply-adds.

    Args:
        layer: a layer.

    Returns:
        One list of symbolic tensors per call, in call order.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x, mask = keras.Input((5, 8)), keras.Input((1, 5))
    >>> _ = keras.Model([x, mask], attention(x, x, attention_mask=mask))
    >>> [tuple(t.shape) for t in operand_calls(attention)[0]]
    [(None, 5, 8), (None, 5, 8)]
    """
    calls = []
    for node in getattr(layer, "_inbound_nodes", []):
        arguments = node.arguments
        kept = [*arguments.args] + [
            value for key, value in arguments.kwargs.items() if "mask" not in key
        ]
        calls.append([t for t in keras.tree.flatten(kept) if isinstance(t, keras.KerasTensor)])
    return calls


def producer_of(tensor) -> tuple[object, int]:
    """Which call produced a symbolic tensor.

    Args:
        tensor: a `keras.KerasTensor` of a functional graph.

    Returns:
        `(operation, call index)`; `calls_of(operation)[call index]` is that call.

    Example:

    >>> inputs = keras.Input((4,))
    >>> dense = keras.layers.Dense(2)
    >>> producer_of(dense(inputs)) == (dense, 0)
    True
    """
    operation, node_index, _ = tensor._keras_history
    return operation, node_index


def producer_call(tensor) -> NodeCall:
    """The call that produced a symbolic tensor, with its arguments.

    Args:
        tensor: a `keras.KerasTensor` of a functional graph.

    Returns:
        A `NodeCall`; for a model input, one with `operation=None` and no inputs.

    Example:

    >>> inputs = keras.Input((4,))
    >>> dense = keras.layers.Dense(2)
    >>> call = producer_call(dense(inputs))
    >>> call.operation is dense, call.inputs[0] is inputs
    (True, True)
    """
    operation, node_index, _ = tensor._keras_history
    node = operation._inbound_nodes[node_index]
    if node.is_input:
        return NodeCall(None, [], list(node.outputs), node.arguments)
    return NodeCall(operation, list(node.input_tensors), list(node.outputs), node.arguments)


def sublayers(layer) -> list:
    """The layers a custom layer holds as attributes, at any depth (not `layer` itself).

    Args:
        layer: a Keras layer.

    Returns:
        The tracked sublayers, depth first.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> _ = attention(np.zeros((1, 3, 8)), np.zeros((1, 3, 8)))
    >>> sorted({type(inner).__name__ for inner in sublayers(attention)})
    ['Dropout', 'EinsumDense', 'Softmax']
    """
    return list(layer._flatten_layers(include_self=False, recursive=True))


def child_layers(layer) -> list:
    """The layers a layer holds directly as attributes (not theirs in turn).

    Args:
        layer: a Keras layer.

    Returns:
        Its direct sublayers, in tracking order.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> _ = attention(np.zeros((1, 3, 8)), np.zeros((1, 3, 8)))
    >>> [type(inner).__name__ for inner in child_layers(attention)][:2]
    ['EinsumDense', 'EinsumDense']
    """
    return list(layer._flatten_layers(include_self=False, recursive=False))


def detached_copy(layer):
    """A shallow copy of a layer without weights: the same configuration and attributes,
    but calls of its own (the original gains no nodes from the copy's model).

    Args:
        layer: a layer holding no weights.

    Returns:
        A new layer object.

    Example:

    >>> relu = keras.layers.ReLU(name="act")
    >>> twin = detached_copy(relu)
    >>> twin is relu, twin.name, twin._inbound_nodes is relu._inbound_nodes
    (False, 'act', False)
    """
    copy = object.__new__(type(layer))
    copy.__dict__.update(layer.__dict__)
    copy.__dict__["_inbound_nodes"] = []
    copy.__dict__["_outbound_nodes"] = []
    return copy


def build_like(target, source) -> None:
    """Build `target` with the shapes `source` was built with, if its build needs several.

    A layer built from one shape (Dense, Conv2D) builds itself when a wrapper builds; a
    layer whose `build` takes several (MultiHeadAttention's query and value shapes) must be
    built beforehand, and must remember those shapes so that its `.keras` config rebuilds it.

    Args:
        target: an unbuilt clone of `source`.
        source: a built layer.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> _ = attention(np.zeros((1, 3, 8)), np.zeros((1, 5, 8)))
    >>> twin = keras.layers.MultiHeadAttention.from_config(attention.get_config())
    >>> build_like(twin, attention)
    >>> twin.built, twin.get_build_config() == attention.get_build_config()
    (True, True)
    """
    config = source.get_build_config() or {}
    if "shapes_dict" in config and not target.built:
        target.build_from_config(config)
        target._build_shapes_dict = dict(config["shapes_dict"])


def filter_config(layer, keys) -> None:
    """Make `layer.get_config()` report only the entries named in `keys`.

    Keras writes a config itself for layers that define no `get_config` (from their
    constructor arguments) only while `get_config` is its own default method; the filtered
    method is marked as that default, so the automatic config still runs underneath.

    Args:
        layer: a layer.
        keys: the config entries to keep.

    Example:

    >>> layer = keras.layers.Dense(2, name="fc")
    >>> filter_config(layer, {"units", "name"})
    >>> layer.get_config()
    {'name': 'fc', 'units': 2}
    """
    full_config = layer.get_config
    get_config = functools.partial(_config_subset, full_config, frozenset(keys))
    get_config._is_default = getattr(full_config, "_is_default", False)
    layer.get_config = get_config


def _config_subset(get_config, keys) -> dict:
    return {k: v for k, v in get_config().items() if k in keys}


@contextlib.contextmanager
def intercepted_layer_calls(handler):
    """Inside the block, every layer call goes to `handler(layer, args, kwargs)` first;
    where it returns `NotImplemented`, the layer is called as usual.

    Args:
        handler: the function that may take a call over.

    Yields:
        Nothing.

    Example:

    >>> seen = []
    >>> def note(layer, args, kwargs):
    ...     seen.append(layer.name)
    ...     return NotImplemented
    >>> with intercepted_layer_calls(note):
    ...     _ = keras.layers.Dense(2, name="fc")(np.zeros((1, 3)))
    >>> seen
    ['fc']
    """
    original = keras.layers.Layer.__call__

    def call(layer, *args, **kwargs):
        result = handler(layer, args, kwargs)
        return original(layer, *args, **kwargs) if result is NotImplemented else result

    keras.layers.Layer.__call__ = call
    try:
        yield
    finally:
        keras.layers.Layer.__call__ = original


@contextlib.contextmanager
def patched_attributes(target, replacements: dict):
    """Inside the block, `target` (a module such as `keras.ops`) has the attributes in
    `replacements` instead of its own.

    Args:
        target: the object to patch.
        replacements: `{attribute name: value}`.

    Yields:
        Nothing.

    Example:

    >>> with patched_attributes(keras.ops, {"shape": lambda x: "patched"}):
    ...     inside = keras.ops.shape(np.zeros(2))
    >>> inside, keras.ops.shape(np.zeros(2))
    ('patched', (2,))
    """
    saved = {name: getattr(target, name) for name in replacements}
    for name, value in replacements.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(target, name, value)


def array_arguments(arguments) -> list:
    """The array constants a call received besides its tensors (`x + np.ones(8)`).

    Args:
        arguments: `NodeCall.arguments`.

    Returns:
        Every argument that has a shape and is not a symbolic tensor.

    Example:

    >>> inputs = keras.Input((3,))
    >>> (call,) = node_calls(keras.Model(inputs, inputs * np.arange(3.0)))
    >>> array_arguments(call.arguments)
    [array([0., 1., 2.])]
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

    Example:

    >>> inputs = keras.Input((3,))
    >>> (call,) = node_calls(keras.Model(inputs, inputs * 2.0))
    >>> args, kwargs = fill_arguments(call.arguments, {id(inputs): np.ones((1, 3))})
    >>> keras.ops.convert_to_numpy(call.operation(*args, **kwargs)).tolist()
    [[2.0, 2.0, 2.0]]
    """
    return arguments.fill_in(values)


@contextlib.contextmanager
def unsafe_deserialization():
    """Let `from_config` rebuild Python lambdas (Keras' safe mode off) inside the block.

    Used when cloning the user's own layers from memory, never when loading files.

    Yields:
        Nothing; the block runs with safe mode off.

    Example:

    >>> layer = keras.layers.Lambda(lambda t: t + 1.0)
    >>> with unsafe_deserialization():
    ...     clone = keras.layers.Lambda.from_config(layer.get_config())
    >>> float(keras.ops.convert_to_numpy(clone(np.zeros((1,))))[0])
    1.0
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

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    >>> _ = attention(np.zeros((1, 4, 6)), np.zeros((1, 4, 6)))
    >>> tuple(attention_projections(attention)["value"].kernel.shape)
    (6, 2, 3)
    """
    return {name: getattr(layer, f"_{name}_dense") for name in ("query", "key", "value", "output")}


def keras_hub_self_attention(layer):
    """The self-attention layer inside a KerasHub `TransformerEncoder` or `TransformerDecoder`
    (a private attribute of KerasHub's, read here only).

    Args:
        layer: a built `keras_hub.layers.TransformerEncoder` or `TransformerDecoder`.

    Returns:
        Its `MultiHeadAttention` (KerasHub's `CachedMultiHeadAttention` subclass).

    Example:

    ```python
    encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    encoder(np.zeros((1, 4, 8)))
    keras_hub_self_attention(encoder).num_heads  # 2
    ```
    """
    return layer._self_attention_layer


def keras_hub_block_layers(layer) -> dict:
    """The layers a KerasHub `TransformerEncoder` or `TransformerDecoder` computes with, in
    call order (private attributes of KerasHub's, read here only).

    Args:
        layer: a built KerasHub `TransformerEncoder` or `TransformerDecoder`.

    Returns:
        `{"attention", "attention_dropout", "attention_norm", "feedforward_norm",
        "intermediate", "output", "feedforward_dropout"}` to layers.

    Example:

    ```python
    encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    encoder(np.zeros((1, 4, 8)))
    keras_hub_block_layers(encoder)["intermediate"].units  # 8
    ```
    """
    return {
        "attention": layer._self_attention_layer,
        "attention_dropout": layer._self_attention_dropout,
        "attention_norm": layer._self_attention_layer_norm,
        "feedforward_norm": layer._feedforward_layer_norm,
        "intermediate": layer._feedforward_intermediate_dense,
        "output": layer._feedforward_output_dense,
        "feedforward_dropout": layer._feedforward_dropout,
    }


def keras_hub_vit_block_layers(block) -> dict:
    """The layers a KerasHub `ViTEncoderBlock` computes with, in call order (attributes
    KerasHub sets in `build`, read here only).

    Args:
        block: a built `ViTEncoderBlock` (`keras_hub.src.models.vit.vit_layers`).

    Returns:
        `{"attention_norm", "attention", "attention_dropout", "mlp_norm", "mlp_in",
        "mlp_dropout", "mlp_out"}` to layers (the MLP applies its one dropout twice).

    Example:

    ```python
    encoder = backbone.get_layer("vit_encoder")
    block, _ = keras_hub_vit_blocks(encoder)[0]
    keras_hub_vit_block_layers(block)["mlp_in"].units  # mlp_dim
    ```
    """
    return {
        "attention_norm": block.layer_norm_1,
        "attention": block.mha,
        "attention_dropout": block.dropout,
        "mlp_norm": block.layer_norm_2,
        "mlp_in": block.mlp.dense_1,
        "mlp_dropout": block.mlp.dropout,
        "mlp_out": block.mlp.dense_2,
    }


def keras_hub_vit_encoder_ends(layer) -> tuple:
    """The dropout a KerasHub `ViTEncoder` applies before its blocks and the normalization
    after them (attributes KerasHub sets in `build`, read here only).

    Args:
        layer: a built `ViTEncoder`.

    Returns:
        `(dropout, layer_norm)`.

    Example:

    ```python
    dropout, norm = keras_hub_vit_encoder_ends(backbone.get_layer("vit_encoder"))
    ```
    """
    return layer.dropout, layer.layer_norm


def keras_hub_cross_attention(layer):
    """The cross-attention layer inside a KerasHub `TransformerDecoder`, if it has one.

    KerasHub creates it in `build` only when the decoder is called with an encoder sequence,
    so an unbuilt decoder (and every encoder) reports none.

    Args:
        layer: a KerasHub `TransformerEncoder` or `TransformerDecoder`, built or not.

    Returns:
        Its cross-attention `MultiHeadAttention`, or `None`.

    Example:

    ```python
    decoder = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2)
    decoder(np.zeros((1, 4, 8)), np.zeros((1, 6, 8)))
    keras_hub_cross_attention(decoder).num_heads  # 2
    ```
    """
    return getattr(layer, "_cross_attention_layer", None)


def keras_hub_vit_blocks(layer):
    """The transformer blocks inside a KerasHub `ViTEncoder` and each block's attention
    (attributes KerasHub sets in `build`, read here only).

    Args:
        layer: a built `ViTEncoder` (`keras_hub.src.models.vit.vit_layers`).

    Returns:
        A list of `(block, attention)` pairs in call order; `attention` is the block's
        `keras.layers.MultiHeadAttention`.

    Example:

    ```python
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        mlp_dim=32,
    )
    [attention.num_heads for _, attention in keras_hub_vit_blocks(
        backbone.get_layer("vit_encoder"))]  # [2, 2]
    ```
    """
    return [(block, block.mha) for block in layer.encoder_layers]


def numpy_op(name: str) -> type:
    """The class of a Keras numpy op as it appears in a graph (`"Add"` for `x + y`).

    Args:
        name: the class name in `keras.ops.numpy`'s implementation.

    Returns:
        The `keras.Operation` subclass.

    Example:

    >>> inputs = keras.Input((3,))
    >>> (call,) = node_calls(keras.Model(inputs, inputs + inputs))
    >>> isinstance(call.operation, numpy_op("Add"))
    True
    """
    return getattr(numpy_ops, name)


def nn_op(name: str) -> type:
    """The class of a Keras nn op as it appears in a graph (`"Relu"` for `keras.ops.relu`).

    Args:
        name: the class name in `keras.ops.nn`'s implementation.

    Returns:
        The `keras.Operation` subclass.

    Example:

    >>> inputs = keras.Input((3,))
    >>> (call,) = node_calls(keras.Model(inputs, keras.ops.relu(inputs)))
    >>> isinstance(call.operation, nn_op("Relu"))
    True
    """
    return getattr(nn_ops, name)


def op_function(operation) -> str | None:
    """The `keras.ops` function a graph's op node computes (`"einsum"` for an `Einsum`
    node), or `None` for anything that is not one of Keras' ops (a layer).

    Args:
        operation: a node's operation.

    Returns:
        The function's name, or `None`.

    Example:

    >>> inputs = keras.Input((2, 3))
    >>> (call,) = node_calls(keras.Model(inputs, keras.ops.matmul(inputs, np.ones((3, 4)))))
    >>> op_function(call.operation)
    'matmul'
    """
    if isinstance(operation, keras.layers.Layer) or not type(operation).__module__.startswith(
        "keras.src.ops"
    ):
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower()


def einsum_equation(operation) -> str:
    """The equation of an `Einsum` op node.

    Args:
        operation: an op whose `op_function` is `"einsum"`.

    Returns:
        The equation, e.g. `"bqd,bkd->bqk"`.

    Example:

    >>> a, b = keras.Input((4, 3)), keras.Input((5, 3))
    >>> (call,) = node_calls(keras.Model([a, b], keras.ops.einsum("bqd,bkd->bqk", a, b)))
    >>> einsum_equation(call.operation)
    'bqd,bkd->bqk'
    """
    return operation.subscripts


def convnext_layer_scale() -> type | None:
    """The `LayerScale` layer of `keras.applications`' ConvNeXt, or None if Keras has none.

    Returns:
        The layer class, or `None`.

    Example:

    >>> convnext_layer_scale().__name__
    'LayerScale'
    """
    try:
        from keras.src.applications.convnext import LayerScale
    except ImportError:
        return None
    return LayerScale


def constraints_read_state() -> bool:
    """Whether an optimizer's variable constraints can read the model's other variables.

    Keras' JAX trainer applies the optimizer statelessly with only the trainable and the
    optimizer variables, inside a jitted step where the others hold no value: a constraint
    that reads a mask variable finds nothing there (or a constant frozen at tracing time).
    TensorFlow and PyTorch apply constraints to live variables.

    Returns:
        False on the JAX backend, True on the others.

    Example:

    >>> constraints_read_state() == (keras.backend.backend() != "jax")
    True
    """
    return keras.backend.backend() != "jax"


def sync_training_state(model) -> None:
    """Write the state a backend's `fit` holds apart back into the model's variables.

    During `fit` on JAX the variables' values live in the trainer's state and the variables
    themselves are emptied; a callback that reads or assigns variables mid-epoch first
    syncs them (`jax_state_sync`), and the next step then reads the state back from the
    variables, assignments included. Other backends train the variables themselves.

    Args:
        model: the model being trained (or any model; without pending state nothing
            happens).

    Example:

    >>> sync_training_state(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    """
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def optimizer_slots(optimizer, variable) -> list:
    """The optimizer's variables built from `variable` (momentums, velocities, averages).

    Keras names each one `{variable.path with "/" as "_"}_{slot name}`
    (`BaseOptimizer.add_variable_from_reference`), with the variable's shape.

    Args:
        optimizer: a built Keras optimizer, or `None`.
        variable: a model variable.

    Returns:
        The slot variables, empty if the optimizer is `None` or not built yet.

    Example:

    >>> dense = keras.layers.Dense(2, name="fc")
    >>> dense.build((None, 3))
    >>> optimizer = keras.optimizers.Adam()
    >>> optimizer.build(dense.trainable_variables)
    >>> [slot.name for slot in optimizer_slots(optimizer, dense.kernel)]
    ['fc_kernel_momentum', 'fc_kernel_velocity']
    """
    if optimizer is None or not getattr(optimizer, "built", False):
        return []
    prefix = variable.path.replace("/", "_") + "_"
    return [
        slot
        for slot in optimizer.variables
        if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape)
    ]


def call_inside(wrapper, layer, inputs, **kwargs):
    """Call `layer` on `inputs` from inside `wrapper.call`, skipping `layer`'s own
    `Layer.__call__` wherever it would only repeat what `wrapper`'s has just done.

    `Layer.__call__` converts and autocasts the inputs under the layer's dtype policy,
    resolves `training`, propagates Keras masks, enters a remat or quantized call, adds the
    activity regulariser and lays the outputs out for a distribution. Inside a wrapper of
    the same dtype policy, on one tensor without a Keras mask, with none of the rest in
    play, that is all done already, and on PyTorch, which runs every step eagerly, it
    costs about 0.1 ms a call. Anything else goes through `layer(...)`.

    Args:
        wrapper: the layer whose `call` is running (its `__call__` has prepared `inputs`).
        layer: the wrapped layer, built.
        inputs: the call's one positional argument.
        **kwargs: keyword arguments for `layer` (`training`, as `wrapper` resolved it);
            context arguments `layer.call` does not take are dropped, as Keras drops them.

    Returns:
        What `layer(inputs, **kwargs)` returns.

    Example:

    >>> inner = keras.layers.Dense(2, kernel_initializer="ones")
    >>> outer = keras.layers.Wrapper(inner)
    >>> outer.build((None, 3))
    >>> x = keras.ops.ones((1, 3))
    >>> keras.ops.convert_to_numpy(call_inside(outer, inner, x, training=True)).tolist()
    [[3.0, 3.0]]
    """
    if not _only_repeats_outer_call(wrapper, layer, inputs):
        return layer(inputs, **kwargs)
    return layer.call(inputs, **call_arguments(layer, kwargs))


def call_arguments(layer, kwargs: dict) -> dict:
    """`kwargs` without the context arguments (`training`) that `layer.call` does not take.

    `Layer.__call__` drops them; code that calls `layer.call` directly, or through
    `stateless_call`, must drop them too.

    Args:
        layer: a Keras layer.
        kwargs: keyword arguments meant for the layer.

    Returns:
        A new dict.

    Example:

    >>> call_arguments(keras.layers.LayerNormalization(), {"training": True})
    {}
    >>> call_arguments(keras.layers.Dropout(0.5), {"training": True})
    {'training': True}
    """
    dropped = layer._call_context_args.difference(layer.call_signature_parameters)
    return {name: value for name, value in kwargs.items() if name not in dropped}


def _only_repeats_outer_call(wrapper, layer, inputs) -> bool:
    """Whether `layer.__call__(inputs)` inside `wrapper.call` would do nothing but call."""
    return (
        layer.built
        and keras.ops.is_tensor(inputs)  # a backend tensor, not a symbolic KerasTensor
        and get_keras_mask(inputs) is None
        and layer.dtype_policy.name == wrapper.dtype_policy.name
        and layer.autocast == wrapper.autocast
        and layer.activity_regularizer is None
        and (not layer.supports_masking or is_default(layer.compute_mask))
        and layer._remat_mode is None
        and getattr(layer, "quantization_mode", None) is None
        and keras.distribution.distribution() is None
    )
