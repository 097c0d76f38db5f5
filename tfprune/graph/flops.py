"""FLOPs of the layers tfprune knows, counted from their weights and traced shapes.

Attention layers count per head: the head's slices of the four projections and its share of
the score and weighted-sum matmuls (`LayerSpec.units`); effective FLOPs count the heads
whose value projection is not all zero.

One multiply-add is 2 FLOPs. Each element of a weight listed in the layer's
`LayerSpec.flops_weights` costs one multiply-add per spatial position (of the output, or of
the input for transposed convolutions). *Effective* FLOPs count only nonzero weights, which
is what filter removal turns into real savings. Elementwise layers (BN, activations,
pooling) are not counted: they are a small share and pruning changes them in proportion.
Models whose inputs have unknown dimensions (token sequences, vision backbones without a
fixed image size) are counted at `tfprune.reference_size()`.
"""

from __future__ import annotations

import math
import warnings
import weakref

import keras
import numpy as np

from tfprune.core import keras_internals, modelwalk
from tfprune.core.modelwalk import weights_owner
from tfprune.graph import reference, tracing
from tfprune.layers import registry
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.traced import ShapedCall, fill_template


def _node_shapes(layer, where: str):
    """Shapes of `layer`'s symbolic outputs (or inputs), one per call in the model graph,
    with unknown dimensions at the reference size (`tfprune.graph.reference`)."""
    shapes = []
    for inputs, outputs in keras_internals.calls_of(layer):
        tensors = outputs if where == "output" else inputs
        if tensors:
            shapes.append(reference.concrete_shape(tensors[0]))
    return shapes


def _positions(node_layer, shape_of_weight, spec, where: str) -> int | None:
    """Spatial positions per example summed over the layer's calls; None if it has none.

    Dividing the element count by the channel count finds the spatial size whatever the
    data format (channels first or last) or rank (sequences, images, volumes).
    """
    channels = (
        # A projection into heads keeps each head's size in the output too.
        spec.filter_count(shape_of_weight) * math.prod(shape_of_weight[a] for a in spec.output_axes)
        if where == "output"
        else shape_of_weight[spec.input_axis]
    )
    total = 0
    for shape in _node_shapes(node_layer, where):
        total += math.prod(shape[1:]) // channels
    return total or None


def weight_positions(layer, node_layer, name: str) -> int | None:
    """Multiply-adds per example that one element of weight `name` costs.

    Args:
        layer: the layer owning the weight.
        node_layer: the layer that appears in the model graph (a wrapper, or `layer`).
        name: a variable name listed in the layer's `LayerSpec.flops_weights`.

    Returns:
        The number of spatial positions, or `None` if the layer is never called.

    Example:

    >>> inputs = keras.Input((10, 10, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 outputs, 27 weights each
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    >>> weight_positions(model.get_layer("conv"), model.get_layer("conv"), "kernel")
    64
    """
    spec = registry.spec_for(layer)
    kernel_shape = tuple(named_variable(layer, spec.weight).shape)
    where = dict(spec.flops_weights)[name]
    return _positions(node_layer, kernel_shape, spec, where)


def mask_positions(layer, node_layer) -> int | None:
    """Multiply-adds per example that one element of a layer's mask matrix costs
    (`MaskLayout`): its prunable weight's, or for a Bidirectional layer its first
    direction's.

    Args:
        layer: the layer owning the weights.
        node_layer: the layer that appears in the model graph.

    Returns:
        The number of positions, or `None` if the layer is never called.

    Example:

    >>> inputs = keras.Input((7, 3))
    >>> model = keras.Model(inputs, keras.layers.GRU(2, name="gru")(inputs))
    >>> mask_positions(model.get_layer("gru"), model.get_layer("gru"))  # once per step
    7
    """
    spec = registry.spec_for(layer)
    if spec.members is not None:
        layer = spec.members.of(layer)[0][0]
        spec = registry.spec_for(layer)
    return weight_positions(layer, node_layer, spec.weight)


def unit_flops(layer, node_layer=None) -> int | None:
    """FLOPs per example of one unit of a layer with units inside it (an attention head).

    Args:
        layer: the layer owning the weights; its spec has `units`.
        node_layer: the layer that appears in the model graph, if different. Defaults to
            `None` (the layer itself).

    Returns:
        FLOPs of one unit summed over the layer's calls, or `None` if it is never called.

    Example:

    >>> inputs = keras.Input((10, 16))
    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    >>> model = keras.Model(inputs, attention(inputs, inputs))
    >>> unit_flops(attention)  # 2 * (q, k, v 3 * 10*16*4 + output 10*4*16 + scores 10*10*8)
    6720
    """
    spec = registry.spec_for(layer)
    total = 0
    for inputs in keras_internals.operand_calls(node_layer or layer):
        total += spec.units.flops(layer, [reference.concrete_shape(t) for t in inputs])
    return total or None


