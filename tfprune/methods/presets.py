"""Schedules named after the papers whose recipes they encode (IPLT and PFWT).

Both are `Iterative` schedules: equal steps toward the target at the start of chosen epochs,
so they serialize, resume and work with every criterion and granularity.
"""

from __future__ import annotations

from tfprune.core.checks import check_integer
from tfprune.masking.schedules import Iterative, check_target


def _equal_steps(target, first_epoch, events, every) -> Iterative:
    target = check_target("target", target)
    first_epoch = check_integer("first epoch", first_epoch, minimum=0)
    events = check_integer("number of pruning events", events, minimum=1)
    every = check_integer("epochs between events", every, minimum=1)
    return Iterative(
        [target * (i + 1) / events for i in range(events)],
        [first_epoch + i * every for i in range(events)],
    )


def iplt(target, pretrain_epochs=2, prune_epochs=4) -> Iterative:
    """Pruning after little training (IPLT): pre-train a few epochs, then prune a little more
    at the start of every following epoch.

    From "Really should we pruning after model be totally trained? Pruning based on a small
    amount of training" (Li, Zhao and Shang, arXiv 1901.08455).

    Args:
        target: final fraction to prune, in [0, 1).
        pretrain_epochs: epochs trained dense first (the first pruning is at the start of
            epoch `pretrain_epochs`, counting from 0). Defaults to 2.
        prune_epochs: epochs over which the target is reached in equal steps; train a few
            more after them to recover. Defaults to 4.

    Returns:
        An `Iterative` schedule.

    Raises:
        TypeError / ValueError: for a target outside [0, 1) or counts that are not
            positive integers.

    Example:

    >>> schedule = iplt(0.6, pretrain_epochs=2, prune_epochs=3)
    >>> schedule.epochs, [round(t, 2) for t in schedule.targets]
    ([2, 3, 4], [0.2, 0.4, 0.6])
    """
    return _equal_steps(target, pretrain_epochs, prune_epochs, every=1)


def pfwt(target, every=2, events=4, first_epoch=1) -> Iterative:
    """Pruning filters while training from scratch (PFWT): equal steps toward the target
    every few epochs, starting early.

    From "Pruning Filters while Training for Efficiently Optimizing Deep Learning Networks"
    (Roy et al., arXiv 2003.02800).

    Use it with `granularity="filter"` and the L1 criterion (the paper's best), and with
    `tfprune.methods.fit_with_rebuilds` to make the remaining training cheaper as the model shrinks.

    Args:
        target: final fraction of filters to prune, in [0, 1).
        every: epochs between pruning events. Defaults to 2.
        events: number of pruning events. Defaults to 4.
        first_epoch: epoch (from 0) of the first event. Defaults to 1.

    Returns:
        An `Iterative` schedule.

    Raises:
        TypeError / ValueError: as `iplt`.

    Example:

    >>> tfprune.methods.pfwt(0.5, every=2, events=2).epochs
    [1, 3]
    """
    return _equal_steps(target, first_epoch, events, every)
