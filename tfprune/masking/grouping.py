"""Channel groups of a pruned model, as units that filter pruning keeps or removes whole.

A group (see `tfprune.graph`) ties the filters of every producer that writes the same
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
from tfprune.layers import registry
from tfprune.masking.wrappers import ChannelMaskWrapper, PruneWrapper


@dataclasses.dataclass
class Group:
    """One channel group of a pruned model."""

    root: object
    members: list = dataclasses.field(default_factory=list)  # (PruneWrapper, filter index)
    followers: list = dataclasses.field(default_factory=list)  # (ChannelMaskWrapper, channel)
    blocked: str | None = None  # why it cannot be pruned, if it cannot

    @property
    def prunable(self) -> bool:
        return self.blocked is None and bool(self.members)


def _block(group, reason):
    if group.blocked is None:
        group.blocked = reason


def channel_groups(model, graph: ChannelGraph | None = None) -> list[Group]:
    """The groups of `model` that contain at least one wrapped filter.

    Args:
        model: a model returned by `tfprune.prune` with filter granularity.
        graph: its `ChannelGraph`, if already built.

    Returns:
        A list of `Group`s; those with `prunable` False keep their filters (pinned, or a
        producer in the group is not wrapped).
    """
    graph = graph or ChannelGraph(model)
    groups = {}

    def group(root):
        return groups.setdefault(root, Group(root))

    for call in graph.calls():
        spec = call.rule
        if isinstance(spec, registry.LayerSpec):
            out = call.outputs[0]
            for c in range(out.shape[-1]):
                g = group(graph.root(out, c))
                if isinstance(call.layer, PruneWrapper):
                    g.members.append((call.layer, c))
                else:
                    _block(
                        g,
                        f"'{weights_owner(call.layer).name}' writes this channel and is not pruned",
                    )
        elif isinstance(call.layer, ChannelMaskWrapper):
            tensor = call.inputs[0]
            for c in range(tensor.shape[-1]):
                group(graph.root(tensor, c)).followers.append((call.layer, c))
    for root, g in groups.items():
        if graph.is_pinned(root):
            _block(g, graph.pinned[root])
    return [g for g in groups.values() if g.members]


class StructuralFlops:
    """FLOPs of the model that `shrink` would build if some groups were removed.

    Precomputes, for every convolution and dense layer, which group each of its input and
    output channels belongs to, so that evaluating a candidate set of groups is a few
    NumPy sums.

    Args:
        graph: the model's `ChannelGraph`.
        groups: the groups that may be removed (their order defines group indices).

    Example:

    >>> sf = StructuralFlops(graph, groups)
    >>> sf(np.zeros(len(groups), bool)) == tfprune.count_flops(model)
    True
    """

    def __init__(self, graph: ChannelGraph, groups: list[Group]):
        index = {g.root: i for i, g in enumerate(groups)}
        self.n_groups = len(groups)
        self.terms = []  # (flops, [(group ids of a sliced axis, axis size)])
        seen = set()
        for call in graph.calls():
            layer, spec = weights_owner(call.layer), call.rule
            if not isinstance(spec, registry.LayerSpec) or id(layer) in seen:
                continue
            seen.add(id(layer))

            def ids(tensor):
                return np.array(
                    [index.get(graph.root(tensor, c), -1) for c in range(tensor.shape[-1])]
                )

            in_ids, out_ids = ids(call.inputs[0]), ids(call.outputs[0])
            for name, _ in spec.flops_weights:
                positions = flops.weight_positions(layer, call.layer, name) or 0
                size = math.prod(registry.variable(layer, name).shape)
                axes = []
                for weight, _, role in spec.slices:
                    if weight == name:
                        axes.append(out_ids if role == "out" else in_ids)
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