def fixed_flops(layer, node_layer=None) -> int:
    """FLOPs per example of the part of a layer with units inside it that no unit owns.

    Args:
        layer: the layer owning the weights; its spec has `units`.
        node_layer: the layer that appears in the model graph, if different. Defaults to
            `None` (the layer itself).

    Returns:
        FLOPs summed over the layer's calls; 0 where every FLOP belongs to a unit.

    Example:

    >>> inputs = keras.Input((10, 16))
    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    >>> model = keras.Model(inputs, attention(inputs, inputs))
    >>> fixed_flops(attention)  # every FLOP of an attention layer is one of its heads'
    0
    """
    spec = registry.spec_for(layer)
    if spec.units.fixed_flops is None:
        return 0
    return sum(
        spec.units.fixed_flops(layer, [reference.concrete_shape(t) for t in inputs])
        for inputs in keras_internals.operand_calls(node_layer or layer)
    )


def layer_flops(layer, node_layer=None, effective: bool = False) -> int | None:
    """FLOPs per example of one registered layer.

    Args:
        layer: the layer owning the weights (for a wrapper, its inner layer).
        node_layer: the layer that appears in the model graph (the wrapper), if different.
            Defaults to `None` (the layer itself).
        effective: count only nonzero weights. Defaults to `False`.

    Returns:
        FLOPs, or `None` if the layer is not registered or never called.

    Example:

    >>> inputs = keras.Input((10, 10, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 outputs, 27 weights each
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    >>> layer_flops(model.get_layer("conv"))  # 2 * 27 * 4 filters * 64 positions
    13824
    """
    spec = registry.spec_for(layer)
    if spec is None:
        return None
    if spec.members is not None:  # a Bidirectional layer: its directions, on its calls
        counts = [layer_flops(m, node_layer or layer, effective) for m, _ in spec.members.of(layer)]
        return None if None in counts else sum(counts)
    if spec.internal_units:
        per_unit = unit_flops(layer, node_layer)
        if per_unit is None:
            return None
        units = registry.unit_count(layer)
        if effective:
            units -= int(spec.dead_units(layer).sum())
        return units * per_unit + fixed_flops(layer, node_layer)
    total = 0
    for name, _ in spec.flops_weights:
        weight = named_variable(layer, name)
        positions = weight_positions(layer, node_layer or layer, name)
        if positions is None:
            return None
        count = (
            np.count_nonzero(keras.ops.convert_to_numpy(weight))
            if effective
            else math.prod(weight.shape)
        )
        total += 2 * int(count) * positions
    return total


def compute_layers(model, multiplier: int = 1):
    """Every registered layer in `model`, nested models included.

    Args:
        model: a Keras model.
        multiplier: how often `model` itself is called. Defaults to 1.

    Yields:
        `(layer, node_layer, calls)`: `layer` owns the weights, `node_layer` is what the
        graph holds (a wrapper or the layer itself), and `calls` counts how often an
        enclosing nested model is called.

    Example:

    >>> inputs = keras.Input((10, 10, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 outputs, 27 weights each
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    >>> [(layer.name, calls) for layer, _, calls in compute_layers(model)]
    [('conv', 1), ('fc', 1)]
    """
    for item in model.layers:
        # Wrappers (tfprune's, or Keras' own such as TimeDistributed) hold the weights
        # in `.layer` but appear in the graph themselves.
        owner = weights_owner(item)  # a Bidirectional layer owns its directions' weights
        if owner is not item:
            if registry.spec_for(owner) is not None:
                yield owner, item, multiplier
        elif isinstance(item, keras.Model):
            yield from compute_layers(
                item, multiplier * max(1, len(keras_internals.calls_of(item)))
            )
        elif registry.spec_for(item) is not None:
            yield item, item, multiplier


def graph_calls(model, multiplier: int = 1, seen=None):
    """Every call in `model`'s graph, nested models' included: `(call, multiplier)`; a
    nested model's calls once, times how often it is called (as `compute_layers` does).

    Args:
        model: a Keras model.
        multiplier: how often `model` itself is called. Defaults to 1.
        seen: ids of nested models already walked (for the recursion). Defaults to `None`.

    Yields:
        `(keras_internals.NodeCall, multiplier)` for each call of a layer or op.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> [(call.operation.name, n) for call, n in graph_calls(model)]
    [('fc', 1)]
    """
    seen = set() if seen is None else seen
    for call in keras_internals.node_calls(modelwalk.functional_of(model)):
        if not isinstance(call.operation, keras.Model):
            yield call, multiplier
        elif id(call.operation) not in seen:
            seen.add(id(call.operation))
            calls = max(1, len(keras_internals.calls_of(call.operation)))
            yield from graph_calls(call.operation, multiplier * calls, seen)


