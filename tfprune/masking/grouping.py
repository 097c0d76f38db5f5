"""Channel groups of a pruned model, as units that filter pruning keeps or removes whole.

A group (see `tfprune.graph.channel_graph`) ties the filters of every producer that writes the same
channel (the convolutions meeting at a residual Add, a depthwise filter and its input) and
the BN channels they pass through. Pruning a group masks all of them at once, so the
channel becomes exactly zero and `shrink` can remove it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfprune.core.modelwalk import weights_owner
from tfprune.graph import flops
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.latency import LatencyTable, calibrated, model_probes
from tfprune.layers import registry
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import LayerSpec
from tfprune.masking.wrappers import ChannelMaskWrapper, PruneWrapper


@dataclasses.dataclass
class Group:
    """One channel group of a pruned model.

    Attributes:
        root: the group's id in the `ChannelGraph`.
        members: `(PruneWrapper, filter index)` pairs that write the channel.
        followers: `(ChannelMaskWrapper, channel)` pairs it passes through.
        blocked: why it cannot be pruned, or `None`.

    Example:

    >>> group = Group(root=("tensor", 0))
    >>> group.prunable  # no filter writes it yet
    False
    """

    root: object
    members: list = dataclasses.field(default_factory=list)
    followers: list = dataclasses.field(default_factory=list)
    blocked: str | None = None

    @property
    def prunable(self) -> bool:
        """Whether filter pruning may remove the group: nothing blocks it and it has filters."""
        return self.blocked is None and bool(self.members)


def _block(group, reason):
    if group.blocked is None:
        group.blocked = reason


def channel_groups(model, graph: ChannelGraph | None = None, wrappers=None) -> list[Group]:
    """The groups of `model` that contain at least one wrapped filter.

    Args:
        model: a model returned by `tfprune.prune` with filter granularity.
        graph: its `ChannelGraph`, if already built. Defaults to `None` (built here).
        wrappers: the wrappers of one pruning policy; filters of other wrappers count as
            not pruned. Defaults to `None`: every wrapper.

    Returns:
        A list of `Group`s; those with `prunable` False keep their filters (pinned, or a
        producer in the group is not wrapped).

    Example:

    >>> inputs = keras.Input((6, 6, 3))
    >>> a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    >>> b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    >>> x = keras.layers.Conv2D(2, 1, name="head")(keras.layers.Add()([a, b]))
    >>> groups = channel_groups(tfprune.prune(keras.Model(inputs, x), layers=["a", "b"]))
    >>> len(groups), [len(g.members) for g in groups]  # a and b write each channel together
    (4, [2, 2, 2, 2])
    """
    graph = graph or ChannelGraph(model)
    groups = {}
    ours = None if wrappers is None else {id(w) for w in wrappers}

    def pruned_here(layer) -> bool:
        return isinstance(layer, PruneWrapper) and (ours is None or id(layer) in ours)

    def group(root):
        return groups.setdefault(root, Group(root))

    for call in graph.calls():
        spec = call.rule
        units = registry.unit_count(weights_owner(call.layer))
        if units and pruned_here(call.layer):
            # Heads of an attention layer: each is a group of its own, tied to no channel.
            for unit in range(units):
                group(("unit", id(call.layer), unit)).members.append((call.layer, unit))
        elif isinstance(spec, LayerSpec):
            out = call.outputs[0]
            for c in range(graph.width(out)):
                g = group(graph.root(out, c))
                if pruned_here(call.layer):
                    g.members.append((call.layer, c))
                else:
                    _block(
                        g,
                        f"'{weights_owner(call.layer).name}' writes this channel and is not pruned"
                        + (" with this policy" if isinstance(call.layer, PruneWrapper) else ""),
                    )
        elif isinstance(call.layer, ChannelMaskWrapper):
            tensor = call.inputs[0]
            for c in range(graph.width(tensor)):
                group(graph.root(tensor, c)).followers.append((call.layer, c))
    for root, g in groups.items():
        if graph.is_pinned(root):
            _block(g, graph.pinned[root])
    return [g for g in groups.values() if g.members]


def _counted_or_zero(call):
    try:
        return flops.call_flops(call)
    except ValueError:  # a custom layer that cannot be traced: count_flops warns of it
        return 0, {}


def _group_ids(graph, index, tensor) -> np.ndarray:
    """The group index of each channel of `tensor` (-1 for channels no group removes)."""
    return np.array([index.get(graph.root(tensor, c), -1) for c in range(graph.width(tensor))])


class StructuralFlops:
    """FLOPs of the model that `shrink` would build if some groups were removed.

    Precomputes, for every convolution and dense layer, which group each of its input and
    output channels belongs to, so that evaluating a candidate set of groups is a few
    NumPy sums.

    Args:
        graph: the model's `ChannelGraph`.
        groups: the groups that may be removed (their order defines group indices).

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))
    >>> pruned = tfprune.prune(model, layers=["conv"])
    >>> graph = ChannelGraph(pruned)
    >>> groups = [g for g in channel_groups(pruned, graph) if g.prunable]
    >>> structural = StructuralFlops(graph, groups)
    >>> bool(structural(np.zeros(len(groups), bool)) == tfprune.count_flops(model))
    True
    >>> float(structural(np.arange(8) < 4) / tfprune.count_flops(model))  # half the filters
    0.5
    """

    def __init__(self, graph: ChannelGraph, groups: list[Group]):
        index = {g.root: i for i, g in enumerate(groups)}
        self.n_groups = len(groups)
        self.terms = []  # (flops, [(group ids of a sliced axis, axis size)])
        seen = set()
        for call in graph.calls():
            layer, spec = weights_owner(call.layer), call.rule
            units = registry.unit_count(layer)
            if units and id(layer) not in seen:
                seen.add(id(layer))
                # A unit's FLOPs go with it; the rest of the layer (if any) stays.
                heads = np.array([index.get(("unit", id(call.layer), u), -1) for u in range(units)])
                per_unit = flops.unit_flops(layer, call.layer) or 0
                self.terms.append((float(per_unit * units), [heads]))
                self.terms.append((float(flops.fixed_flops(layer, call.layer)), []))
                continue
            if spec is None and registry.spec_for(layer) is not None and id(layer) not in seen:
                # A prunable layer the graph pins whole (a barrier): its FLOPs stay.
                seen.add(id(layer))
                self.terms.append((float(flops.layer_flops(layer, call.layer) or 0), []))
            if not isinstance(spec, LayerSpec) or registry.call_flops_rule(layer):
                # Each call: a reversed embedding's product is its second call's.
                self._add_call_terms(graph, index, call)
            if not isinstance(spec, LayerSpec) or id(layer) in seen:
                continue
            seen.add(id(layer))

            in_ids = _group_ids(graph, index, call.inputs[0])
            out_ids = _group_ids(graph, index, call.outputs[0])
            # A Bidirectional layer's FLOPs are its directions', each on its own units.
            members = spec.members.of(layer) if spec.members else [(layer, None)]
            for member, filters in members:
                member_out = out_ids if filters is None else out_ids[filters]
                self._add_terms(member, call.layer, registry.spec_for(member), in_ids, member_out)

    def _add_call_terms(self, graph, index, call):
        """A product of tensors (a traced attention's scores) or a custom layer left whole:
        its FLOPs, going with the channels of its output (heads) where it has any."""
        extra, _ = _counted_or_zero(call)
        if extra:
            out = call.outputs[0]
            axes = [_group_ids(graph, index, out)] if graph.width(out) else []
            self.terms.append((float(extra), axes))

    def _add_terms(self, layer, node_layer, spec, in_ids, out_ids):
        """One term per FLOPs weight of a layer: its dense FLOPs and the group ids of the axes
        that removal slices (see `LayerSpec.slices`)."""
        for name, _ in spec.flops_weights:
            positions = flops.weight_positions(layer, node_layer, name) or 0
            size = math.prod(named_variable(layer, name).shape)
            axes = []
            for weight, _, role in spec.slices:
                if weight == name:
                    axes.append(out_ids if role in ("out", "out_gates") else in_ids)
            self.terms.append((2.0 * size * positions, axes))

    def group_costs(self) -> np.ndarray:
        """First-order FLOPs each group removes alone (its channels' share of every layer)."""
        costs = np.zeros(self.n_groups)
        for dense, axes in self.terms:
            for ids in axes:
                known = ids[ids >= 0]
                costs += dense * np.bincount(known, minlength=self.n_groups) / ids.size
        return costs

    def __call__(self, removed: np.ndarray) -> float:
        """FLOPs after removing the groups where `removed` is True."""
        padded = np.append(removed, False)  # index -1 (no group) is never removed
        total = 0.0
        for dense, axes in self.terms:
            ratio = 1.0
            for ids in axes:
                ratio *= (~padded[ids]).sum() / ids.size
            total += dense * ratio
        return total


class StructuralLatency:
    """Predicted LiteRT latency of the model `shrink` would build if some groups were removed.

    `StructuralFlops`' interface, with a `tfprune.LatencyTable` in place of FLOPs: every layer
    the table covers costs its entry at the widths left to it, and the sum is calibrated by
    the table's `scale` and `fixed_us`. Layers the table does not cover do not change (they
    are in `fixed_us`).

    Args:
        graph: the model's `ChannelGraph`.
        groups: the groups that may be removed (their order defines group indices).
        table: the `LatencyTable`, with an entry for every covered layer of the model.

    Raises:
        ValueError: if the table has no entry for one of the model's layers.

    Example:

    >>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(2, activation="softmax", name="head")])
    >>> pruned = tfprune.prune(model, layers=["fc"])
    >>> graph = ChannelGraph(pruned)
    >>> (_, fc), (_, head) = model_probes(graph)
    >>> entries = {fc.key: {"in": [6], "out": [4, 8], "us": [[5.0, 10.0]]},
    ...            head.key: {"in": [4, 8], "out": [2], "us": [[1.0], [2.0]]}}
    >>> groups = [g for g in channel_groups(pruned, graph) if g.prunable]
    >>> structural = StructuralLatency(graph, groups, LatencyTable(entries))
    >>> structural(np.zeros(8, bool)), structural(np.arange(8) < 4)  # fc 10 -> 5, head 2 -> 1
    (12.0, 6.0)
    """

    def __init__(self, graph: ChannelGraph, groups: list[Group], table: LatencyTable):
        index = {g.root: i for i, g in enumerate(groups)}
        self.n_groups = len(groups)
        self.table = table
        self.terms = []  # (probe, input group ids, output group ids)
        for call, probe in model_probes(graph):
            if probe.key not in table.entries:
                raise ValueError(
                    f"the latency table has no entry for layer '{weights_owner(call.layer).name}' "
                    f"({probe.layer_class.__name__}, input {probe.input_shape}): it was measured "
                    "on another model. Measure this one: tfprune.measure_latency_table(model)."
                )
            in_ids = _group_ids(graph, index, call.inputs[0])
            self.terms.append((probe, in_ids, _group_ids(graph, index, call.outputs[0])))

    def group_costs(self) -> np.ndarray:
        """First-order latency each group removes alone: its channels' share of the slope of
        every layer's entry near full width (never negative, whatever the noise).

        Returns:
            One latency in microseconds per group.
        """
        costs = np.zeros(self.n_groups)
        for probe, in_ids, out_ids in self.terms:
            widths = np.array([probe.in_width, probe.out_width])
            full = self.table.predict(probe.key, *widths)
            # A depthwise layer's outputs are its inputs: its one axis is the input one.
            for axis, ids in enumerate([in_ids] if probe.coupled else [in_ids, out_ids]):
                step = max(1, round(widths[axis] / 4))
                narrower = widths.copy()
                narrower[axis] = max(widths[axis] - step, 0)
                slope = max((full - self.table.predict(probe.key, *narrower)) / step, 0.0)
                costs += slope * np.bincount(ids[ids >= 0], minlength=self.n_groups)
        return costs * self.table.scale

    def __call__(self, removed: np.ndarray) -> float:
        """Predicted latency in microseconds after removing the groups where `removed` is True."""
        padded = np.append(removed, False)  # index -1 (no group) is never removed
        total = 0.0
        for probe, in_ids, out_ids in self.terms:
            total += self.table.predict(
                probe.key, int((~padded[in_ids]).sum()), int((~padded[out_ids]).sum())
            )
        return float(calibrated(self.table, total))
