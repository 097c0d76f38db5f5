"""`tfprune.shrink`: physically remove zeroed filters, so the model gets smaller and faster.

A channel group (see `tfprune.graph`) is removed when doing so cannot change the model's
function:

1. it is not pinned (no model input or output, no barrier layer in it);
2. every layer that reads the group's channels as inputs (a convolution or dense layer)
   sees a constant there, for every input: the group's producers have all-zero filters,
   and what their biases become through BN, activations, pooling... is a constant;
3. each such constant can be folded into the reader's bias exactly: always for dense
   layers; for convolutions only without zero padding (or 1x1 kernels), because padding
   makes the border see less of the constant. Transposed and separable convolutions only
   take channels that are exactly zero;
4. a LayerNormalization (or RMSNormalization) over channels that reads the group also sees
   a constant there. It is replaced by a `ShrunkLayerNormalization` that keeps the removed
   constants and appends them for its statistics, so its mean and variance stay those of
   the wider layer. The channel's own output is zero because pruning masked its gamma and beta.

Attention heads are units inside their layer: a head whose value projection (kernel and
bias) is all zero outputs exactly zero, and `shrink` removes it from the query, key, value
and output projections (`num_heads` lowered, at least one head kept).

A recurrent unit whose weights and bias are all zero outputs exactly zero; `units` is
lowered (at least one kept). The two directions of a Bidirectional layer that concatenates
them lose units independently; where their widths end up different, the layer becomes a
`tfprune.layers.UnevenBidirectional`, which only infers its output width differently.

Anything else keeps its channel: `shrink` never returns a model that computes something
different from the masked one. A layer that reads a folded constant and had no bias gets
one (`use_bias=True`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.core import checks, modelwalk
from tfprune.core.modelwalk import functional_of, weights_owner
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.constants import constant_channels
from tfprune.layers import registry
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import ChannelRule, LayerSpec
from tfprune.masking.strip import strip
from tfprune.masking.wrappers import wrappers_of
from tfprune.shrinking.removal import removable_groups


def _index(role: str, kept_in, kept_out, multiplier: int, size: int, filters: int):
    """The kept indices along a weight axis of `size` entries, by its role (see
    `LayerSpec.slices`); `filters` is the layer's output channel count."""
    if role == "out":
        return kept_out
    if role == "out_gates":  # gate-major blocks of filters (LSTM, GRU)
        return np.concatenate([g * filters + kept_out for g in range(size // filters)])
    if role == "in":
        return kept_in
    return np.array(
        [c * multiplier + m for c in kept_in for m in range(multiplier)], dtype=np.int64
    )


def _fold(layer, spec, kernel, in_values, removed_in) -> np.ndarray | None:
    """What the removed constant input channels added to each output: the bias to add."""
    constants = np.zeros(kernel.shape[spec.input_axis])
    constants[removed_in] = np.nan_to_num(in_values[removed_in])
    if not constants.any():
        return None
    # canonical (filters, spatial, inputs): each output sums kernel * constant over taps.
    return spec.to_canonical(kernel).sum(axis=1) @ constants


def _set_count(config: dict, key, count: int) -> None:
    """Write a layer's new output channel count into its config at `key`: a name, or a path
    of names into nested configs (a generic RNN's `("cell", "config", "units")`)."""
    *path, last = key if isinstance(key, tuple) else (key,)
    if isinstance(last, int):  # an entry of a sequence: EinsumDense's output_shape
        *path, name = path
        for part in path:
            config[part] = dict(config[part])
            config = config[part]
        entries = list(config[name])
        entries[last] = count
        config[name] = entries
        return
    for name in path:
        config[name] = dict(config[name])
        config = config[name]
    old = config[last]
    # A shape whose last entry is the count (a Reshape's target, a Weight's shape).
    config[last] = (*old[:-1], count) if isinstance(old, (list, tuple)) else count


@dataclasses.dataclass
class _LayerPlan:
    """One layer after removal.

    `weights` are by variable name, in the layer's order; `cuts` are
    `{weight position: [(axis, kept indices), ...]}`, the slicing each weight went through,
    so that state shaped like the weights (optimizer slots) can follow.
    """

    layer: object
    layer_class: type
    config: dict
    weights: dict
    cuts: dict


def _plan_layer(layer, call, spec_or_rule, kept, values, graph) -> _LayerPlan:
    """New class, config, weights and cuts of one layer after removal."""
    width = graph.width(call.inputs[0])
    channels = _Channels(
        kept_in=kept[id(call.inputs[0])],
        kept_out=kept[id(call.outputs[0])],
        width_out=graph.width(call.outputs[0]),
        values_in=values.get(id(call.inputs[0]), np.full(width, np.nan)),
    )
    if isinstance(spec_or_rule, LayerSpec) and spec_or_rule.members:
        return _plan_members(layer, spec_or_rule, channels)
    return _plan_channels(layer, spec_or_rule, channels)


@dataclasses.dataclass
class _Channels:
    """The channels one layer call keeps: input and output indices, the output width, and
    the input's constant values (NaN where a channel varies)."""

    kept_in: np.ndarray
    kept_out: np.ndarray
    width_out: int
    values_in: np.ndarray


def _plan_channels(layer, spec_or_rule, channels: _Channels) -> _LayerPlan:
    """`_plan_layer` for a layer whose weights its spec or rule slices directly."""
    layer_class, config = type(layer), layer.get_config()
    weights = {v.name: keras.ops.convert_to_numpy(v) for v in layer.weights}
    positions = {v.name: i for i, v in enumerate(layer.weights)}
    cuts = {}
    kept_in, kept_out = channels.kept_in, channels.kept_out
    width = channels.values_in.size
    removed_in = np.setdiff1d(np.arange(width), kept_in)
    multiplier = spec_or_rule.outputs_per_input(layer) if isinstance(spec_or_rule, LayerSpec) else 1
    for name, axis, role in spec_or_rule.slices:
        if isinstance(name, int):  # a weight without a name of its own
            name = layer.weights[name].name
        if name in weights:
            size = weights[name].shape[axis]
            index = _index(role, kept_in, kept_out, multiplier, size, channels.width_out)
            weights[name] = np.take(weights[name], index, axis=axis)
            cuts.setdefault(positions[name], []).append((axis, index))
    if isinstance(spec_or_rule, LayerSpec):
        if spec_or_rule.config_key:
            _set_count(config, spec_or_rule.config_key, len(kept_out))
        if spec_or_rule.groups_key:
            config[spec_or_rule.groups_key] = len(kept_in)
        if not spec_or_rule.coupled:
            kernel = keras.ops.convert_to_numpy(named_variable(layer, spec_or_rule.weight))
            extra = _fold(layer, spec_or_rule, kernel, channels.values_in, removed_in)
            if extra is not None:
                bias = weights.get(spec_or_rule.bias)
                weights[spec_or_rule.bias] = (0 if bias is None else bias) + extra[kept_out].astype(
                    np.float32
                )
                config["use_bias"] = True
    elif spec_or_rule.kind == "grouped":
        config["groups"] = len(kept_out) // (width // layer.groups)
    elif spec_or_rule.config_key == "target_shape" and config["target_shape"][-1] != -1:
        config["target_shape"] = (*config["target_shape"][:-1], len(kept_out))
    elif spec_or_rule.config_key in config and spec_or_rule.config_key != "target_shape":
        _set_count(config, spec_or_rule.config_key, len(kept_out))
    elif spec_or_rule.shrunk_as is not None and removed_in.size:
        layer_class, config = spec_or_rule.shrunk_as(layer, channels.values_in[removed_in])
    return _LayerPlan(layer, layer_class, config, weights, cuts)


def _plan_members(layer, spec, channels: _Channels) -> _LayerPlan:
    """`_plan_layer` for a layer whose weights its members hold (a Bidirectional layer's
    directions): each member planned on its own units, the layer rebuilt around them."""
    config = layer.get_config()
    weights, cuts, widths = {}, {}, []
    positions = {id(v): i for i, v in enumerate(layer.weights)}
    for member, filters in spec.members.of(layer):
        units = np.flatnonzero(np.isin(filters, channels.kept_out))
        widths.append(units.size)
        plan = _plan_channels(
            member,
            registry.spec_for(member),
            dataclasses.replace(channels, kept_out=units, width_out=len(filters)),
        )
        key = "layer" if member is layer.forward_layer else "backward_layer"
        rebuilt = modelwalk.clone_layer(member, plan.config, plan.layer_class)
        config[key] = keras.saving.serialize_keras_object(rebuilt)
        for index, (variable, array) in enumerate(zip(member.weights, plan.weights.values())):
            weights[positions[id(variable)]] = array
            if index in plan.cuts:
                cuts[positions[id(variable)]] = plan.cuts[index]
    rebuilt_as = spec.members.rebuilt_as
    layer_class = rebuilt_as(layer, widths) if rebuilt_as else type(layer)
    return _LayerPlan(layer, layer_class, config, dict(sorted(weights.items())), cuts)


def _plan_units(layer) -> _LayerPlan | None:
    """A layer with units inside it (attention heads) without its dead units; at least one
    stays. `None` if it has no such units or none is dead."""
    if not registry.unit_count(layer):
        return None
    sliced = registry.spec_for(layer).sliced_units(layer)
    if sliced is None:
        return None
    config, weights, cuts = sliced
    return _LayerPlan(layer, type(layer), config, dict(enumerate(weights)), cuts)


def shrink(model):
    """Return a smaller model without the filters that pruning zeroed, computing the same function.

    Works on pruned (wrapped) models, stripped models, or any model whose filters are zero.
    Nested models stay nested. Layers keep their names; convolutions and dense layers get
    smaller `filters` / `units`, and the layers after them read fewer channels. See the
    module docstring for exactly which channels go and which stay.

    Args:
        model: a built Keras 3 functional or Sequential model.

    Returns:
        A new model; `model` is unchanged. Compile it before training further.

    Raises:
        TypeError: for tf_keras models and subclassed models without a graph of layers.
        ValueError: for an unbuilt model.

    Example:

    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    >>> x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    >>> pruned = tfprune.prune(model, schedule=0.5, protect=None)
    >>> plan = tfprune.apply_target(pruned, 0.5)
    >>> small = tfprune.shrink(tfprune.strip(pruned))
    >>> [small.get_layer(name).filters for name in ("conv1", "conv2")]
    [4, 8]
    >>> x = np.random.rand(2, 8, 8, 1)
    >>> bool(np.abs(keras.ops.convert_to_numpy(small(x) - pruned(x))).max() <= 1e-5)
    True
    """
    return shrink_with_cuts(model)[0]


def shrink_with_cuts(model):
    """`shrink`, also returning how each weight was cut.

    Args:
        model: as for `shrink`.

    Returns:
        `(smaller model, cuts)`; `cuts[(layer name, weight position)]` lists the
        `(axis, kept indices)` slices that weight went through (absent: kept whole).

    Raises:
        As `shrink`.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="fc"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> fc = model.get_layer("fc")
    >>> kernel, bias = fc.get_weights()
    >>> kernel[:, [1, 3]] = 0.0
    >>> fc.set_weights([kernel, np.zeros(4)])  # units 1 and 3 output exactly zero
    >>> small, cuts = shrink_with_cuts(model)
    >>> cuts[("fc", 0)]  # fc's kernel: outputs 0 and 2 kept, every input kept
    [(-1, array([0, 2])), (0, array([0, 1, 2]))]
    >>> cuts[("head", 0)][1]  # the head reads inputs 0 and 2 only
    (0, array([0, 2]))
    """
    checks.check_model(model, "shrink")
    if wrappers_of(model):
        model = strip(model)
    graph = ChannelGraph(model)
    values = constant_channels(graph)
    removed = removable_groups(graph, values)
    kept = {
        tensor_id: np.array(
            [c for c in range(graph.width(t)) if graph.root(t, c) not in removed], dtype=np.int64
        )
        for tensor_id, t in graph.tensors.items()
    }
    plans, ops = {}, {}
    for call in graph.calls():
        layer = weights_owner(call.layer)
        if id(layer) in plans or id(layer) in ops:
            continue
        if isinstance(call.rule, ChannelRule) and call.rule.kind == "moves":
            ops[id(call.layer)] = _resized(graph, call, kept)
        elif call.rule is not None:
            plans[id(layer)] = _plan_layer(layer, call, call.rule, kept, values, graph)
        elif (plan := _plan_units(layer)) is not None:
            plans[id(layer)] = plan

    # One copy per layer across nested models: a layer a task calls besides its backbone
    # (a causal LM's embedding, reversed as its output layer) stays one layer.
    copies = {}

    def rebuild(layer):
        if id(layer) not in copies:
            copies[id(layer)] = rebuilt(layer)
        return copies[id(layer)]

    def rebuilt(layer):
        if ops.get(id(layer)) is not None:  # an op whose parameters spell a channel count
            return ops[id(layer)]
        if isinstance(layer, keras.Model):
            # Keras would rebuild a nested model on its old input width: give it the new one
            # (an input without channels, token ids of unknown length, keeps its shape).
            inputs = [
                keras.Input(batch_shape=_kept_shape(graph, t, kept), dtype=t.dtype, name=t.name)
                for t in functional_of(layer).inputs
            ]
            structure = keras.tree.pack_sequence_as(functional_of(layer).input, inputs)
            return keras.models.clone_model(layer, input_tensors=structure, clone_function=rebuild)
        if isinstance(layer, keras.layers.Wrapper) and id(weights_owner(layer)) in plans:
            # A Keras wrapper (TimeDistributed) around a shrunk layer: the same wrapper
            # around the shrunk layer.
            plan = plans[id(weights_owner(layer))]
            inner = modelwalk.clone_layer(plan.layer, plan.config, plan.layer_class)
            config = {**layer.get_config(), "layer": keras.saving.serialize_keras_object(inner)}
            return modelwalk.clone_layer(layer, config)
        if id(layer) not in plans:
            return modelwalk.copy_layer(layer)
        plan = plans[id(layer)]
        return modelwalk.clone_layer(layer, plan.config, plan.layer_class)

    small = keras.models.clone_model(model, clone_function=rebuild)
    _set_weights(model, small, plans)
    cuts = {
        (plan.layer.name, position): cut
        for plan in plans.values()
        for position, cut in plan.cuts.items()
    }
    return small, cuts


def _resized(graph, call, kept):
    """An op whose output keeps fewer channels, with its shape parameter rewritten (a
    reshape into heads); `None` where nothing changes or nothing spells the count."""
    out = call.outputs[0]
    width = graph.width(out)
    if not width or len(kept[id(out)]) == width:
        return None
    return registry.resized_op(call.layer, graph.axis(out), len(kept[id(out)]))


def _kept_shape(graph, tensor, kept) -> tuple:
    """`tensor`'s shape with only its kept channels on its channel axis."""
    shape = list(tensor.shape)
    if graph.width(tensor):
        shape[graph.axis(tensor)] = len(kept[id(tensor)])
    return tuple(shape)


def _set_weights(source, target, plans):
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        if not layer.weights:
            continue
        twin = by_name[layer.name]
        if isinstance(layer, keras.Model):
            _set_weights(layer, twin, plans)
            continue
        plan = plans.get(id(layer)) or plans.get(id(weights_owner(layer)))
        if plan is not None:
            # In the layer's order: unnamed weights get fresh names in the clone. A bias
            # that folding added comes last, after the kernel, as Keras creates it.
            twin.set_weights(list(plan.weights.values()))
        else:
            twin.set_weights(layer.get_weights())