def op_flops(call) -> int:
    """FLOPs per example of a graph call that multiplies tensors without weights of its own
    (`keras.ops.einsum`, `matmul`, `dot_product_attention`; `registry.register_op_flops`),
    as a traced custom layer computes attention. 0 for any other call.

    Args:
        call: a `keras_internals.NodeCall`.

    Returns:
        FLOPs, with unknown sizes at the reference size.

    Example:

    >>> q, k = keras.Input((8, 4)), keras.Input((8, 4))
    >>> model = keras.Model([q, k], keras.ops.einsum("bqd,bkd->bqk", q, k))
    >>> [op_flops(call) for call in keras_internals.node_calls(model)]  # 2 * 8*8*4
    [512]
    """
    operation = call.operation
    shapes = {id(t): reference.concrete_shape(t) for t in call.inputs}
    if isinstance(operation, ShapedCall):
        function = operation.function
        listed = [shapes[id(t)] for t in call.inputs]
        args = fill_template(operation.template["args"], listed)
        kwargs = fill_template(operation.template["kwargs"], listed)
    else:
        function = keras_internals.op_function(operation)
        layer_rule = registry.call_flops_rule(operation) if function is None else None
        if function is None and layer_rule is None:
            return 0
        args, kwargs = keras_internals.fill_arguments(call.arguments, shapes)
        # Constant operands (`einsum(..., x, np.ones(...))`) count by their shapes too.
        args = [tuple(np.shape(a)) if hasattr(a, "shape") else a for a in args]
        kwargs = {k: tuple(np.shape(v)) if hasattr(v, "shape") else v for k, v in kwargs.items()}
        if layer_rule is not None:
            return int(layer_rule(operation, *args, **kwargs))
        if function == "einsum":
            args = (keras_internals.einsum_equation(operation), *args)
    rule = registry.op_flops_rule(function)
    return 0 if rule is None else int(rule(*args, **kwargs))


def counted_on_trace(call) -> bool:
    """Whether a call is of a custom layer whose FLOPs no `LayerSpec` counts (none is
    registered for it, or its spec refuses it): `call_flops` counts them on its trace.

    Args:
        call: a `keras_internals.NodeCall` or a `ChannelGraph` call.

    Returns:
        True or False.

    Example:

    >>> inputs = keras.Input((4,))
    >>> (call,) = keras_internals.node_calls(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    >>> counted_on_trace(call)
    False
    """
    return tracing.is_custom(call.operation) and registry.spec_for(call.operation) is None


# (id(layer), input shapes, reference size, effective) -> (weak reference to the layer,
# its FLOPs report or the error): a layer's trace is counted once per shape, however often
# a plan, `summary` or `explain` asks.
_TRACED_FLOPS: dict = {}


def custom_layer_flops(call, effective: bool = False) -> tuple[int, dict]:
    """FLOPs per example of one call of a custom layer, counted on its trace (its sublayers
    and the products its `call` computes) at the reference size.

    Args:
        call: a `keras_internals.NodeCall` of a custom layer.
        effective: count only nonzero weights. Defaults to `False`.

    Returns:
        `(FLOPs, uncounted)` as `flops_report` gives them for the trace: layers inside that
        stayed whole and cannot be traced either are not counted.

    Raises:
        ValueError: if the layer cannot be traced there, saying why.

    Example:

    >>> class Block(keras.layers.Layer):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.dense = keras.layers.Dense(4, name="dense")
    ...     def call(self, x):
    ...         return self.dense(x) + x
    >>> inputs = keras.Input((6, 4))
    >>> model = keras.Model(inputs, Block(name="block")(inputs))
    >>> custom_layer_flops(keras_internals.node_calls(model)[0])  # 2 * 6 * 4*4
    (192, {})
    """
    layer = call.operation
    shapes = tuple(reference.concrete_shape(t) for t in call.inputs)
    key = (id(layer), shapes, reference.reference_size(), effective)
    cached = _TRACED_FLOPS.get(key)
    # Dense FLOPs depend on shapes alone; effective ones on the weights, which move.
    if cached is not None and cached[0]() is layer and not effective:
        if isinstance(cached[1], ValueError):
            raise cached[1]
        return cached[1]
    specs = {id(t): keras.KerasTensor(s, dtype=t.dtype) for t, s in zip(call.inputs, shapes)}
    args, kwargs = keras_internals.fill_arguments(call.arguments, specs)
    try:
        traced, _ = tracing.standalone(layer, args, kwargs)
    except Exception as error:  # the layer's own code, on symbolic tensors
        result = ValueError(
            f"'{layer.name}' ({type(layer).__name__}) cannot be traced at the reference size "
            f"{reference.reference_size()}: {tracing.summary(error)}"
        )
    else:
        result = flops_report(traced, effective)
    _TRACED_FLOPS[key] = (weakref.ref(layer, lambda _: _TRACED_FLOPS.pop(key, None)), result)
    if isinstance(result, ValueError):
        raise result
    return result


