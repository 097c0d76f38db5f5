"""`AdversarialAwarePruning`: a pruning schedule that watches robust accuracy, and holds or
rolls back when it falls."""

from __future__ import annotations

import math
import pathlib
import time
import warnings

import numpy as np

from tfprune.callbacks.pruning import PruningCallback, relative_drop
from tfprune.callbacks.trace import write_trace
from tfprune.core import checks, modelwalk
from tfprune.core.classifier import output_kind
from tfprune.core.distribution import is_chief
from tfprune.masking.wrappers import model_sparsity
from tfprune.robustness.accuracy import robust_accuracy, robust_correct
from tfprune.robustness.base import check_attack


class AdversarialAwarePruning(PruningCallback):
    """A pruning schedule that watches robust accuracy, and holds or rolls back when it falls.

    At every step where the schedule plans a mask update, it measures clean and robust
    accuracy on a held-out probe set (`robust_accuracy` with `attack`), then decides:

    - **advance** when robust accuracy is within `tolerance` of its reference level: apply
      the schedule's target, and record the *instability*
      `(clean_before - clean_after) / clean_before` measured right after the mask change;
    - **hold** when it has fallen by more than `tolerance`: keep the current masks and let
      training recover;
    - **rollback**, with `rollback=True`, when it has fallen by more than `hard_limit`:
      restore the masks and weights from before the last mask change (by default this is a
      hold too);
    - **advance (forced)** at the schedule's last planned step, so the final target is
      reached within the budget whatever the probe says (the decision log says so).

    A probe of `n` examples measures accuracy only to within its sampling noise, and a drop
    counts only where it exceeds `noise_z` standard errors of that noise as well as the
    tolerance, so the schedule does not hold or roll back on noise. With
    `comparison="paired"` (the default) the probe keeps which examples survive the attack,
    and a drop is the mean of the per-example differences against the reference, whose
    standard error is `std(d) / sqrt(n)`: examples that are robust (or not) before and after
    cancel, so a real drop shows long before it would in two independent accuracies. With
    `comparison="independent"` two probes of a model at accuracy `p` differ by about
    `sqrt(2 p (1 - p) / n)` (a difference of two binomial proportions; with 200 probe
    examples at 60 % robust accuracy, 2 errors are a drop of 9.8 points). The reference level
    is the robust accuracy at the last accepted step, or with `smoothing` a moving average
    over the accepted steps (per example, in the paired comparison). After a restart the
    per-example reference is gone (only its level is saved), so the first decision compares
    independently.

    If training ends before the final target, it warns and records `incomplete`. Every
    decision is appended to `events`, written to `trace_path` (CSV, or JSON if the name
    ends in .json; by the chief only, in a multi-worker job) and summarised in `logs` at
    each epoch end: `clean_accuracy`, `robust_accuracy` (last probe), `pruning_holds`,
    `pruning_rollbacks`. The accepted
    target and reference level live in the wrappers, so `BackupAndRestore` and `.keras`
    files restore them (the in-memory rollback snapshot does not survive a restart).

    Args:
        probe_data: `(x, y)` held-out examples with integer labels.
        attack: a `tfprune` attack for robust accuracy (e.g. `PGD(eps=0.1)`).
        tolerance: robust-accuracy drop (absolute, as a fraction) that makes it hold.
            Defaults to 0.02.
        hard_limit: drop that makes it roll back; >= tolerance. Defaults to 0.05.
        trace_path: where to write the decision trace, or `None`. Defaults to `None`.
        batch_size: probe batch size. Defaults to 256.
        log_layers: also log each layer's sparsity. Defaults to `False`.
        measure: optional `model -> (clean, robust)` replacing the probe measurement
            (for custom metrics or scripted tests); `robust` is an accuracy, or an array of
            per-example 0/1 survivals for the paired comparison. Defaults to `None`.
        noise_z: how many standard errors of the probe's sampling noise a drop must exceed
            (besides `tolerance` and `hard_limit`) to count; 0 compares raw drops. Defaults
            to 2.
        smoothing: weight of the previous reference when an accepted step updates it
            (`reference = smoothing * reference + (1 - smoothing) * robust`); 0 uses the
            last accepted step alone. Defaults to 0.
        rollback: `True` rolls the last mask change back past `hard_limit`; `False` only
            holds. Defaults to `False`: in the sparsity sweep (BENCHMARKS.md section 13,
            digits and MNIST-1D, 3 seeds) hold-only was the more robust of the two in 5 of
            the 6 settings where they differed and never cost clean accuracy against unpaced
            training, where rollback cost 1.1 points on MNIST-1D at 90 % of FLOPs removed.
            Rollback did rescue runs whose clean accuracy collapsed (digits, 74-80 %).
        comparison: `"paired"` (per-example differences on the same probe examples) or
            `"independent"` (two binomial accuracies). Defaults to `"paired"`.
        data: calibration batches `(x, y)` for data-dependent criteria (`"taylor"`,
            `"robust_taylor"`, `"pwc"`), as in `PruningCallback`. Defaults to `None`.
        recalibrate: clean inputs (arrays, or a dataset of batches; a few hundred training
            examples) on which every BatchNormalization layer's statistics are recalibrated
            (`tfprune.recalibrate_batchnorm`) before each probe, so that the probe measures
            the masks rather than moving statistics that lag them (and that adversarial
            training mixes from clean and adversarial batches). Each advance then records
            `instability` before recalibrating and `instability_recalibrated` after it.
            Defaults to `None`.

    Raises:
        TypeError: for an attack that is not a `tfprune.robustness.Attack`, or tolerances
            that are not numbers.
        ValueError: for a `comparison` other than "paired" or "independent".
        ValueError: for missing or empty probe data, labels that do not fit the model,
            a negative tolerance or a hard limit below it.

    Example:

    ```python
    pruned = tfprune.prune(model, schedule=schedule)
    trainer = tfprune.AdversarialTraining(pruned, tfprune.robustness.CutoffScale())
    trainer.compile("adam", "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning((x_val, y_val), tfprune.PGD(eps=0.1), tolerance=0.03)
    trainer.fit(x, y, epochs=20, callbacks=[callback])
    print(callback.events[-1]["decision"])
    ```
    """

    def __init__(
        self,
        probe_data,
        attack,
        tolerance=0.02,
        hard_limit=0.05,
        trace_path=None,
        batch_size=256,
        log_layers=False,
        measure=None,
        noise_z=2.0,
        smoothing=0.0,
        rollback=False,
        comparison="paired",
        data=None,
        recalibrate=None,
    ):
        super().__init__(log_layers=log_layers, data=data, recalibrate=recalibrate)
        if probe_data is None or len(probe_data) != 2 or len(probe_data[0]) == 0:
            raise ValueError(
                "AdversarialAwarePruning needs probe_data=(x, y) with at least one held-out "
                "example."
            )
        if len(probe_data[0]) != len(probe_data[1]):
            raise ValueError(
                f"probe_data: {len(probe_data[0])} inputs but {len(probe_data[1])} labels."
            )
        check_attack(attack)
        for name, value in (("tolerance", tolerance), ("hard_limit", hard_limit)):
            checks.check_number(name, value, low=0)
        if hard_limit < tolerance:
            raise ValueError(f"hard_limit ({hard_limit}) must be >= tolerance ({tolerance}).")
        checks.check_number("noise_z", noise_z, low=0)
        checks.check_number("smoothing", smoothing, 0, 1)
        if smoothing >= 1:
            raise ValueError("smoothing must be below 1 (1 would never move the reference).")
        self.probe_x, self.probe_y = (
            np.asarray(probe_data[0], np.float32),
            np.asarray(probe_data[1]),
        )
        self.attack = attack
        self.tolerance, self.hard_limit = float(tolerance), float(hard_limit)
        self.trace_path = None if trace_path is None else pathlib.Path(trace_path)
        self.batch_size = batch_size
        self.measure = measure
        self.noise_z, self.smoothing = float(noise_z), float(smoothing)
        self.rollback = bool(rollback)
        self.comparison = checks.check_choice("comparison", comparison, ("paired", "independent"))
        #: What the probes cost: how many ran, the examples they attacked, their seconds.
        self.probe_budget = {"probes": 0, "examples": 0, "seconds": 0.0}
        self._snapshot = None
        self._accepted = 0.0
        self._reference = None
        self._reference_examples = None
        self._restored = False
        self._last = (float("nan"), float("nan"))

    # ----------------------------------------------------------------- state
    def _save_state(self):
        reference = -1.0 if self._reference is None else self._reference
        self.wrappers[0].set_schedule_values(
            {"paced": 1.0, "accepted_target": self._accepted, "reference": reference}
        )

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if len(self.plans) > 1:
            raise ValueError(
                "AdversarialAwarePruning paces one schedule, and this model has "
                f"{len(self.plans)} pruning policies (prune(policies=...)). Prune it with one "
                "policy, or use PruningCallback."
            )
        self._restored = False
        model = modelwalk.trained_model(self.model)
        if self.measure is None:
            output_kind(model, self.attack.output)
            checks.check_labels(model, self.probe_y)

    def _restore_state(self):
        # Read lazily (at the first planned update), after BackupAndRestore has loaded weights.
        state = self.wrappers[0].schedule_values()
        if state["paced"]:
            self._accepted = state["accepted_target"]
            reference = state["reference"]
            self._reference = None if reference < 0 else reference
            # A per-example reference survives only in this process; after a restart (or a
            # restore of other weights) it no longer matches the saved level.
            kept = self._reference_examples
            if kept is not None and (
                self._reference is None or abs(float(kept.mean()) - self._reference) > 1e-9
            ):
                self._reference_examples = None
        self._restored = True

    def _probe(self):
        """`(clean, robust, survivals)`: `survivals` per example, or `None` where a custom
        `measure` gave only an accuracy."""
        model = modelwalk.trained_model(self.model)
        start = time.perf_counter()
        if self.recalibrate is not None:
            self.recalibrate_now()
        if self.measure is not None:
            clean, robust = self.measure(model)
            survivals = None if np.ndim(robust) == 0 else np.asarray(robust, np.float64)
        else:
            clean = robust_accuracy(model, self.probe_x, self.probe_y, None, self.batch_size)
            survivals = robust_correct(
                model, self.probe_x, self.probe_y, self.attack, self.batch_size
            ).astype(np.float64)
        robust = float(np.mean(robust)) if survivals is None else float(survivals.mean())
        self.probe_budget["probes"] += 1
        self.probe_budget["examples"] += len(self.probe_x)
        self.probe_budget["seconds"] += time.perf_counter() - start
        return float(clean), robust, survivals

    def probe_noise(self, level: float, differences=None) -> float:
        """The largest drop counted as sampling noise: `noise_z` standard errors.

        Args:
            level: the accuracy the probes measure around (the reference).
            differences: per-example `reference - now` survivals on the probe set for the
                paired comparison, or `None` for two independent probes. Defaults to
                `None`.

        Returns:
            Paired: `noise_z * std(differences) / sqrt(n)`. Independent: `noise_z *
            sqrt(2 p (1 - p) / n)`, with `p = level` kept at least one example away from 0
            and 1. `n` is the probe set's size.

        Example:

        >>> callback = tfprune.AdversarialAwarePruning(
        ...     (np.zeros((200, 4)), np.zeros(200, int)), tfprune.FGSM(0.1))
        >>> round(callback.probe_noise(0.6), 3)
        0.098
        >>> round(callback.probe_noise(0.6, np.r_[np.ones(4), np.zeros(196)]), 3)
        0.02
        """
        n = len(self.probe_x)
        if differences is not None:
            spread = float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0
            return self.noise_z * spread / math.sqrt(n)
        p = min(max(level, 1.0 / n), 1.0 - 1.0 / n)
        return self.noise_z * math.sqrt(2.0 * p * (1.0 - p) / n)

    def _drop_and_noise(self, robust, survivals):
        paired = (
            self.comparison == "paired"
            and survivals is not None
            and self._reference_examples is not None
        )
        if paired:
            differences = self._reference_examples - survivals
            return float(differences.mean()), self.probe_noise(self._reference, differences)
        return self._reference - robust, self.probe_noise(self._reference)

    def _move_reference(self, robust, survivals):
        keep = self.smoothing
        self._reference = keep * self._reference + (1.0 - keep) * robust
        if survivals is None:
            self._reference_examples = None
        elif self._reference_examples is None:
            self._reference_examples = survivals
        else:
            self._reference_examples = keep * self._reference_examples + (1.0 - keep) * survivals

    # ------------------------------------------------------------ snapshots
    def _take_snapshot(self):
        self._snapshot = (self._accepted, self.weights_snapshot())

    def _roll_back(self):
        accepted, saved = self._snapshot
        self.restore_snapshot(saved)
        self._accepted = accepted
        self._snapshot = None

    # ------------------------------------------------------------- decision
    def on_planned_update(self, step, target):
        if not self._restored:
            self._restore_state()
        if target <= self._accepted + 1e-12:
            return
        final = target >= self.plan.schedule.final_target - 1e-12
        clean, robust, survivals = self._probe()
        if self._reference is None:
            self._reference, self._reference_examples = robust, survivals
        drop, noise = self._drop_and_noise(robust, survivals)
        instabilities = self._unmeasured()
        if drop > max(self.hard_limit, noise) and self.rollback and self._snapshot is not None:
            self._roll_back()
            decision = "rollback"
            clean, robust, survivals = self._probe()
        elif drop > max(self.tolerance, noise):
            decision = "hold"
        else:
            decision = "advance"
        if decision == "advance" or final:
            if decision != "advance":
                decision += ", then advance (forced: the schedule's budget ends here)"
            self._move_reference(robust, survivals)
            if self.rollback:
                self._take_snapshot()
            clean, robust, instabilities = self._advance(target, clean)
        self._last = (clean, robust)
        self._save_state()
        self._record(step, target, clean, robust, instabilities, decision, drop, noise)

    def _unmeasured(self) -> dict:
        """The instabilities of an event without a mask change (a trace's rows share keys)."""
        keys = ("instability", "instability_recalibrated") if self.recalibrate is not None else ()
        return {key: float("nan") for key in keys or ("instability",)}

    def _advance(self, target, clean_before):
        """Apply `target`; `(clean, robust, instabilities)` measured after it. With
        `recalibrate`, `instability` is measured before the recalibration and
        `instability_recalibrated` after it."""
        self.plan.apply(target)
        self._accepted = target
        raw = None
        if self.recalibrate is not None:
            model = modelwalk.trained_model(self.model)
            raw = robust_accuracy(model, self.probe_x, self.probe_y, None, self.batch_size)
        clean, robust, _ = self._probe()
        if raw is None:
            return clean, robust, {"instability": relative_drop(clean_before, clean)}
        return (
            clean,
            robust,
            {
                "instability": relative_drop(clean_before, raw),
                "instability_recalibrated": relative_drop(clean_before, clean),
            },
        )

    def _record(self, step, target, clean, robust, instabilities, decision, drop, noise):
        self.events.append(
            {
                "step": step,
                "epoch": self.epoch,
                "planned_target": float(target),
                "accepted_target": self._accepted,
                "sparsity": model_sparsity(self.wrappers),
                "clean_accuracy": clean,
                "robust_accuracy": robust,
                **instabilities,
                "reference": self._reference,
                "drop": drop,
                "noise": noise,
                "decision": decision,
            }
        )
        # Every worker of a multi-worker job decides alike; one writes the trace.
        if self.trace_path is not None and is_chief(
            getattr(self.model, "distribute_strategy", None)
        ):
            write_trace(self.trace_path, self.events)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["clean_accuracy"], logs["robust_accuracy"] = self._last
            logs["pruning_holds"] = float(sum(e["decision"] == "hold" for e in self.events))
            logs["pruning_rollbacks"] = float(
                sum(e["decision"].startswith("rollback") for e in self.events)
            )
            logs["probe_seconds"] = self.probe_budget["seconds"]

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        final = self.plan.schedule.final_target
        if self._accepted < final - 1e-9:
            message = (
                f"AdversarialAwarePruning stopped at target {self._accepted:.3f}, short of the "
                f"schedule's final {final:.3f}: training ended before the schedule's last planned "
                "step. Train longer or end the schedule earlier."
            )
            warnings.warn(message, stacklevel=2)
            nan = float("nan")
            self._record(
                self.last_step or 0,
                final,
                *self._last,
                self._unmeasured(),
                "incomplete",
                nan,
                nan,
            )
