"""BPPS (Li et al., ACCV 2020): layer-wise pruning rates from a calibration set, no retraining.

For each layer (each family of channel groups: the layers tied by residual Adds are one) in
turn, bisect the largest rate whose calibration loss rises by at most `eps` when only that
layer is pruned (L1 ranking); an outer search on `eps` meets a global FLOPs target. The rates
feed `tfprune.prune(..., rates=...)`, and only the final fine-tune trains.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune import adversarial, checks
from tfprune.prune import prune
from tfprune.ranking import PruningPlan
from tfprune.schedules import OneShot
from tfprune.wrappers import followers_of


@dataclasses.dataclass
class LayerwiseRates:
    """Result of `layerwise_rates`.

    Attributes:
        rates: `{layer name: sparsity}` for `tfprune.prune(..., rates=...)`.
        eps: the loss-increase threshold the outer search settled on.
        flops_removed: fraction of FLOPs these rates remove (after `shrink`).
        loss_increase: calibration loss increase with all rates applied at once.
    """

    rates: dict
    eps: float
    flops_removed: float
    loss_increase: float


def _calibration_loss(model, x, y, from_logits, batch_size):
    total = 0.0
    for start in range(0, len(x), batch_size):
        predictions = model(x[start : start + batch_size], training=False)
        losses = keras.losses.sparse_categorical_crossentropy(y[start : start + batch_size], predictions, from_logits=from_logits)
        total += float(np.sum(keras.ops.convert_to_numpy(losses)))
    return total / len(x)


def layerwise_rates(
    model,
    data,
    target_flops: float,
    *,
    criterion="l1",
    max_rate: float = 0.9,
    min_filters: int = 1,
    round_to: int = 1,
    batch_size: int = 256,
    verbose: bool = True,
) -> LayerwiseRates:
    """Per-layer filter pruning rates that remove `target_flops` of the FLOPs at least loss.

    Args:
        model: a built Keras 3 classifier (functional or Sequential), trained.
        data: `(x, y)` calibration examples with integer labels (a few hundred suffice).
        target_flops: fraction of the model's FLOPs to remove, in (0, 1).
        criterion: ranking inside each layer (default L1).
        max_rate: the largest rate any layer may take.
        min_filters: the fewest filters a layer keeps.
        round_to: keep filter counts a multiple of this.
        batch_size: calibration batch size.
        verbose: show a progress bar over the outer search.

    Returns:
        A `LayerwiseRates`.

    Raises:
        TypeError, ValueError: for models `prune` refuses, empty or mismatched data, or a
            target outside (0, 1).

    Example:

    >>> found = tfprune.layerwise_rates(model, (x[:500], y[:500]), target_flops=0.5)
    >>> pruned = tfprune.prune(model, schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 500), rates=found.rates)
    """
    checks.check_model(model, "layerwise_rates")
    if isinstance(target_flops, bool) or not isinstance(target_flops, (int, float)) or not 0 < target_flops < 1:
        raise ValueError(f"target_flops must be in (0, 1), got {target_flops!r}.")
    if data is None or len(data) != 2 or len(data[0]) == 0 or len(data[0]) != len(data[1]):
        raise ValueError("layerwise_rates needs data=(x, y): matching, non-empty calibration inputs and labels.")
    x, y = np.asarray(data[0], np.float32), adversarial._check_labels(model, data[1])
    from_logits = adversarial.output_kind(model) == "logits"

    pruned = prune(model, granularity="filter", criterion=criterion, schedule=OneShot(0.0), target="flops",
                   min_filters=min_filters, round_to=round_to)
    plan = PruningPlan(pruned)
    families = plan.families
    variables = [v for layer in plan.wrappers + followers_of(pruned) for v in layer.weights]
    snapshot = [keras.ops.convert_to_numpy(v) for v in variables]

    def restore():
        for variable, value in zip(variables, snapshot):
            variable.assign(value)

    from tfprune.criteria import ScoringContext

    context = ScoringContext(pruned)
    scored = [(f.score(context), f.already()) for f in families]
    base = _calibration_loss(pruned, x, y, from_logits, batch_size)
    cache = {}

    def increase(index, n_prune):
        """Calibration loss increase with only family `index` pruned by `n_prune` units."""
        if (index, n_prune) not in cache:
            family = families[index]
            family.install(family.lowest(n_prune, *scored[index]))
            cache[(index, n_prune)] = _calibration_loss(pruned, x, y, from_logits, batch_size) - base
            restore()
        return cache[(index, n_prune)]

    def counts_for(eps):
        counts = []
        for index, family in enumerate(families):
            low, high = 0, int(np.floor(max_rate * family.n_units))
            while low < high:  # the largest count whose loss increase stays within eps
                mid = (low + high + 1) // 2
                low, high = (mid, high) if increase(index, mid) <= eps else (low, mid - 1)
            counts.append(low)
        return counts

    def removed(counts):
        return plan._removed([f.lowest(n, *s) for f, n, s in zip(families, counts, scored)])

    low, high = -8.0, 3.0  # log10 of eps
    progress = keras.utils.Progbar(24, verbose=1 if verbose else 0, unit_name="search step")
    best = None
    for step in range(24):
        mid = (low + high) / 2
        counts = counts_for(10**mid)
        achieved = removed(counts)
        if best is None or abs(achieved - target_flops) < abs(best[2] - target_flops):
            best = (10**mid, counts, achieved)
        low, high = (mid, high) if achieved < target_flops else (low, mid)
        progress.update(step + 1, [("flops_removed", achieved)])
    eps, counts, achieved = best

    for family, n, s in zip(families, counts, scored):
        family.install(family.lowest(n, *s))
    total_increase = _calibration_loss(pruned, x, y, from_logits, batch_size) - base
    restore()
    rates = {}
    for family, n in zip(families, counts):
        for name in family.layers:
            rates[name] = n / family.n_units
    return LayerwiseRates(rates, eps, achieved, total_increase)