def flops_report(model, effective: bool = False) -> tuple[int, dict]:
    """FLOPs per example of `model`, and the layers they leave out.

    Args:
        model: a built Keras model (wrapped, stripped or plain).
        effective: count only nonzero weights. Defaults to `False`.

    Returns:
        `(FLOPs, {layer name: why its FLOPs are not counted})`.

    Raises:
        ValueError: for a registered layer that is not called in the model's graph.

    Example:

    >>> inputs = keras.Input((4,))
    >>> flops_report(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    (16, {})
    """
    total, uncounted = 0, {}
    for layer, node_layer, calls in compute_layers(model):
        flops = layer_flops(layer, node_layer, effective)
        if flops is None:
            raise ValueError(
                f"Cannot count FLOPs of layer '{layer.name}': it is not called in the model's "
                "graph, and tfprune counts FLOPs from the calls' shapes."
            )
        total += flops * calls
    for call, calls in graph_calls(model):
        try:
            inside, missed = call_flops(call, effective)
        except ValueError as error:
            uncounted[call.operation.name] = str(error)
            continue
        total += inside * calls
        uncounted.update(missed)
    return total, uncounted


def call_flops(call, effective: bool = False) -> tuple[int, dict]:
    """FLOPs per example of one graph call that no `LayerSpec` counts: a product of tensors
    (`op_flops`) or a custom layer (`custom_layer_flops`); 0 for any other call.

    Args:
        call: a `keras_internals.NodeCall` or a `ChannelGraph` call.
        effective: count only nonzero weights. Defaults to `False`.

    Returns:
        `(FLOPs, uncounted)`, as `custom_layer_flops` gives them.

    Raises:
        ValueError: for a custom layer that cannot be traced.

    Example:

    >>> q, k = keras.Input((8, 4)), keras.Input((8, 4))
    >>> model = keras.Model([q, k], keras.ops.einsum("bqd,bkd->bqk", q, k))
    >>> call_flops(keras_internals.node_calls(model)[0])
    (512, {})
    """
    if counted_on_trace(call):
        return custom_layer_flops(call, effective)
    return op_flops(call), {}


def count_flops(model, effective: bool = False, warn: bool = True) -> int:
    """Total FLOPs per example of the model: its convolution, dense and attention layers,
    the products of tensors in its graph (`einsum`, `matmul`), and what custom layers
    compute inside (counted on their traces).

    Unknown input dimensions (a sequence length, an image side) are counted at
    `tfprune.reference_size()`; `tfprune.set_reference_size` changes it.

    Args:
        model: a built Keras model (wrapped, stripped or plain).
        effective: count only nonzero weights (what the masks leave). Defaults to `False`.
        warn: warn about layers whose FLOPs cannot be counted (`flops_report` lists them).
            Defaults to `True`.

    Returns:
        FLOPs per example.

    Raises:
        ValueError: for a layer that is not called in the model's graph, naming it.

    Example:

    >>> inputs = keras.Input((10, 10, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 outputs, 27 weights each
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Flatten()(x)))
    >>> count_flops(model)  # conv 13824 + fc 2 * 256 * 2
    14848
    """
    total, uncounted = flops_report(model, effective)
    if uncounted and warn:
        warnings.warn(
            "count_flops leaves out layers it cannot trace: "
            + "; ".join(uncounted.values())
            + ". Their FLOPs count as 0.",
            stacklevel=2,
        )
    return total


def uncounted_layers(model) -> dict:
    """The custom layers of `model` whose FLOPs cannot be counted (they stay whole and
    cannot be traced either), with their share of the model's parameters.

    Args:
        model: a built Keras model.

    Returns:
        `{layer name: (share of parameters, why)}`; empty when every FLOP is counted.

    Example:

    >>> inputs = keras.Input((4,))
    >>> uncounted_layers(keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    {}
    """
    total = max(1, model.count_params())
    found = {}
    for call, _ in graph_calls(model):
        if not counted_on_trace(call) or call.operation.name in found:
            continue
        try:
            _, missed = custom_layer_flops(call)
        except ValueError as error:
            missed = {call.operation.name: str(error)}
        for name, why in missed.items():
            found[name] = (call.operation.count_params() / total, why)
    return found
