"""From scores to masks across a model: local or global ranking, toward a sparsity or FLOPs target.

Every wrapper of one model shares a policy (set by `prune`). Units are ranked in
*families* (`tfprune.masking.families`): channel groups for filter pruning, else each
wrapper's filters, weights or blocks.

`"local"` ranking prunes every family to the target; `"global"` ranks all units together,
each score divided by its family's mean. A `"sparsity"` target is the fraction of the
wrapped weights to zero; a `"flops"` target the fraction of the model's FLOPs to remove,
counted as `shrink` would leave them for groups, and from nonzero weights otherwise; a
`"latency"` target the fraction of the model's LiteRT latency, as a `tfprune.LatencyTable`
predicts it for the model `shrink` would build (filter pruning only).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import numpy as np

from tfprune.core import modelwalk
from tfprune.criteria.base import ScoringContext
from tfprune.graph import flops, reference
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.masking.families import (
    element_scores,
    group_families,
    normalised_scores,
    pruning_order,
    wrapper_family,
)
from tfprune.masking.grouping import StructuralFlops, StructuralLatency, channel_groups
from tfprune.masking.rounding import TOLERANCE, Rounding
from tfprune.masking.wrappers import wrappers_of


def _at_reference_size(method):
    """Run a plan's method with unknown dimensions at the plan's reference size (its
    policy's), whatever the process-wide setting is now."""

    @functools.wraps(method)
    def sized(self, *args, **kwargs):
        with reference.sized(self.reference_size):
            return method(self, *args, **kwargs)

    return sized


class PruningPlan:
    """Everything needed to turn schedule targets into masks for one pruned model.

    Built once per training run (it reads the channel graph); `apply` recomputes scores
    from the current weights each time.

    Args:
        model: a model returned by `tfprune.prune`.
        wrappers: the wrappers of one of its policies (`pruning_plans` gives one plan per
            policy). Defaults to `None`: every wrapper of the model, which must then share
            one policy.

    Raises:
        ValueError: if the model has no `PruneWrapper`s, or they disagree on the policy.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> plan = PruningPlan(tfprune.prune(model, schedule=0.5))
    >>> plan.apply(0.5)
    >>> plan.removed()
    0.5
    """

    def __init__(self, model, wrappers=None):
        # A training wrapper (AdversarialTraining) prunes the functional model it holds.
        model = modelwalk.trained_model(model)
        self.model = model
        #: Calibration data `(x, y)` for criteria that need it (Taylor); set by the callback.
        self.data = None
        self.wrappers = wrappers_of(model) if wrappers is None else list(wrappers)
        if not self.wrappers:
            raise ValueError(
                f"model '{model.name}' has no PruneWrapper layers. Pass it through "
                "tfprune.prune(model, ...) and train the returned model."
            )
        policy = self.wrappers[0]
        for wrapper in self.wrappers[1:]:
            if not same_policy(wrapper, policy):
                raise ValueError(
                    f"layer '{wrapper.layer.name}' has another policy (schedule, ranking, target, "
                    f"granularity, criterion or group reduction) than '{policy.layer.name}': the "
                    "model has several pruning policies (prune(policies=...)). PruningCallback "
                    "runs each; elsewhere use tfprune.pruning_plans(model), one plan per policy."
                )
        #: Unknown dimensions count at the size the model was pruned at, in any process.
        self.reference_size = policy.policy.reference_size
        self._prepare(model, policy)

    @_at_reference_size
    def _prepare(self, model, policy):
        """The families, their costs and the whole model's cost, at the reference size."""
        self.schedule, self.ranking, self.target = policy.schedule, policy.ranking, policy.target
        self.granularity = policy.granularity
        #: Whether the target counts a cost of the model (FLOPs, latency), not weights.
        self.by_cost = self.target in ("flops", "latency")
        self.structural = None
        self.groups = []
        if policy.granularity.structured:
            graph = ChannelGraph(model)
            self.groups = [g for g in channel_groups(model, graph, self.wrappers) if g.prunable]
            self.structural = (
                StructuralLatency(graph, self.groups, policy.latency_table)
                if self.target == "latency"
                else StructuralFlops(graph, self.groups)
            )
            self.families = group_families(
                self.groups, self.structural, self.by_cost, policy.group_reduction
            )
        else:
            self.families = [wrapper_family(w, self.by_cost) for w in self.wrappers]
        #: What the ranking sees: families of `round_to="auto"` at single filters (`select`
        #: rounds them after), the others as they are.
        self.ranked_families = [
            dataclasses.replace(f, round_to=1) if f.refinable else f for f in self.families
        ]
        #: The `round_to="auto"` families, narrowest first: their tiles are the largest share
        #: of their width, and wide layers are where whole tiles pay.
        self.refine_order = sorted(
            (i for i, f in enumerate(self.families) if f.refinable),
            key=lambda i: (self.families[i].n_units, float(self.families[i].unit_costs.sum())),
        )
        #: The model's whole cost before pruning: FLOPs, or predicted latency in microseconds.
        self.total_cost = None
        if self.by_cost and self.structural is not None:
            # What `structural` counts for the model as it is: every FLOP of count_flops (or
            # the predicted latency), so that removal is measured on one scale.
            self.total_cost = self.structural(np.zeros(len(self.groups), bool))
        elif self.by_cost:
            self.total_cost = float(flops.count_flops(model))
        if self.by_cost:
            self.denominator = self.total_cost
            _warn_of_uncounted(model, self.target)
        else:
            self.denominator = float(sum(math.prod(w.pruned_shape) for w in self.wrappers))
        # One cost for every unit of an unstructured or block policy: the global ranking can
        # then select instead of sort (`_global_units`).
        bounds = {(float(f.unit_costs.min()), float(f.unit_costs.max())) for f in self.families}
        self._unit_cost = None
        if len(bounds) == 1 and not policy.granularity.structured:
            low, high = bounds.pop()
            self._unit_cost = low if low == high else None
        self.rounding = Rounding(
            self.families,
            self.removed_by,
            self.refine_order,
            local=self.ranking == "local",
            nudge=self.by_cost and self.structural is not None,
        )

    # --------------------------------------------------------------- selection
    def _family_sparsity(self, family, sparsity):
        """A family with its own rate reaches it as the schedule reaches its final target."""
        if family.rate is None:
            return sparsity
        final = self.schedule.final_target
        return min(family.rate * sparsity / final, 1.0 - 1e-9) if final > 0 else 0.0

    def _local(self, families, sparsity, scored, orders):
        return [
            f.lowest(
                int(math.floor(self._family_sparsity(f, sparsity) * f.n_units + 1e-9)), s, a, o
            )
            for f, (s, a), o in zip(families, scored, orders)
        ]

    def _ranked_steps(self, families, scored, orders):
        """Every family's steps, ranked together: `(score, family index, units, cost)`
        arrays, lowest score first."""
        steps = [
            self._family_steps(index, family, scores, already, order)
            for index, (family, (scores, already), order) in enumerate(
                zip(families, scored, orders)
            )
        ]
        columns = [np.concatenate([s[k] for s in steps]) for k in range(4)]
        # Stable: a family's steps stay in order (their mean scores never decrease).
        ranked = np.argsort(columns[0], kind="stable")
        return tuple(column[ranked] for column in columns)

    def _global(self, families, goal, ranked, scored, orders):
        score, family_of, size, cost = ranked
        taken = greedy_selection(score, family_of, cost, goal, len(families))
        counts = np.bincount(family_of[taken], weights=size[taken], minlength=len(families)).astype(
            np.int64
        )
        return [
            f.lowest(int(n), s, a, o) for f, n, (s, a), o in zip(families, counts, scored, orders)
        ]

    def _family_steps(self, index, family, scores, already, order):
        """One family's steps in pruning `order`: `(mean normalised score, family index,
        units, cost)` arrays; steps of units pruned before score -inf (they always go)."""
        normalised = np.where(already, -np.inf, normalised_scores(scores, already))
        starts, stops = self._steps(family, int(already.sum()))
        sizes = stops - starts
        if not sizes.size:
            return np.zeros(0), np.zeros(0, np.int64), sizes, np.zeros(0)
        # Each step's own sum (not differences of running sums, which would blur a one-unit
        # step's score in its last bits, and with it the order of near ties).
        score_sums = np.add.reduceat(np.where(already, 0.0, normalised)[order], starts)
        costs = np.add.reduceat(family.unit_costs[order], starts)
        forced = np.add.reduceat(already[order].astype(np.int64), starts)
        means = np.where(forced == sizes, -np.inf, score_sums / np.maximum(sizes, 1))
        return means, np.full(sizes.size, index), sizes, costs

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

    @_at_reference_size
    def removed_by(self, selection) -> float:
        """Fraction removed by a selection, in the target's unit.

        Args:
            selection: one boolean vector of pruned units per family (as `select` returns).

        Returns:
            The fraction of weights, or of FLOPs as `shrink` would leave them.
        """
        if self.by_cost and self.structural is not None:
            chosen = np.zeros(len(self.groups), bool)
            for family, pruned in zip(self.families, selection):
                chosen[np.asarray(family.group_ids, dtype=np.int64)[pruned]] = True
            return 1.0 - self.structural(chosen) / self.total_cost
        return (
            sum(float(f.unit_costs[p].sum()) for f, p in zip(self.families, selection))
            / self.denominator
        )

    @staticmethod
    def _search(removed_at, target) -> float:
        """Bisect a monotone selection parameter for the removal closest to `target`.

        `removed_at(p)` is the removal the selection at `p` gives; returns the best `p`.
        """
        low, high = 0.0, 1.0 - 1e-9
        if removed_at(high) < target:
            return high
        for _ in range(40):
            mid = (low + high) / 2
            low, high = (mid, high) if removed_at(mid) < target else (low, mid)
        return low if target - removed_at(low) < removed_at(high) - target else high

    def _local_removed(self, families, sparsity, scored) -> float:
        """What `_local(sparsity)` removes, from unit counts alone: every family's units cost
        the same (a wrapper family), so no selection needs building to measure it."""
        total = 0.0
        for family, (_, already) in zip(families, scored):
            n_prune = int(
                math.floor(self._family_sparsity(family, sparsity) * family.n_units + 1e-9)
            )
            keep = family.granularity.kept_units(
                family.n_units, n_prune, int(already.sum()), family.min_filters, family.round_to
            )
            total += float(family.unit_costs[0]) * (family.n_units - keep)
        return total / self.denominator

    @_at_reference_size
    def select(self, target: float):
        """Which units each family prunes for `target` (nothing is installed).

        Families whose multiple came from `round_to="auto"` are ranked filter by filter, so
        that the balance between layers is the one fine steps give, then rounded to their
        multiples (`tfprune.masking.rounding.Rounding.rounded`): coarse where a layer is
        wide, fine where the target needs it. With global ranking toward a cost, an update
        that would leave the schedule's final target out of reach trades a coarse unit for
        finer ones (`Rounding.keeping_final_reachable`).

        Args:
            target: in [0, 1), in the policy's unit.

        Returns:
            One boolean vector of pruned units per family, in `families` order.
        """
        context = ScoringContext(self.model, self.data, keep=self.unit_keep(target))
        scored = [(f.score(context), f.already()) for f in self.families]
        selection = self._rounded(target, scored)
        if self.ranking == "global" and self.by_cost:
            selection = self.rounding.keeping_final_reachable(
                selection, target, self.schedule.final_target, scored, self._rounded
            )
        return selection

    def _rounded(self, target, scored):
        """`select` for given scores: ranked filter by filter, then rounded to the
        families' multiples (`tfprune.masking.rounding`)."""
        chosen = self._select(self.ranked_families, target, scored)
        return self.rounding.rounded(chosen, target, scored)

    def _select(self, families, target, scored):
        """`select` with the given families' multiples."""
        exact_additive = not (self.by_cost and self.structural is not None)
        if self.ranking == "global" and exact_additive and self._unit_cost is not None:
            return self._global_units(target * self.denominator, scored)
        unsorted = [None] * len(scored)  # units found by selection, no sort
        if self.ranking == "local" and not self.by_cost:
            return self._local(families, target, scored, unsorted)
        if self.ranking == "local" and self.structural is None:
            best = self._search(lambda p: self._local_removed(families, p, scored), target)
            return self._local(families, best, scored, unsorted)
        # Sorted and ranked once: a FLOPs search tries up to 40 selections from the same scores.
        orders = [pruning_order(scores, already) for scores, already in scored]
        if self.ranking == "global":
            ranked = self._ranked_steps(families, scored, orders)
            if exact_additive:
                return self._global(families, target * self.denominator, ranked, scored, orders)

            def select_global(p):
                return self._global(families, p * self.denominator * 2, ranked, scored, orders)

            return select_global(self._search(lambda p: self.removed_by(select_global(p)), target))

        def select_local(p):
            return self._local(families, p, scored, orders)

        return select_local(self._search(lambda p: self.removed_by(select_local(p)), target))

    def _global_units(self, goal, scored):
        """`_global` where every step is one unit of the same cost (unstructured and block
        pruning to a sparsity target): the greedy walk then takes the `m` lowest normalised
        scores of the model, found by one selection instead of sorting every unit."""
        cost = self._unit_cost
        n_forced = sum(int(already.sum()) for _, already in scored)
        candidates = []
        for scores, already in scored:
            alive = scores[~already]
            normalised = np.where(already, np.inf, normalised_scores(scores, already))
            if alive.size:  # a family keeps its last unit in order: it is not a step
                last = np.flatnonzero(~already & (scores == alive.max()))[-1]
                normalised[last] = np.inf
            candidates.append(normalised)
        n_steps = sum(int(np.isfinite(c).sum()) for c in candidates)
        # The walk takes step j (after the forced ones) while it brings the removal closer to
        # the goal; every step costs the same, so the first overshoot ends it.
        taken = 0
        removed = cost * n_forced
        estimate = int(max(0.0, np.floor((2 * goal - 2 * removed - cost) / (2 * cost))))
        for j in range(max(0, estimate - 2), min(n_steps, estimate + 3) + 1):
            before = removed + j * cost
            if j >= n_steps or before + cost - goal > goal - before:
                taken = j
                break
        else:
            taken = min(n_steps, estimate + 3)
        selection = [already.copy() for _, already in scored]
        if taken:
            boundary = np.partition(np.concatenate(candidates), taken - 1)[taken - 1]
            left = taken - sum(int((c < boundary).sum()) for c in candidates)
            for pruned, (scores, _), c in zip(selection, scored, candidates):
                pruned |= c < boundary
                tied = np.flatnonzero(c == boundary)
                # Ties go family by family, and in a family by raw score, then index: the
                # order a stable sort of every step would give.
                tied = tied[np.lexsort((tied, scores[tied]))][:left]
                pruned[tied] = True
                left -= tied.size
        return selection

    def unit_keep(self, target: float) -> float:
        """The fraction of its units a layer keeps, on average, when `target` is reached.

        A cost falls with a layer's filters and with its inputs (the filters of the layer
        before), so a cost target keeps about the square root of the cost it keeps.

        Args:
            target: in [0, 1), in the policy's unit.

        Returns:
            A fraction in (0, 1].
        """
        kept = 1.0 - float(target)
        return math.sqrt(kept) if self.by_cost else kept

    @_at_reference_size
    def apply(self, target: float) -> None:
        """Recompute scores and install the masks for `target`.

        Args:
            target: in [0, 1), in the policy's unit.
        """
        if self.granularity.supports_global is False:  # N:M: every group of every layer alike
            context = ScoringContext(self.model, self.data)
            for wrapper in self.wrappers:
                wrapper.assign_mask(
                    wrapper.granularity.mask(
                        element_scores(wrapper, context), wrapper.mask_array(), target, wrapper.spec
                    )
                )
            return
        if getattr(self.wrappers[0].criterion, "sequential", False):
            # Forward mode: each family is scored after the ones before it were pruned.
            for family, ranked in zip(self.families, self.ranked_families):
                scores = family.score(ScoringContext(self.model, self.data))
                n_prune = int(
                    math.floor(self._family_sparsity(family, target) * family.n_units + 1e-9)
                )
                already = family.already()
                pruned = ranked.lowest(n_prune, scores, already)
                if family.refinable:
                    snapped = family.nearest_snap(pruned, scores, already)
                    if abs(int(snapped.sum()) - int(pruned.sum())) <= TOLERANCE * family.n_units:
                        pruned = snapped
                family.install(pruned)
            return
        for family, pruned in zip(self.families, self.select(target)):
            family.install(pruned)

    @_at_reference_size
    def removed(self) -> float:
        """What the current masks remove, in the target's unit."""
        return self.removed_by([f.already() for f in self.families])

    @_at_reference_size
    def max_removable(self) -> float:
        """The largest target the safeguards allow."""
        # Refinable families can go down to single filters (`select`).
        families = self.ranked_families
        scored = [(np.zeros(f.n_units), np.zeros(f.n_units, bool)) for f in families]
        return self.removed_by(
            self._local(families, 1.0 - 1e-9, scored, [np.arange(f.n_units) for f in families])
        )


def same_policy(a, b) -> bool:
    """Whether two wrappers are ranked and scheduled together: the same `Policy` (schedule,
    ranking, target, granularity, criterion, group reduction, latency table and reference
    size). `min_filters`, `round_to` and `rate` may differ: they are per layer.

    Args:
        a: a `PruneWrapper`.
        b: another.

    Returns:
        True if one `PruningPlan` can hold both.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc1"), keras.layers.Dense(8, name="fc2"),
    ...           keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> fc1, fc2 = tfprune.wrappers_of(tfprune.prune(model, policies={"fc2": "block:1x4"}))
    >>> same_policy(fc1, fc1), same_policy(fc1, fc2)
    (True, False)
    """

    return a.policy == b.policy


# Above this share of a model's parameters, layers whose FLOPs go uncounted make a cost
# target measurably wrong: the plan says so.
UNCOUNTED_SHARE = 0.05


def _warn_of_uncounted(model, target) -> None:
    """Warn when layers holding more than `UNCOUNTED_SHARE` of the parameters have FLOPs
    tfprune cannot count: a FLOPs or latency target is then a share of the rest."""
    uncounted = flops.uncounted_layers(model)
    share = sum(part for part, _ in uncounted.values())
    if share > UNCOUNTED_SHARE:
        reasons = "; ".join(why for _, why in uncounted.values())
        warnings.warn(
            f"target='{target}': layers holding {share:.0%} of the parameters are not counted "
            f"({reasons}); the target is a share of the rest of the model. Make them "
            "traceable (keras.ops on their inputs) or register them (tfprune.register_layer).",
            stacklevel=3,
        )


def pruning_plans(model) -> list[PruningPlan]:
    """One `PruningPlan` per pruning policy of a model (`prune(policies=...)`), each over the
    wrappers that share it, in the order their first layers come.

    Args:
        model: a model returned by `tfprune.prune`.

    Returns:
        A list of plans; one for a model pruned with one policy.

    Raises:
        ValueError: if the model has no `PruneWrapper`s.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc1"), keras.layers.Dense(8, name="fc2"),
    ...           keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> pruned = tfprune.prune(model, policies={"fc2": "block:1x4"})
    >>> [[w.layer.name for w in plan.wrappers] for plan in pruning_plans(pruned)]
    [['fc1'], ['fc2']]
    """
    shared = []
    for wrapper in wrappers_of(modelwalk.trained_model(model)):
        for wrappers in shared:
            if same_policy(wrappers[0], wrapper):
                wrappers.append(wrapper)
                break
        else:
            shared.append([wrapper])
    if not shared:
        return [PruningPlan(model)]  # raises, naming the model
    return [PruningPlan(model, wrappers) for wrappers in shared]


def greedy_selection(score, family_of, cost, goal, n_families) -> np.ndarray:
    """Which of the globally ranked steps the global ranking takes.

    Steps pruned before (score -inf) always go; others only while they bring the removal
    closer to `goal`. A step that would overshoot closes its family, and cheaper steps of
    other families may still fill the gap (this is what lets coarse `round_to` families and
    fine ones share a FLOPs target). Vectorised between closings: at most one pass over the
    steps per family.

    Args:
        score: the steps' scores, sorted ascending.
        family_of: the family index of each step.
        cost: what each step removes.
        goal: the removal to get closest to.
        n_families: the number of families.

    Returns:
        A boolean vector: which steps are taken.

    Example:

    >>> score, family = np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0])
    >>> greedy_selection(score, family, np.array([1.0, 4.0, 1.0]), goal=2.0, n_families=2)
    array([ True, False,  True])
    """
    taken = np.zeros(score.size, bool)
    closed = np.zeros(n_families, bool)
    removed, position = 0.0, 0
    while position < score.size:
        open_steps = ~closed[family_of[position:]]
        costs = np.where(open_steps, cost[position:], 0.0)
        before = removed + np.concatenate([[0.0], np.cumsum(costs)[:-1]])
        overshoots = (
            open_steps & (score[position:] != -np.inf) & (before + costs - goal > goal - before)
        )
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
        target: in [0, 1), in the unit of the model's policy (`"sparsity"`, `"flops"` or
            `"latency"`).
        data: `(x, y)` calibration examples, for criteria that need them (`"taylor"`).
            Defaults to `None`.

    Returns:
        The `PruningPlan` used, for further queries.

    Raises:
        ValueError: if the model has no `PruneWrapper`s, or several pruning policies (use
            `pruning_plans` and apply each).

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> apply_target(tfprune.prune(model, schedule=0.5), 0.5).removed()
    0.5
    """
    plan = PruningPlan(model)
    plan.data = data
    plan.apply(target)
    return plan
