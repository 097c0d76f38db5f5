"""Layer-wise pruning rates from a calibration set, with no retraining: BPPS and PwC.

BPPS is "Towards Optimal Filter Pruning with Balanced Performance and Pruning Speed" (Li et
al., arXiv 2010.06821); PwC's rates are from "Pruning with Compensation: Efficient Channel
Pruning for Deep Convolutional Neural Networks" (Xie et al., arXiv 2108.13728).

For each layer (each family of channel groups: the layers tied by residual Adds are one) in
turn, bisect the largest rate whose calibration loss rises by at most `eps` when only that
layer is pruned (L1 ranking); an outer search on `eps` meets a global FLOPs target. The rates
feed `tfprune.prune(..., rates=...)`, and only the final fine-tune trains.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.core import checks
from tfprune.core.classifier import output_kind
from tfprune.criteria.base import ScoringContext
from tfprune.masking.prune import prune
from tfprune.masking.ranking import PruningPlan
from tfprune.masking.schedules import OneShot
from tfprune.masking.wrappers import followers_of
from tfprune.methods.compensation import compensate


@dataclasses.dataclass
class LayerwiseRates:
    """Result of `layerwise_rates`.

    Attributes:
        rates: `{layer name: sparsity}` for `tfprune.prune(..., rates=...)`.
        eps: the loss-increase threshold the outer search settled on.
        flops_removed: fraction of FLOPs these rates remove (after `shrink`).
        loss_increase: calibration loss increase with all rates applied at once.

    Example:

    ```python
    found = tfprune.methods.layerwise_rates(model, (x[:500], y[:500]), target_flops=0.5)
    print(found.rates, found.flops_removed)  # {'conv2': 0.31, 'conv3': 0.62}, 0.5
    ```
    """

    rates: dict
    eps: float
    flops_removed: float
    loss_increase: float


class _Trials:
    """A pruned copy of `model` whose layer families can be pruned for a trial and restored."""

    def __init__(self, model, criterion, min_filters, round_to):
        self.pruned = prune(
            model,
            granularity="filter",
            criterion=criterion,
            schedule=OneShot(0.0),
            target="flops",
            min_filters=min_filters,
            round_to=round_to,
        )
        self.plan = PruningPlan(self.pruned)
        self.families = self.plan.families
        self.variables = [
            v for layer in self.plan.wrappers + followers_of(self.pruned) for v in layer.weights
        ]
        self.snapshot = [keras.ops.convert_to_numpy(v) for v in self.variables]
        self.scored = [(f.score(ScoringContext(self.pruned)), f.already()) for f in self.families]

    def restore(self):
        for variable, value in zip(self.variables, self.snapshot):
            variable.assign(value)

    def install(self, counts):
        """Prune `counts[i]` units of family `i` (from the unpruned state)."""
        self.restore()
        for family, n, scored in zip(self.families, counts, self.scored):
            family.install(family.lowest(n, *scored))

    def removed(self, counts):
        """FLOPs fraction these counts remove after `shrink`."""
        return self.plan.removed_by(
            [f.lowest(n, *s) for f, n, s in zip(self.families, counts, self.scored)]
        )

    def rates(self, counts):
        return {name: n / f.n_units for f, n in zip(self.families, counts) for name in f.layers}


def _check_data(model, data, function):
    if data is None or len(data) != 2 or len(data[0]) == 0 or len(data[0]) != len(data[1]):
        raise ValueError(
            f"{function} needs data=(x, y): matching, non-empty calibration inputs and labels."
        )
    return np.asarray(data[0], np.float32), checks.check_labels(model, data[1])


def _calibration_loss(model, x, y, from_logits, batch_size):
    total = 0.0
    for start in range(0, len(x), batch_size):
        predictions = model(x[start : start + batch_size], training=False)
        losses = keras.losses.sparse_categorical_crossentropy(
            y[start : start + batch_size], predictions, from_logits=from_logits
        )
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
        criterion: ranking inside each layer. Defaults to `"l1"`.
        max_rate: the largest rate any layer may take. Defaults to 0.9.
        min_filters: the fewest filters a layer keeps. Defaults to 1.
        round_to: keep filter counts a multiple of this. Defaults to 1.
        batch_size: calibration batch size. Defaults to 256.
        verbose: show a progress bar over the outer search. Defaults to `True`.

    Returns:
        A `LayerwiseRates`.

    Raises:
        TypeError, ValueError: for models `prune` refuses, empty or mismatched data, or a
            target outside (0, 1).

    Example:

    ```python
    found = tfprune.methods.layerwise_rates(model, (x[:500], y[:500]), target_flops=0.5)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=500)
    pruned = tfprune.prune(model, schedule=schedule, rates=found.rates)
    ```
    """
    checks.check_model(model, "layerwise_rates")
    checks.check_number("target_flops", target_flops, 0, 1, include_low=False, include_high=False)
    x, y = _check_data(model, data, "layerwise_rates")
    from_logits = output_kind(model) == "logits"
    trials = _Trials(model, criterion, min_filters, round_to)
    families = trials.families
    base = _calibration_loss(trials.pruned, x, y, from_logits, batch_size)
    cache = {}

    def increase(index, n_prune):
        """Calibration loss increase with only family `index` pruned by `n_prune` units."""
        if (index, n_prune) not in cache:
            counts = [0] * len(families)
            counts[index] = n_prune
            trials.install(counts)
            cache[(index, n_prune)] = (
                _calibration_loss(trials.pruned, x, y, from_logits, batch_size) - base
            )
            trials.restore()
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

    low, high = -8.0, 3.0  # log10 of eps
    progress = keras.utils.Progbar(24, verbose=1 if verbose else 0, unit_name="search step")
    best = None
    for step in range(24):
        mid = (low + high) / 2
        counts = counts_for(10**mid)
        achieved = trials.removed(counts)
        if best is None or abs(achieved - target_flops) < abs(best[2] - target_flops):
            best = (10**mid, counts, achieved)
        low, high = (mid, high) if achieved < target_flops else (low, mid)
        progress.update(step + 1, [("flops_removed", achieved)])
    eps, counts, achieved = best

    trials.install(counts)
    total_increase = _calibration_loss(trials.pruned, x, y, from_logits, batch_size) - base
    trials.restore()
    return LayerwiseRates(trials.rates(counts), eps, achieved, total_increase)


