"""Schedules: when masks update and to which target.

A schedule is called with the training step (the optimizer's iteration count) and the epoch,
and answers the target to prune to if the masks update now, else `None`. What the target
measures (fraction of weights, or fraction of FLOPs) is chosen with `prune(..., target=)`.
"""

from __future__ import annotations

import keras

from tfprune.core.checks import check_fraction, check_integer, check_number
from tfprune.core.configurable import Configurable

NEVER_ALL = "A layer is never pruned to nothing."


def check_target(name: str, value) -> float:
    """A schedule's target: a fraction in [0, 1).

    Args:
        name: the argument's name.
        value: what the caller passed.

    Returns:
        `float(value)`.

    Raises:
        TypeError, ValueError: as `tfprune.core.checks.check_fraction`.

    Example:

    >>> check_target("target", 0.5)
    0.5
    """
    return check_fraction(name, value, hint=NEVER_ALL)


class PruningSchedule(Configurable):
    """Base class. Subclasses implement `__call__`, `final_target` and `get_config`.

    Example:

    >>> schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100, frequency=10)
    >>> round(schedule(10), 4)  # masks update at step 10, to this target
    0.1355
    >>> schedule(11) is None  # and not at step 11
    True
    """

    def __call__(self, step: int, epoch: int = 0, epoch_start: bool = False) -> float | None:
        """Target if masks update at `step`, else `None`.

        Args:
            step: the training step (optimizer iterations), from 0.
            epoch: the current epoch, from 0. Defaults to 0.
            epoch_start: whether `step` is the first batch of `epoch`. Defaults to `False`.

        Returns:
            A target in [0, 1), or `None`.
        """
        raise NotImplementedError

    @property
    def final_target(self) -> float:
        """The target this schedule ends at."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="tfprune")
class ConstantSparsity(PruningSchedule):
    """Prune to a fixed target, re-applied every `frequency` steps from `begin_step`.

    Args:
        target: fraction to prune, in [0, 1).
        begin_step: first step at which masks update. Defaults to 0.
        end_step: last step at which masks may update; -1 for no end. Defaults to -1.
        frequency: steps between mask updates. Defaults to 100.

    Raises:
        TypeError: for a target that is not a number, or steps that are not integers.
        ValueError: for a target outside [0, 1), negative steps, end before begin, or a
            frequency below 1.

    Example:

    >>> ConstantSparsity(0.5, begin_step=100)(100)
    0.5
    """

    def __init__(self, target, begin_step=0, end_step=-1, frequency=100):
        self.target = check_target("ConstantSparsity target", target)
        self.begin_step = check_integer("begin_step", begin_step, minimum=0)
        self.end_step = check_integer("end_step", end_step, minimum=-1)
        self.frequency = check_integer("frequency", frequency, minimum=1)
        if end_step != -1 and end_step < begin_step:
            raise ValueError(
                f"end_step ({end_step}) comes before begin_step ({begin_step}); use end_step >= "
                "begin_step."
            )

    def __call__(self, step, epoch=0, epoch_start=False):
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return None
        return self.target if (step - self.begin_step) % self.frequency == 0 else None

    @property
    def final_target(self):
        return self.target

    def get_config(self):
        return {
            "target": self.target,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfprune")
class PolynomialDecay(PruningSchedule):
    """Gradual pruning: fast early, slower as the target nears.

    From "To prune, or not to prune: exploring the efficacy of pruning for model
    compression" (Zhu and Gupta, arXiv 1710.01878).

    `s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** power`, applied every
    `frequency` steps between `begin_step` and `end_step`, and once more at `end_step`
    so that the final target is always reached.

    Args:
        initial_sparsity: target at `begin_step`, in [0, 1).
        final_sparsity: target at `end_step`, in [0, 1).
        begin_step: first step at which masks update.
        end_step: step at which the final target is applied.
        power: exponent; 3 is the paper's cubic schedule. Defaults to 3.
        frequency: steps between mask updates. Defaults to 100.

    Raises:
        TypeError: for targets or a power that are not numbers, or steps that are not integers.
        ValueError: for targets outside [0, 1), end before begin, a power <= 0 or a
            frequency below 1.

    Example:

    >>> s = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300, frequency=25)
    >>> s(300)
    0.5
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        self.initial_sparsity = check_target("initial_sparsity", initial_sparsity)
        self.final_sparsity = check_target("final_sparsity", final_sparsity)
        self.begin_step = check_integer("begin_step", begin_step, minimum=0)
        self.end_step = check_integer("end_step", end_step, minimum=0)
        self.frequency = check_integer("frequency", frequency, minimum=1)
        if end_step <= begin_step:
            raise ValueError(
                f"PolynomialDecay end_step ({end_step}) must come after begin_step ({begin_step}); "
                "use OneShot to prune in a single step."
            )
        check_number("power", power, low=0, include_low=False)
        self.power = power

    def target_at(self, step: int) -> float:
        """The schedule's curve at `step`, whether or not masks update there."""
        progress = min(max((step - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power
        )

    def __call__(self, step, epoch=0, epoch_start=False):
        if step < self.begin_step or step > self.end_step:
            return None
        if step == self.end_step or (step - self.begin_step) % self.frequency == 0:
            return self.target_at(step)
        return None

    @property
    def final_target(self):
        return self.final_sparsity

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfprune")
class Iterative(PruningSchedule):
    """Fixed targets applied at the start of chosen epochs.

    Args:
        targets: non-decreasing targets, each in [0, 1).
        epochs: strictly increasing epoch indices (from 0), one per target.

    Raises:
        TypeError: for targets that are not numbers or epochs that are not integers.
        ValueError: if the lists differ in length or are empty, targets decrease or leave
            [0, 1), or epochs do not increase.

    Example:

    >>> s = Iterative([0.25, 0.5], epochs=[2, 4])
    >>> s(step=80, epoch=4, epoch_start=True)
    0.5
    """

    def __init__(self, targets, epochs):
        targets, epochs = list(targets), list(epochs)
        if not targets or len(targets) != len(epochs):
            raise ValueError(
                f"Iterative needs one epoch per target; got {len(targets)} targets and "
                f"{len(epochs)} epochs."
            )
        self.targets = [check_target(f"targets[{i}]", t) for i, t in enumerate(targets)]
        self.epochs = [check_integer(f"epochs[{i}]", e, minimum=0) for i, e in enumerate(epochs)]
        if any(b <= a for a, b in zip(self.epochs, self.epochs[1:])):
            raise ValueError(f"Iterative epochs must strictly increase, got {self.epochs}.")
        if any(b < a for a, b in zip(self.targets, self.targets[1:])):
            raise ValueError(
                f"Iterative targets must not decrease (masks never regrow), got {self.targets}."
            )

    def __call__(self, step, epoch=0, epoch_start=False):
        if epoch_start and epoch in self.epochs:
            return self.targets[self.epochs.index(epoch)]
        return None

    @property
    def final_target(self):
        return self.targets[-1]

    def get_config(self):
        return {"targets": list(self.targets), "epochs": list(self.epochs)}


@keras.saving.register_keras_serializable(package="tfprune")
class OneShot(PruningSchedule):
    """Prune once, at `step`, straight to the target.

    Args:
        target: fraction to prune, in [0, 1).
        step: the step at which masks update. Defaults to 0.

    Raises:
        TypeError, ValueError: as `ConstantSparsity`.

    Example:

    >>> OneShot(0.5, step=200)(200)
    0.5
    """

    def __init__(self, target, step=0):
        self.target = check_target("OneShot target", target)
        self.step = check_integer("step", step, minimum=0)

    def __call__(self, step, epoch=0, epoch_start=False):
        return self.target if step == self.step else None

    @property
    def final_target(self):
        return self.target

    def get_config(self):
        return {"target": self.target, "step": self.step}


def get(identifier) -> PruningSchedule:
    """Resolve a schedule: an instance, a Keras-serialized dict, or a bare target number.

    A number `s` means `ConstantSparsity(s)`.

    Args:
        identifier: a `PruningSchedule`, its Keras serialization, or a number in [0, 1).

    Returns:
        A `PruningSchedule`.

    Raises:
        TypeError: for anything else.

    Example:

    >>> get(0.5)
    ConstantSparsity(target=0.5, begin_step=0, end_step=-1, frequency=100)
    """
    if isinstance(identifier, PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, (int, float)) and not isinstance(identifier, bool):
        return ConstantSparsity(identifier)
    raise TypeError(
        "schedule must be a tfprune schedule (e.g. PolynomialDecay) or a number, got "
        f"{type(identifier).__name__}."
    )
