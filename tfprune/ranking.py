"""From scores to masks across a model: local or global ranking, toward a sparsity or FLOPs target.

Every wrapper of one model shares a policy (set by `prune`). Units are ranked in
*families*:

- for filter pruning of a model whose channel graph can be read, a unit is a channel group
  (every filter and BN channel that writes the same channel, see `tfprune.grouping`), its
  score the members' filter scores combined by `group_reduction`, and a family the
  wrappers that share groups (one residual stage, or one plain layer);
- otherwise a unit is one wrapper's filter, weight or block, and a family is one wrapper.

`"local"` ranking prunes every family to the target; `"global"` ranks all units together,
each score divided by its family's mean. A `"sparsity"` target is the fraction of the
wrapped weights to zero; a `"flops"` target the fraction of the model's FLOPs to remove,
counted as `shrink` would leave them for groups, and from nonzero weights otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfprune import flops
from tfprune.criteria import ScoringContext
from tfprune.graph import ChannelGraph, UnionFind
from tfprune.grouping import StructuralFlops, channel_groups
from tfprune.wrappers import wrappers_of

_REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "first": lambda values: values[0]}


@dataclasses.dataclass
class _Family:
    """Units ranked together, and how to install a choice of pruned units."""

    granularity: object
    min_filters: int
    round_to: int
    unit_costs: np.ndarray
    score: object  # (ScoringContext) -> unit scores now
    already: object  # () -> bool array of units pruned before
    install: object  # (bool array of pruned units) -> None
    rate: float | None = None  # own final sparsity (layer-wise rates), else the schedule's
    layers: list = dataclasses.field(default_factory=list)  # names of the wrapped layers
    group_ids: list = dataclasses.field(default_factory=list)  # for group families: indices into the plan's groups

    @property
    def n_units(self):
        return self.unit_costs.size

    def lowest(self, n_prune: int, scores, already, order=None) -> np.ndarray:
        """Boolean vector of the units pruned when `n_prune` are asked to go (`order`:
        `pruning_order(scores, already)`, if already computed)."""
        keep = self.granularity.kept_units(self.n_units, n_prune, int(already.sum()), self.min_filters, self.round_to)
        order = pruning_order(scores, already) if order is None else order
        pruned = np.zeros(self.n_units, bool)
        pruned[order[: self.n_units - keep]] = True
        return pruned


def pruning_order(scores, already) -> np.ndarray:
    """Units in the order they go: those pruned before, then by rising score (stable)."""
    return np.argsort(np.where(already, -np.inf, scores), kind="stable")


def _element_scores(wrapper, context):
    weight = wrapper.weight_array()
    if getattr(wrapper.criterion, "uses_context", False):
        scores = wrapper.criterion(weight, wrapper.layer, context)
    else:
        scores = wrapper.criterion(weight, wrapper.layer)
    scores = np.asarray(scores, np.float64)
    if scores.shape != weight.shape:
        raise ValueError(
            f"Criterion {wrapper.criterion!r} returned scores of shape {scores.shape} for layer "
            f"'{wrapper.layer.name}', whose weight has shape {weight.shape}; return one score per weight."
        )
    return scores


def _wrapper_family(wrapper, by_flops: bool) -> _Family:
    g, spec = wrapper.granularity, wrapper.spec
    shape = tuple(wrapper.pruned_variable.shape)
    n_units = g.unit_scores(np.zeros(shape), spec).size
    cost = float(g.unit_size(shape, spec))
    if by_flops:
        cost *= 2.0 * (flops.weight_positions(wrapper.layer, wrapper, spec.weight) or 0)

    def install(pruned):
        canonical_shape = spec.to_canonical(np.zeros(shape)).shape
        keep = spec.from_canonical(g.expand(~pruned, canonical_shape), shape)
        wrapper.assign_mask(keep * wrapper.mask_array())

    return _Family(
        g,
        wrapper.min_filters,
        wrapper.round_to,
        np.full(n_units, cost),
        score=lambda context: g.unit_scores(_element_scores(wrapper, context), spec),
        already=lambda: g.pruned_units(wrapper.mask_array(), spec),
        install=install,
        rate=wrapper.rate,
        layers=[wrapper.layer.name],
    )


def _group_families(groups, structural, by_flops: bool, reduction: str) -> list[_Family]:
    """Families of channel groups: wrappers linked by shared groups are ranked together."""
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
        sizes = {
            id(w): w.granularity.unit_size(tuple(w.pruned_variable.shape), w.spec) for w in wrappers.values()
        }
        if by_flops:
            costs = structural.group_costs()[indices]
        else:
            costs = np.array([sum(sizes[id(w)] for w, _ in g.members) for g in members], float)
        families.append(_group_family(members, wrappers, first, costs, reduction, indices))
    return families


def _group_family(members, wrappers, first, costs, reduction, indices) -> _Family:
    combine = _REDUCTIONS[reduction]

    def score(context):
        per_wrapper = {
            key: w.granularity.unit_scores(_element_scores(w, context), w.spec) for key, w in wrappers.items()
        }
        return np.array([combine(np.array([per_wrapper[id(w)][f] for w, f in g.members])) for g in members])

    def already():
        masks = {key: w.granularity.pruned_units(w.mask_array(), w.spec) for key, w in wrappers.items()}
        return np.array([all(masks[id(w)][f] for w, f in g.members) for g in members])

    def install(pruned):
        keep = {key: ~w.granularity.pruned_units(w.mask_array(), w.spec) for key, w in wrappers.items()}
        channel_keep = {}
        for g, gone in zip(members, pruned):
            if not gone:
                continue
            for w, f in g.members:
                keep[id(w)][f] = False
            for follower, c in g.followers:
                if id(follower) not in channel_keep:
                    channel_keep[id(follower)] = (follower, follower.mask_array().copy())
                channel_keep[id(follower)][1][c] = 0
        for key, w in wrappers.items():
            shape = tuple(w.pruned_variable.shape)
            canonical_shape = w.spec.to_canonical(np.zeros(shape)).shape
            w.assign_mask(w.spec.from_canonical(w.granularity.expand(keep[key], canonical_shape), shape))
        for follower, mask in channel_keep.values():
            follower.assign_channel_mask(mask)

    rates = [w.rate for w in wrappers.values() if w.rate is not None]
    rate = max(rates) if rates else None
    names = [w.layer.name for w in wrappers.values()]
    return _Family(first.granularity, first.min_filters, first.round_to, costs, score, already, install, rate, names, indices)


class PruningPlan:
    """Everything needed to turn schedule targets into masks for one pruned model.

    Built once per training run (it reads the channel graph); `apply` recomputes scores
    from the current weights each time.

    Args:
        model: a model returned by `tfprune.prune`.

    Raises:
        ValueError: if the model has no `PruneWrapper`s, or they disagree on the policy.

    Example:

    >>> plan = PruningPlan(pruned)
    >>> plan.apply(0.5)
    >>> plan.removed()
    0.5
    """

    def __init__(self, model):
        # A training wrapper (AdversarialTraining) prunes the functional model it holds.
        model = getattr(model, "inner_model", model)
        self.model = model
        #: Calibration data `(x, y)` for criteria that need it (Taylor); set by the callback.
        self.data = None
        self.wrappers = wrappers_of(model)
        if not self.wrappers:
            raise ValueError(
                f"model '{model.name}' has no PruneWrapper layers. Pass it through tfprune.prune(model, ...) "
                "and train the returned model."
            )
        policy = self.wrappers[0]
        for wrapper in self.wrappers[1:]:
            if (wrapper.schedule, wrapper.ranking, wrapper.target, str(wrapper.granularity)) != (
                policy.schedule,
                policy.ranking,
                policy.target,
                str(policy.granularity),
            ):
                raise ValueError(
                    f"layer '{wrapper.layer.name}' has a different schedule, ranking, target or granularity "
                    f"than '{policy.layer.name}'. Prune a model with one tfprune.prune call."
                )
        self.schedule, self.ranking, self.target = policy.schedule, policy.ranking, policy.target
        self.granularity = policy.granularity
        self.by_flops = self.target == "flops"
        self.total_flops = float(flops.count_flops(model)) if self.by_flops else None
        self.structural = None
        self.groups = []
        if policy.granularity.structured:
            graph = ChannelGraph(model)
            self.groups = [g for g in channel_groups(model, graph) if g.prunable]
            self.structural = StructuralFlops(graph, self.groups)
            self.families = _group_families(self.groups, self.structural, self.by_flops, policy.group_reduction)
        else:
            self.families = [_wrapper_family(w, self.by_flops) for w in self.wrappers]
        if self.by_flops:
            self.denominator = self.total_flops
        else:
            self.denominator = float(sum(w.mask_array().size for w in self.wrappers))

    # --------------------------------------------------------------- selection
    def _family_sparsity(self, family, sparsity):
        """A family with its own rate reaches it as the schedule reaches its final target."""
        if family.rate is None:
            return sparsity
        final = self.schedule.final_target
        return min(family.rate * sparsity / final, 1.0 - 1e-9) if final > 0 else 0.0

    def _local(self, sparsity, scored, orders):
        return [
            f.lowest(int(math.floor(self._family_sparsity(f, sparsity) * f.n_units + 1e-9)), s, a, o)
            for f, (s, a), o in zip(self.families, scored, orders)
        ]

    def _ranked_steps(self, scored, orders):
        """Every family's steps, ranked together: `(score, family index, units, cost)`
        arrays, lowest score first."""
        steps = [
            self._family_steps(index, family, scores, already, order)
            for index, (family, (scores, already), order) in enumerate(zip(self.families, scored, orders))
        ]
        columns = [np.concatenate([s[k] for s in steps]) for k in range(4)]
        # Stable: a family's steps stay in order (their mean scores never decrease).
        ranked = np.argsort(columns[0], kind="stable")
        return tuple(column[ranked] for column in columns)

    def _global(self, goal, ranked, scored, orders):
        score, family_of, size, cost = ranked
        taken = _greedy(score, family_of, cost, goal, len(self.families))
        counts = np.bincount(family_of[taken], weights=size[taken], minlength=len(self.families)).astype(np.int64)
        return [f.lowest(int(n), s, a, o) for f, n, (s, a), o in zip(self.families, counts, scored, orders)]

    def _family_steps(self, index, family, scores, already, order):
        """One family's steps in pruning `order`: `(mean normalised score, family index,
        units, cost)` arrays; steps of units pruned before score -inf (they always go)."""
        alive = scores[~already]
        scale = alive.mean() if alive.size and alive.mean() > 0 else 1.0
        normalised = np.where(already, -np.inf, scores / scale)
        starts, stops = self._steps(family, int(already.sum()))
        cumulative_cost = np.concatenate([[0.0], np.cumsum(family.unit_costs[order])])
        cumulative_score = np.concatenate([[0.0], np.cumsum(np.where(already, 0.0, normalised)[order])])
        sizes = stops - starts
        forced = np.concatenate([[0], np.cumsum(already[order])])
        all_forced = forced[stops] - forced[starts] == sizes
        means = np.where(all_forced, -np.inf, (cumulative_score[stops] - cumulative_score[starts]) / np.maximum(sizes, 1))
        return means, np.full(sizes.size, index), sizes, cumulative_cost[stops] - cumulative_cost[starts]

    @staticmethod
    def _steps(family, n_already):
        """`(starts, stops)` of a family's units in pruning order that keep its safeguards:
        the units pruned before first, then steps that leave a multiple of `round_to`
        (structured) and at least the floor of units."""
        floor = max(1, family.min_filters if family.granularity.structured else 1)
        step = family.round_to if family.granularity.structured else 1
        keep = family.n_units - n_already
        first = (keep - 1) // step * step if step > 1 else keep - 1
        stops = family.n_units - np.arange(first, floor - 1, -step, dtype=np.int64)
        if n_already:
            stops = np.concatenate([[n_already], stops])
        return np.concatenate([[0], stops])[:-1].astype(np.int64), stops.astype(np.int64)

    def _removed(self, selection) -> float:
        """Fraction removed by a selection, in the target's unit."""
        if self.by_flops and self.structural is not None:
            chosen = np.zeros(len(self.groups), bool)
            for family, pruned in zip(self.families, selection):
                chosen[np.asarray(family.group_ids, dtype=np.int64)[pruned]] = True
            return 1.0 - self.structural(chosen) / self.total_flops
        return sum(float(f.unit_costs[p].sum()) for f, p in zip(self.families, selection)) / self.denominator

    def _search(self, select, target):
        """Bisect a monotone selection parameter for the removal closest to `target`."""
        low, high = 0.0, 1.0 - 1e-9
        if self._removed(select(high)) < target:
            return select(high)
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if self._removed(select(mid)) < target else (low, mid)
        below, above = select(low), select(high)
        return below if target - self._removed(below) < self._removed(above) - target else above

    def select(self, target: float):
        """Which units each family prunes for `target` (nothing is installed)."""
        context = ScoringContext(self.model, self.data)
        scored = [(f.score(context), f.already()) for f in self.families]
        # Sorted and ranked once: a FLOPs search tries up to 40 selections from the same scores.
        orders = [pruning_order(scores, already) for scores, already in scored]
        exact_additive = not (self.by_flops and self.structural is not None)
        if self.ranking == "global":
            ranked = self._ranked_steps(scored, orders)
            if exact_additive:
                return self._global(target * self.denominator, ranked, scored, orders)
            return self._search(lambda p: self._global(p * self.denominator * 2, ranked, scored, orders), target)
        if not self.by_flops:
            return self._local(target, scored, orders)
        return self._search(lambda p: self._local(p, scored, orders), target)

    def apply(self, target: float) -> None:
        """Recompute scores and install the masks for `target`."""
        if self.granularity.supports_global is False:  # N:M: every group of every layer alike
            context = ScoringContext(self.model, self.data)
            for wrapper in self.wrappers:
                wrapper.assign_mask(
                    wrapper.granularity.mask(_element_scores(wrapper, context), wrapper.mask_array(), target, wrapper.spec)
                )
            return
        if getattr(self.wrappers[0].criterion, "sequential", False):
            # Forward mode: each family is scored after the ones before it were pruned.
            for family in self.families:
                scores = family.score(ScoringContext(self.model, self.data))
                n_prune = int(math.floor(self._family_sparsity(family, target) * family.n_units + 1e-9))
                family.install(family.lowest(n_prune, scores, family.already()))
            return
        for family, pruned in zip(self.families, self.select(target)):
            family.install(pruned)

    def removed(self) -> float:
        """What the current masks remove, in the target's unit."""
        return self._removed([f.already() for f in self.families])

    def max_removable(self) -> float:
        """The largest target the safeguards allow."""
        scored = [(np.zeros(f.n_units), np.zeros(f.n_units, bool)) for f in self.families]
        return self._removed(self._local(1.0 - 1e-9, scored, [np.arange(f.n_units) for f in self.families]))


def _greedy(score, family_of, cost, goal, n_families) -> np.ndarray:
    """Which of the sorted steps are taken. Steps pruned before (score -inf) always go;
    others only while they bring the removal closer to `goal`. A step that would overshoot
    closes its family, and cheaper steps of other families may still fill the gap (this is
    what lets coarse `round_to` families and fine ones share a FLOPs target).

    Vectorised between closings: at most one pass over the steps per family.
    """
    taken = np.zeros(score.size, bool)
    closed = np.zeros(n_families, bool)
    removed, position = 0.0, 0
    while position < score.size:
        open_steps = ~closed[family_of[position:]]
        costs = np.where(open_steps, cost[position:], 0.0)
        before = removed + np.concatenate([[0.0], np.cumsum(costs)[:-1]])
        overshoots = open_steps & (score[position:] != -np.inf) & (before + costs - goal > goal - before)
        if not overshoots.any():
            taken[position:] = open_steps
            break
        hit = int(np.argmax(overshoots))
        taken[position : position + hit] = open_steps[:hit]
        removed = float(before[hit])
        closed[family_of[position + hit]] = True
        position += hit + 1
        # Nothing is taken from here on unless some open step still fits in the gap (the
        # usual end of unit-step ranking: every family closes in turn, a pass each).
        rest = cost[position:][~closed[family_of[position:]]]
        if not (removed + rest - goal <= goal - removed).any():
            break
    return taken


def apply_target(model, target: float, data=None) -> PruningPlan:
    """Install the masks of a pruned model for one target, now (what the callback does).

    Args:
        model: a model returned by `tfprune.prune`.
        target: in [0, 1), in the unit of the model's policy (`"sparsity"` or `"flops"`).
        data: `(x, y)` calibration examples, for criteria that need them (`"taylor"`).

    Returns:
        The `PruningPlan` used, for further queries.

    Example:

    >>> apply_target(pruned, 0.5).removed()
    0.5
    """
    plan = PruningPlan(model)
    plan.data = data
    plan.apply(target)
    return plan
