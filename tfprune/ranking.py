"""From scores to masks across a model: local or global ranking, toward a sparsity or FLOPs target.

Every wrapper of one model shares a policy (set by `prune`). A *target* is either the
fraction of the prunable weights to zero (`"sparsity"`), or the fraction of the whole
model's FLOPs to remove (`"flops"`, counted from nonzero weights, see `tfprune.flops`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune import flops


@dataclasses.dataclass
class _Layer:
    """One wrapper's numbers for a mask update."""

    wrapper: object
    scores: np.ndarray  # element scores
    unit_scores: np.ndarray
    already: np.ndarray  # units pruned before
    unit_cost: float  # what pruning one unit removes: weights, or FLOPs

    @property
    def n_units(self):
        return self.unit_scores.size


def _unit_cost(wrapper, by_flops: bool) -> float:
    size = wrapper.granularity.unit_size(tuple(wrapper.pruned_variable.shape), wrapper.spec)
    if not by_flops:
        return float(size)
    return 2.0 * size * (flops.weight_positions(wrapper.layer, wrapper, wrapper.spec.weight) or 0)


def _gather(wrappers, by_flops: bool) -> list[_Layer]:
    layers = []
    for wrapper in wrappers:
        weight = wrapper.weight_array()
        scores = np.asarray(wrapper.criterion(weight, wrapper.layer), np.float64)
        if scores.shape != weight.shape:
            raise ValueError(
                f"Criterion {wrapper.criterion!r} returned scores of shape {scores.shape} for layer "
                f"'{wrapper.layer.name}', whose weight has shape {weight.shape}; return one score per weight."
            )
        g = wrapper.granularity
        layers.append(
            _Layer(
                wrapper,
                scores,
                g.unit_scores(scores, wrapper.spec),
                g.pruned_units(wrapper.mask_array(), wrapper.spec),
                _unit_cost(wrapper, by_flops),
            )
        )
    return layers


def _removed(layers, sparsity: float) -> float:
    """Cost removed if every layer were pruned to `sparsity` (local ranking)."""
    total = 0.0
    for layer in layers:
        w = layer.wrapper
        fraction = w.granularity.pruned_fraction(
            layer.n_units, sparsity, int(layer.already.sum()), w.min_filters, w.round_to
        )
        total += fraction * layer.n_units * layer.unit_cost
    return total


def _local_sparsity_for(layers, goal: float) -> float:
    """The uniform per-layer sparsity whose removed cost comes closest to `goal`.

    Removed cost is a step function of the sparsity; bisection finds the step that first
    reaches the goal, and the step just below it may be closer.
    """
    low, high = 0.0, 1.0 - 1e-9
    if _removed(layers, high) < goal:
        return high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if _removed(layers, mid) < goal else (low, mid)
    return low if goal - _removed(layers, low) < _removed(layers, high) - goal else high


def _global_prune_counts(layers, goal: float) -> list[int]:
    """Rank units of all layers together; return how many to prune in each layer."""
    entries = []
    for index, layer in enumerate(layers):
        alive = layer.unit_scores[~layer.already]
        scale = alive.mean() if alive.size and alive.mean() > 0 else 1.0
        normalised = np.where(layer.already, -np.inf, layer.unit_scores / scale)
        entries.extend((score, index) for score in normalised)
    entries.sort(key=lambda entry: entry[0])
    counts = [0] * len(layers)
    floors = [max(1, layer.wrapper.min_filters if layer.wrapper.granularity.structured else 1) for layer in layers]
    removed = 0.0
    for score, index in entries:
        layer = layers[index]
        # Units pruned before always go; others only while they bring us closer to the goal.
        if score != -np.inf and removed + layer.unit_cost - goal > goal - removed:
            break
        if layer.n_units - counts[index] <= floors[index]:
            continue
        counts[index] += 1
        removed += layer.unit_cost
    return counts


def apply_target(wrappers, target: float, total_flops: float | None = None) -> None:
    """Recompute and install the masks of `wrappers` for one target.

    Args:
        wrappers: the model's `PruneWrapper`s (sharing one policy).
        target: the schedule's target, in [0, 1).
        total_flops: the model's dense FLOPs; required when the policy's target is
            `"flops"`.

    Raises:
        ValueError: if a FLOPs target is asked without `total_flops`.

    Example:

    >>> apply_target(wrappers_of(pruned), 0.5)
    """
    if not wrappers:
        return
    policy = wrappers[0]
    by_flops = policy.target == "flops"
    if by_flops and not total_flops:
        raise ValueError("A FLOPs target needs the model's total FLOPs (total_flops=).")
    layers = _gather(wrappers, by_flops)
    if by_flops:
        goal = target * total_flops
    else:
        goal = target * sum(layer.n_units * layer.unit_cost for layer in layers)

    if policy.ranking == "global":
        for layer, count in zip(layers, _global_prune_counts(layers, goal)):
            w = layer.wrapper
            mask = w.granularity.mask_pruning(layer.scores, w.mask_array(), count, w.spec, w.min_filters, w.round_to)
            w.assign_mask(mask)
        return
    sparsity = _local_sparsity_for(layers, goal) if by_flops else target
    for layer in layers:
        w = layer.wrapper
        w.assign_mask(w.granularity.mask(layer.scores, w.mask_array(), sparsity, w.spec, w.min_filters, w.round_to))


def max_removable(wrappers, total_flops: float | None = None) -> float:
    """The largest target reachable with these wrappers' safeguards (what `prune` checks).

    Args:
        wrappers: the model's `PruneWrapper`s.
        total_flops: the model's dense FLOPs, for a `"flops"` policy.

    Returns:
        A fraction in [0, 1].
    """
    by_flops = wrappers[0].target == "flops"
    layers = _gather(wrappers, by_flops)
    removable = _removed(layers, 1.0 - 1e-9)
    denominator = total_flops if by_flops else sum(layer.n_units * layer.unit_cost for layer in layers)
    return removable / denominator if denominator else 0.0
