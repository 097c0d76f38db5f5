"""Families: the units one ranking decision covers, and how a decision becomes masks.

- For filter pruning of a model whose channel graph can be read, a unit is a channel group
  (every filter and BN channel that writes the same channel, see `tfprune.masking.grouping`),
  its score the members' filter scores combined by `group_reduction`, and a family the
  wrappers that share groups (one residual stage, or one plain layer);
- otherwise a unit is one wrapper's filter, weight or block, and a family is one wrapper.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.core.unionfind import UnionFind
from tfprune.graph import flops
from tfprune.graph.latency import DEFAULT_TILE, auto_multiple


@dataclasses.dataclass
class Family:
    """Units ranked together, and how to install a choice of pruned units.

    Attributes:
        granularity: the wrappers' `Granularity`.
        min_filters: the fewest filters a structured mask keeps.
        round_to: structured masks keep a multiple of this many filters.
        unit_costs: what removing each unit removes (weights, or FLOPs).
        score: `(ScoringContext) -> unit scores` from the current weights.
        already: `() -> boolean vector` of the units pruned before.
        install: `(boolean vector of pruned units) -> None`, which sets the masks.
        rate: the family's own final sparsity (layer-wise rates), else `None`.
        layers: names of the wrapped layers.
        group_ids: for group families, indices into the plan's groups.
        refinable: `round_to` came from `"auto"`, so the ranking may go down to single
            filters where a target needs it.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> (wrapper,) = tfprune.wrappers_of(tfprune.prune(model, schedule=0.5))
    >>> family = wrapper_family(wrapper, by_flops=False)
    >>> family.n_units, family.layers
    (8, ['fc'])
    """

    granularity: object
    min_filters: int
    round_to: int
    unit_costs: np.ndarray
    score: object
    already: object
    install: object
    rate: float | None = None
    layers: list = dataclasses.field(default_factory=list)
    group_ids: list = dataclasses.field(default_factory=list)
    refinable: bool = False

    @property
    def n_units(self):
        """The number of units."""
        return self.unit_costs.size

    def lowest(self, n_prune: int, scores, already, order=None) -> np.ndarray:
        """The units pruned when `n_prune` are asked to go, within the safeguards.

        Args:
            n_prune: how many units to prune.
            scores: one score per unit.
            already: which units were pruned before (they stay pruned).
            order: `pruning_order(scores, already)`, if already computed. Defaults to `None`.

        Returns:
            A boolean vector, True where a unit is pruned.
        """
        keep = self.granularity.kept_units(
            self.n_units, n_prune, int(already.sum()), self.min_filters, self.round_to
        )
        if order is None:
            return first_in_order(scores, already, self.n_units - keep)
        pruned = np.zeros(self.n_units, bool)
        pruned[order[: self.n_units - keep]] = True
        return pruned

    def snap_options(self, pruned, scores, already) -> list:
        """The selections that move `pruned`'s kept count to a multiple of `round_to`, up
        (more filters kept, same tiles) then down, within the safeguards.

        Args:
            pruned: a boolean vector of pruned units, chosen filter by filter in pruning
                order (`lowest`).
            scores: one score per unit.
            already: which units were pruned before (they stay pruned).

        Returns:
            A list of one or two boolean vectors; `[pruned]` if it keeps a multiple already
            or no multiple is allowed.
        """
        keep = self.n_units - int(pruned.sum())
        multiple = self.round_to
        if multiple <= 1 or not self.granularity.structured or keep % multiple == 0:
            return [pruned]
        floor = max(1, self.min_filters)
        ceiling = self.n_units - int(already.sum())  # pruned units never come back
        counts = [
            k
            for k in (-(-keep // multiple) * multiple, keep // multiple * multiple)
            if floor <= k <= ceiling
        ]
        return [first_in_order(scores, already, self.n_units - k) for k in counts] or [pruned]

    def nearest_snap(self, pruned, scores, already) -> np.ndarray:
        """Of `snap_options`, the one whose kept count is nearest `pruned`'s (up on a tie).

        Args:
            pruned: a boolean vector of pruned units, chosen filter by filter.
            scores: one score per unit.
            already: which units were pruned before.

        Returns:
            A boolean vector, True where a unit is pruned.
        """
        wanted = int(pruned.sum())
        options = self.snap_options(pruned, scores, already)
        return min(options, key=lambda p: abs(int(p.sum()) - wanted))


def family_multiple(wrapper, n_units: int) -> tuple[int, bool]:
    """The multiple a family of `n_units` keeps, from its (first) wrapper's `round_to`.

    Args:
        wrapper: a `PruneWrapper`; its `round_to` is a number or `"auto"`.
        n_units: the family's filters or channel groups.

    Returns:
        `(multiple, refinable)`: `"auto"` gives `auto_multiple(n_units, tile)`, the tile the
        wrapper's latency table measured (else `DEFAULT_TILE`), and is refinable; but a layer
        with its own rate (`prune(rates=...)`) keeps that rate exactly, and units inside a
        layer (heads, a block's feed-forward units) go one by one.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64), keras.layers.Dense(2)])
    >>> (wrapper,) = tfprune.wrappers_of(tfprune.prune(model, round_to="auto"))
    >>> family_multiple(wrapper, 64)
    (16, True)
    """
    if wrapper.round_to != "auto":
        return wrapper.round_to, False
    if wrapper.rate is not None or wrapper.spec.units is not None:
        return 1, False  # units inside a layer (attention heads) are not channel tiles
    table = wrapper.latency_table
    return auto_multiple(n_units, table.tile if table is not None else DEFAULT_TILE), True


def pruning_order(scores, already) -> np.ndarray:
    """Units in the order they go: those pruned before, then by rising score (stable).

    Args:
        scores: one score per unit.
        already: a boolean vector of the units pruned before.

    Returns:
        Unit indices.

    Example:

    >>> pruning_order(np.array([0.5, 0.1, 0.9]), np.array([False, False, True]))
    array([2, 1, 0])
    """
    return np.argsort(np.where(already, -np.inf, scores), kind="stable")


def first_in_order(scores, already, count: int) -> np.ndarray:
    """The first `count` units of `pruning_order(scores, already)`, found without sorting.

    A selection (`np.partition`) finds the boundary score; ties at the boundary go by index,
    as the stable sort orders them, so the result equals the sorted one exactly.

    Args:
        scores: one score per unit.
        already: a boolean vector of the units pruned before (they come first).
        count: how many units to take.

    Returns:
        A boolean vector, True for the units taken.

    Example:

    >>> first_in_order(np.array([0.5, 0.1, 0.5, 0.9]), np.zeros(4, bool), 2).tolist()
    [True, True, False, False]
    """
    key = np.where(already, -np.inf, scores)
    taken = np.zeros(key.size, bool)
    if count <= 0:
        return taken
    if count >= key.size:
        taken[:] = True
        return taken
    boundary = np.partition(key, count - 1)[count - 1]
    taken = key < boundary
    ties = np.flatnonzero(key == boundary)[: count - int(taken.sum())]
    taken[ties] = True
    return taken


def normalised_scores(scores, already) -> np.ndarray:
    """A family's scores divided by the mean of its units not pruned before, so that global
    ranking compares families on one scale (1 if that mean is not positive).

    Args:
        scores: one score per unit.
        already: which units were pruned before.

    Returns:
        The scores, scaled.

    Example:

    >>> normalised_scores(np.array([1.0, 2.0, 3.0]), np.array([True, False, False]))
    array([0.4, 0.8, 1.2])
    """
    alive = scores[~already]
    scale = alive.mean() if alive.size and alive.mean() > 0 else 1.0
    return scores / scale


def element_scores(wrapper, context):
    """The wrapper's criterion applied to its current weight, checked for shape.

    Args:
        wrapper: a `PruneWrapper`.
        context: the `ScoringContext` of this mask update.

    Returns:
        Scores of the weight's shape, float64.

    Raises:
        ValueError: if the criterion returns another shape.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> (wrapper,) = tfprune.wrappers_of(tfprune.prune(model, schedule=0.5))
    >>> element_scores(wrapper, context=None).shape
    (4, 8)
    """
    weight = wrapper.weight_array()
    if getattr(wrapper.criterion, "uses_context", False):
        scores = wrapper.criterion(weight, wrapper.layer, context)
    else:
        scores = wrapper.criterion(weight, wrapper.layer)
    scores = np.asarray(scores, np.float64)
    if scores.shape != weight.shape:
        raise ValueError(
            f"Criterion {wrapper.criterion!r} returned scores of shape {scores.shape} for layer "
            f"'{wrapper.layer.name}', whose weight has shape {weight.shape}; return one score per "
            "weight."
        )
    return scores


def wrapper_family(wrapper, by_flops: bool) -> Family:
    """One wrapper's filters, weights or blocks, as a family of its own.

    Args:
        wrapper: a `PruneWrapper`.
        by_flops: whether unit costs are FLOPs (else weights).

    Returns:
        A `Family`.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> (wrapper,) = tfprune.wrappers_of(tfprune.prune(model, schedule=0.5))
    >>> float(wrapper_family(wrapper, by_flops=True).unit_costs[0])  # 4 weights, 2 FLOPs each
    8.0
    """
    g, spec = wrapper.granularity, wrapper.spec
    shape = wrapper.pruned_shape
    canonical_shape = spec.canonical_shape(shape)
    n_units = g.unit_count(canonical_shape)
    cost = float(g.unit_size(shape, spec))
    if by_flops:
        cost *= 2.0 * (flops.mask_positions(wrapper.layer, wrapper) or 0)

    def install(pruned):
        keep = spec.from_canonical(g.expand(~pruned, canonical_shape), shape)
        wrapper.assign_mask(keep * wrapper.mask_array())

    multiple, refinable = family_multiple(wrapper, n_units)
    return Family(
        g,
        wrapper.min_filters,
        multiple,
        np.full(n_units, cost),
        score=lambda context: g.unit_scores(element_scores(wrapper, context), spec),
        already=lambda: g.pruned_units(wrapper.mask_array(), spec),
        install=install,
        rate=wrapper.rate,
        layers=[wrapper.layer.name],
        refinable=refinable,
    )


def group_families(groups, structural, by_cost: bool, reduction: str) -> list[Family]:
    """Families of channel groups: wrappers linked by shared groups are ranked together.

    Args:
        groups: the prunable `Group`s of the model.
        structural: their `StructuralFlops` or `StructuralLatency`.
        by_cost: whether unit costs are the model cost `structural` counts (FLOPs or
            latency), else weights.
        reduction: how member scores combine: `"sum"`, `"mean"`, `"max"` or `"first"`.

    Returns:
        A list of `Family`s.

    Example:

    >>> from tfprune.graph.channel_graph import ChannelGraph
    >>> from tfprune.masking.grouping import StructuralFlops, channel_groups
    >>> inputs = keras.Input((6, 6, 3))
    >>> a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    >>> b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    >>> x = keras.layers.Conv2D(2, 1, name="head")(keras.layers.Add()([a, b]))
    >>> pruned = tfprune.prune(keras.Model(inputs, x), layers=["a", "b"])
    >>> graph = ChannelGraph(pruned)
    >>> groups = channel_groups(pruned, graph)
    >>> [f.layers for f in group_families(groups, StructuralFlops(graph, groups), False, "sum")]
    [['a', 'b']]
    """
    links = UnionFind()
    for g in groups:
        for wrapper, _ in g.members[1:]:
            links.union(id(g.members[0][0]), id(wrapper))
    by_family = {}
    for index, g in enumerate(groups):
        by_family.setdefault(links.find(id(g.members[0][0])), []).append(index)

    families = []
    for indices in by_family.values():
        members = [groups[i] for i in indices]
        wrappers = {id(w): w for g in members for w, _ in g.members}
        first = next(iter(wrappers.values()))
        sizes = {id(w): w.granularity.unit_size(w.pruned_shape, w.spec) for w in wrappers.values()}
        if by_cost:
            costs = structural.group_costs()[indices]
        else:
            costs = np.array([sum(sizes[id(w)] for w, _ in g.members) for g in members], float)
        families.append(_group_family(members, wrappers, first, costs, reduction, indices))
    return families


def _group_family(members, wrappers, first, costs, reduction, indices) -> Family:
    # Every (group, wrapper, filter) membership as flat arrays in member order: scoring,
    # reading and installing then work on arrays, not on one Python tuple per filter.
    member_group = []
    slots = {key: [] for key in wrappers}  # per wrapper: (flat index, filter)
    for position, g in enumerate(members):
        for w, f in g.members:
            slots[id(w)].append((len(member_group), f))
            member_group.append(position)
    member_group = np.asarray(member_group, np.int64)
    flat = {key: np.asarray([i for i, _ in v], np.int64) for key, v in slots.items()}
    filters = {key: np.asarray([f for _, f in v], np.int64) for key, v in slots.items()}
    sizes = np.bincount(member_group, minlength=len(members))
    first_index = np.searchsorted(member_group, np.arange(len(members)))
    # np.sum adds fewer than 8 numbers one after the other, as np.add.at does; larger groups
    # (rare) go through np.sum itself, so scores are bit for bit what summing each gives.
    large = np.flatnonzero(sizes >= 8)

    def score(context):
        values = np.zeros(member_group.size)
        for key, w in wrappers.items():
            unit = w.granularity.unit_scores(element_scores(w, context), w.spec)
            values[flat[key]] = unit[filters[key]]
        if reduction == "first":
            return values[first_index]
        if reduction == "max":
            combined = np.full(len(members), -np.inf)
            np.maximum.at(combined, member_group, values)
            return combined
        combined = np.zeros(len(members))
        np.add.at(combined, member_group, values)
        for position in large:
            combined[position] = np.sum(values[member_group == position])
        return combined / sizes if reduction == "mean" else combined

    def pruned_filters():
        return {
            key: w.granularity.pruned_units(w.mask_array(), w.spec) for key, w in wrappers.items()
        }

    def already():
        gone = np.zeros(member_group.size, bool)
        for key, pruned in pruned_filters().items():
            gone[flat[key]] = pruned[filters[key]]
        return np.bincount(member_group, weights=gone, minlength=len(members)) == sizes

    def install(pruned):
        channel_keep = {}
        for g in (g for g, gone in zip(members, pruned) if gone):
            for follower, c in g.followers:
                if id(follower) not in channel_keep:
                    current = follower.mask_array()
                    channel_keep[id(follower)] = (follower, current, current.copy())
                channel_keep[id(follower)][2][c] = 0
        for key, was_pruned in pruned_filters().items():
            w = wrappers[key]
            keep = ~was_pruned
            keep[filters[key][pruned[member_group[flat[key]]]]] = False
            if np.array_equal(keep, ~was_pruned):
                continue  # nothing new: no need to touch the weights
            shape = w.pruned_shape
            canonical_shape = w.spec.canonical_shape(shape)
            w.assign_mask(w.spec.from_canonical(w.granularity.expand(keep, canonical_shape), shape))
        for follower, current, mask in channel_keep.values():
            if not np.array_equal(mask, current):  # nothing new: no need to touch the weights
                follower.assign_channel_mask(mask)

    rates = [w.rate for w in wrappers.values() if w.rate is not None]
    rate = max(rates) if rates else None
    names = [w.layer.name for w in wrappers.values()]
    multiple, refinable = family_multiple(first, len(members))
    return Family(
        first.granularity,
        # The strictest floor of its layers (a guarded first convolution keeps half).
        max(w.min_filters for w in wrappers.values()),
        multiple,
        costs,
        score,
        already,
        install,
        rate,
        names,
        indices,
        refinable,
    )