def compensated_rates(
    model,
    data,
    floor=(0.99, 0.95),
    *,
    criterion="l1",
    max_rate: float = 0.9,
    min_filters: int = 1,
    round_to: int = 1,
    verbose: bool = True,
) -> LayerwiseRates:
    """PwC's layer-wise rates: per layer in turn, the largest rate whose accuracy after
    least-squares compensation stays above a floor that falls linearly over the layers.

    Layers are pruned cumulatively (each search sees the layers before it pruned and the
    whole model compensated with `tfprune.methods.compensate`); no backpropagation.

    Args:
        model: a built, trained Keras 3 classifier.
        data: `(x, y)` calibration examples: compensation statistics and accuracy.
        floor: `(first, last)` accuracy floors, as fractions of the unpruned model's
            accuracy on `data`, for the first and the last layer. Defaults to `(0.99, 0.95)`.
        criterion: ranking inside each layer. Defaults to `"l1"`.
        max_rate: the largest rate any layer may take. Defaults to 0.9.
        min_filters: the fewest filters a layer keeps. Defaults to 1.
        round_to: keep filter counts a multiple of this. Defaults to 1.
        verbose: show progress over the layers. Defaults to `True`.

    Returns:
        A `LayerwiseRates` (`eps` is NaN: the floors play its role; `loss_increase` is the
        accuracy drop on `data`, compensated).

    Raises:
        ValueError: for floors outside (0, 1] or increasing, or bad data.

    Example:

    ```python
    found = tfprune.methods.compensated_rates(model, (x[:400], y[:400]), floor=(0.99, 0.95))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), rates=found.rates)
    ```
    """
    checks.check_model(model, "compensated_rates")
    first, last = floor
    if not (0 < last <= first <= 1):
        raise ValueError(f"floor must be (first, last) with 0 < last <= first <= 1, got {floor!r}.")
    x, y = _check_data(model, data, "compensated_rates")

    def accuracy(m):
        return float(
            np.mean(np.argmax(keras.ops.convert_to_numpy(m(x, training=False)), axis=1) == y)
        )

    trials = _Trials(model, criterion, min_filters, round_to)
    families = trials.families
    base = accuracy(model)
    floors = np.linspace(first, last, max(len(families), 1)) * base
    counts = [0] * len(families)

    def compensated_accuracy(trial):
        trials.install(trial)
        return accuracy(compensate(model, trials.pruned, x))

    progress = keras.utils.Progbar(len(families), verbose=1 if verbose else 0, unit_name="layer")
    for index, family in enumerate(families):
        low, high = 0, int(np.floor(max_rate * family.n_units))
        while low < high:
            mid = (low + high + 1) // 2
            trial = counts[:index] + [mid] + counts[index + 1 :]
            low, high = (
                (mid, high) if compensated_accuracy(trial) >= floors[index] else (low, mid - 1)
            )
        counts[index] = low
        progress.update(index + 1)
    final_accuracy = compensated_accuracy(counts)
    trials.restore()
    return LayerwiseRates(
        trials.rates(counts), float("nan"), trials.removed(counts), base - final_accuracy
    )
