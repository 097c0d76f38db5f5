"""Callbacks: `PruningCallback` updates masks on schedule during `model.fit` and logs
sparsity; `AdversarialAwarePruning` also watches robust accuracy and paces pruning by it."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import warnings

import keras
import numpy as np

from tfprune import adversarial
from tfprune.ranking import PruningPlan
from tfprune.wrappers import followers_of


def model_sparsity(wrappers) -> float:
    """Fraction of all prunable weights (across `wrappers`) that the masks zero."""
    masks = [w.mask_array() for w in wrappers]
    total = sum(m.size for m in masks)
    return float(sum(m.size - m.sum() for m in masks) / total) if total else 0.0


class PruningCallback(keras.callbacks.Callback):
    """Updates the masks of a `tfprune.prune`d model as its schedule says, while it trains.

    The schedule's step is the optimizer's iteration count, which Keras saves in `.keras`
    files and `BackupAndRestore` checkpoints: a resumed run updates the same masks at the
    same steps. Masks never regrow, so recompiling with a fresh optimizer for a fine-tune
    cannot undo pruning.

    At the end of every epoch it writes `sparsity` (over all pruned layers) and, with
    `log_layers`, `sparsity/<layer>` into `logs`; with a FLOPs target also
    `flops_removed`. Keras' progress bar, `CSVLogger` and `TensorBoard` show them when they
    come after this callback in the `callbacks` list.

    With `validation_data`, every pruning event also measures its *instability*
    (Bartoldson et al., PAPERS.md §8): `(acc_before - acc_after) / acc_before`, accuracy on
    `validation_data` just before and right after the masks change, with no training in
    between. Each event in `events` records both accuracies and the instability; `logs`
    gets `instability`, the largest of the epoch's events (0 in an epoch without pruning);
    `tfprune.summary(model, events=callback.events)` tabulates them. `max_instability`
    caps it: an event that would exceed the cap is undone and the largest target under the
    schedule's that stays within the cap is applied instead (bisection), or none.

    Args:
        log_layers: also log each layer's sparsity.
        data: calibration batches for data-dependent criteria (`"taylor"`, `"lap_forward"`).
        validation_data: `(x, y)` with integer labels, to measure instability.
        max_instability: cap on an event's instability, in [0, 1], or None; needs
            `validation_data`.
        batch_size: batch size of the accuracy measurements.

    With filter granularity the units are channel groups (see `tfprune.grouping`), and
    `flops_removed` counts FLOPs as `tfprune.shrink` will leave them.

    Raises:
        ValueError: at the start of training, if the model has no `PruneWrapper` (it was
            never passed through `tfprune.prune`) or its wrappers disagree on the policy;
            at construction, for `max_instability` without `validation_data` or outside
            [0, 1], or validation inputs and labels of different lengths.

    Example:

    >>> pruned = tfprune.prune(model, schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 300, frequency=25))
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> pruned.fit(x, y, epochs=5, callbacks=[tfprune.PruningCallback(), keras.callbacks.CSVLogger("log.csv")])
    """

    def __init__(self, log_layers: bool = True, data=None, validation_data=None, max_instability=None, batch_size=256):
        super().__init__()
        self.log_layers = log_layers
        self.data = data
        if validation_data is not None:
            if len(validation_data) != 2 or len(validation_data[0]) != len(validation_data[1]) or not len(validation_data[0]):
                raise ValueError("PruningCallback: validation_data must be (x, y) with as many labels as inputs, at least one.")
            validation_data = (validation_data[0], np.asarray(validation_data[1]).reshape(-1))
        if max_instability is not None:
            if validation_data is None:
                raise ValueError("PruningCallback: max_instability needs validation_data=(x, y) to measure accuracy before and after each event.")
            if isinstance(max_instability, bool) or not isinstance(max_instability, (int, float)) or not 0 <= max_instability <= 1:
                raise ValueError(f"PruningCallback: max_instability must be a number in [0, 1], got {max_instability!r}.")
        self.validation_data = validation_data
        self.max_instability = max_instability
        self.batch_size = batch_size
        self._applied = 0.0
        self._epoch_instability = 0.0
        #: One entry per mask update: step, epoch, target and sparsity reached.
        self.events = []
        self._wrappers = []
        self._plan = None
        self._epoch = 0
        self._epoch_start = False
        self._epoch_base = None
        self._last_step = None

    def on_train_begin(self, logs=None):
        try:
            self._plan = PruningPlan(self.model)
        except ValueError as error:
            raise ValueError(f"PruningCallback: {error}") from None
        self._wrappers = self._plan.wrappers
        self._plan.data = self.data
        self._last_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = True
        self._epoch_base = None
        self._epoch_instability = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        # The step is the optimizer's counter, read once per epoch (after BackupAndRestore
        # or a reload has restored it); reading it every batch would stall Keras' pipeline.
        # `batch` counts steps within the epoch, also under steps_per_execution.
        if self._epoch_base is None:
            self._epoch_base = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - batch
        step = self._epoch_base + batch
        schedule = self._plan.schedule
        # With steps_per_execution > 1 Keras calls back only every few steps: catch up on
        # the steps in between, so an update planned there is applied now, not skipped.
        first = step if self._last_step is None else min(self._last_step + 1, step)
        targets = [schedule(s, self._epoch, self._epoch_start and s == step) for s in range(first, step + 1)]
        self._last_step = step
        self._epoch_start = False
        target = next((t for t in reversed(targets) if t is not None), None)
        if target is not None:
            self.on_planned_update(step, target)

    def on_planned_update(self, step: int, target: float) -> None:
        """Called at each step where the schedule plans a mask update; applies it.

        Subclasses (`AdversarialAwarePruning`) override this to decide otherwise.

        Args:
            step: the training step.
            target: the schedule's target for this step.
        """
        event = {"step": step, "epoch": self._epoch, "target": target}
        if self.validation_data is None:
            self._plan.apply(target)
        else:
            event.update(self._apply_measured(target))
            self._epoch_instability = max(self._epoch_instability, event["instability"])
        event["sparsity"] = model_sparsity(self._wrappers)
        self.events.append(event)

    # ------------------------------------------------------- instability (§8)
    def _accuracy(self) -> float:
        x, y = self.validation_data
        probabilities = self.model.predict(x, batch_size=self.batch_size, verbose=0)
        return float(np.mean(np.argmax(probabilities, axis=-1).reshape(-1) == y))

    def _weights_snapshot(self) -> list:
        """Every weight of the pruned layers and their BN followers, masks included."""
        layers = self._wrappers + followers_of(getattr(self.model, "inner_model", self.model))
        return [(v, keras.ops.convert_to_numpy(v)) for layer in layers for v in layer.weights]

    @staticmethod
    def _restore(snapshot) -> None:
        for variable, value in snapshot:
            variable.assign(value)

    def _apply_measured(self, target: float) -> dict:
        """Apply `target` (or less, under `max_instability`) and measure its instability."""
        before = self._accuracy()

        def attempt(value):
            self._plan.apply(value)
            after = self._accuracy()
            return after, (before - after) / before if before > 0 else 0.0

        snapshot = self._weights_snapshot() if self.max_instability is not None else None
        after, instability = attempt(target)
        applied, capped = target, False
        if snapshot is not None and instability > self.max_instability:
            capped, low, high = True, self._applied, target
            applied, after, instability = self._applied, before, 0.0
            for _ in range(5):
                self._restore(snapshot)
                middle = (low + high) / 2
                tried_after, tried = attempt(middle)
                if tried <= self.max_instability:
                    applied, after, instability, low = middle, tried_after, tried, middle
                else:
                    high = middle
            self._restore(snapshot)
            if applied > self._applied:
                self._plan.apply(applied)
        self._applied = max(self._applied, applied)
        return {
            "applied_target": applied,
            "accuracy_before": before,
            "accuracy_after": after,
            "instability": instability,
            "capped": capped,
        }

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["sparsity"] = model_sparsity(self._wrappers)
        if self.log_layers:
            for wrapper in self._wrappers:
                logs[f"sparsity/{wrapper.layer.name}"] = wrapper.sparsity()
        if self._plan.by_flops:
            logs["flops_removed"] = self._plan.removed()
        if self.validation_data is not None:
            logs["instability"] = self._epoch_instability

    def on_train_end(self, logs=None):
        final = self._plan.schedule.final_target
        if self.max_instability is not None and self.events and self._applied < final - 1e-9:
            warnings.warn(
                f"PruningCallback: max_instability={self.max_instability} held pruning at target {self._applied:.3f}, "
                f"short of the schedule's {final:.3f}. Raise the cap or prune more gradually.",
                stacklevel=2,
            )


class AdversarialAwarePruning(PruningCallback):
    """A pruning schedule that watches robust accuracy, and holds or rolls back when it falls.

    At every step where the schedule plans a mask update, it measures clean and robust
    accuracy on a held-out probe set (`robust_accuracy` with `attack`), then decides:

    - **advance** when robust accuracy is within `tolerance` of its level at the last
      accepted step: apply the schedule's target, and record the *instability*
      `(clean_before - clean_after) / clean_before` measured right after the mask change;
    - **hold** when it has fallen by more than `tolerance`: keep the current masks and let
      training recover;
    - **rollback** when it has fallen by more than `hard_limit`: restore the masks and
      weights from before the last mask change;
    - **advance (forced)** at the schedule's last planned step, so the final target is
      reached within the budget whatever the probe says (the decision log says so).

    If training ends before the final target, it warns and records `incomplete`. Every
    decision is appended to `events`, written to `trace_path` (CSV, or JSON if the name
    ends in .json) and summarised in `logs` at each epoch end: `clean_accuracy`,
    `robust_accuracy` (last probe), `pruning_holds`, `pruning_rollbacks`. The accepted
    target and reference level live in the wrappers, so `BackupAndRestore` and `.keras`
    files restore them (the in-memory rollback snapshot does not survive a restart).

    Args:
        probe_data: `(x, y)` held-out examples with integer labels.
        attack: a `tfprune` attack for robust accuracy (e.g. `PGD(eps=0.1)`).
        tolerance: robust-accuracy drop (absolute, as a fraction) that makes it hold.
        hard_limit: drop that makes it roll back; >= tolerance.
        trace_path: where to write the decision trace, or `None`.
        batch_size: probe batch size.
        log_layers: also log each layer's sparsity.
        measure: optional `model -> (clean, robust)` replacing the probe measurement
            (for custom metrics or scripted tests).

    Raises:
        ValueError: for missing or empty probe data, labels that do not fit the model,
            a negative tolerance or a hard limit below it.

    Example:

    >>> callback = tfprune.AdversarialAwarePruning((x_val, y_val), tfprune.PGD(eps=0.1), tolerance=0.03)
    >>> trainer.fit(x, y, epochs=20, callbacks=[callback])
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
    ):
        super().__init__(log_layers=log_layers)
        if probe_data is None or len(probe_data) != 2 or len(probe_data[0]) == 0:
            raise ValueError("AdversarialAwarePruning needs probe_data=(x, y) with at least one held-out example.")
        if len(probe_data[0]) != len(probe_data[1]):
            raise ValueError(f"probe_data: {len(probe_data[0])} inputs but {len(probe_data[1])} labels.")
        if not isinstance(attack, adversarial.Attack):
            raise TypeError(f"attack must be a tfprune attack (e.g. tfprune.PGD(eps=0.1)), got {attack!r}.")
        for name, value in (("tolerance", tolerance), ("hard_limit", hard_limit)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        if hard_limit < tolerance:
            raise ValueError(f"hard_limit ({hard_limit}) must be >= tolerance ({tolerance}).")
        self.probe_x, self.probe_y = np.asarray(probe_data[0], np.float32), np.asarray(probe_data[1])
        self.attack = attack
        self.tolerance, self.hard_limit = float(tolerance), float(hard_limit)
        self.trace_path = None if trace_path is None else pathlib.Path(trace_path)
        self.batch_size = batch_size
        self.measure = measure
        self._snapshot = None
        self._accepted = 0.0
        self._reference = None
        self._restored = False
        self._last = (float("nan"), float("nan"))

    # ----------------------------------------------------------------- state
    def _state_variable(self):
        return self._wrappers[0].schedule_state

    def _save_state(self):
        self._state_variable().assign(
            [1.0, self._accepted, -1.0 if self._reference is None else self._reference, 0.0]
        )

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._restored = False
        model = getattr(self.model, "inner_model", self.model)
        if self.measure is None:
            adversarial.output_kind(model, self.attack.output)
            adversarial._check_labels(model, self.probe_y)

    def _restore_state(self):
        # Read lazily (at the first planned update), after BackupAndRestore has loaded weights.
        active, accepted, reference, _ = keras.ops.convert_to_numpy(self._state_variable())
        if active:
            self._accepted = float(accepted)
            self._reference = None if reference < 0 else float(reference)
        self._restored = True

    def _probe(self):
        model = getattr(self.model, "inner_model", self.model)
        if self.measure is not None:
            return tuple(float(v) for v in self.measure(model))
        clean = adversarial.robust_accuracy(model, self.probe_x, self.probe_y, None, self.batch_size)
        robust = adversarial.robust_accuracy(model, self.probe_x, self.probe_y, self.attack, self.batch_size)
        return clean, robust

    # ------------------------------------------------------------ snapshots
    def _take_snapshot(self):
        self._snapshot = (self._accepted, self._weights_snapshot())

    def _roll_back(self):
        accepted, saved = self._snapshot
        self._restore(saved)
        self._accepted = accepted
        self._snapshot = None

    # ------------------------------------------------------------- decision
    def on_planned_update(self, step, target):
        if not self._restored:
            self._restore_state()
        if target <= self._accepted + 1e-12:
            return
        final = target >= self._plan.schedule.final_target - 1e-12
        clean, robust = self._probe()
        if self._reference is None:
            self._reference = robust
        drop = self._reference - robust
        instability = float("nan")
        if drop > self.hard_limit and self._snapshot is not None:
            self._roll_back()
            decision = "rollback"
            clean, robust = self._probe()
        elif drop > self.tolerance:
            decision = "hold"
        else:
            decision = "advance"
        if decision == "advance" or final:
            if decision != "advance":
                decision += ", then advance (forced: the schedule's budget ends here)"
            self._reference = robust
            self._take_snapshot()
            self._plan.apply(target)
            self._accepted = target
            clean_after, robust = self._probe()
            instability = (clean - clean_after) / clean if clean > 0 else 0.0
            clean = clean_after
        self._last = (clean, robust)
        self._save_state()
        self._record(step, target, clean, robust, instability, decision)

    def _record(self, step, target, clean, robust, instability, decision):
        self.events.append(
            {
                "step": step,
                "epoch": self._epoch,
                "planned_target": float(target),
                "accepted_target": self._accepted,
                "sparsity": model_sparsity(self._wrappers),
                "clean_accuracy": clean,
                "robust_accuracy": robust,
                "instability": instability,
                "decision": decision,
            }
        )
        if self.trace_path is not None:
            _write_trace(self.trace_path, self.events)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if logs is not None:
            logs["clean_accuracy"], logs["robust_accuracy"] = self._last
            logs["pruning_holds"] = float(sum(e["decision"] == "hold" for e in self.events))
            logs["pruning_rollbacks"] = float(sum(e["decision"].startswith("rollback") for e in self.events))

    def on_train_end(self, logs=None):
        final = self._plan.schedule.final_target
        if self._accepted < final - 1e-9:
            message = (
                f"AdversarialAwarePruning stopped at target {self._accepted:.3f}, short of the schedule's final "
                f"{final:.3f}: training ended before the schedule's last planned step. Train longer or end the "
                "schedule earlier."
            )
            warnings.warn(message, stacklevel=2)
            self._record(self._last_step or 0, final, *self._last, float("nan"), "incomplete")


def _write_trace(path: pathlib.Path, events) -> None:
    """Write the decision trace atomically (CSV, or JSON for a .json path)."""
    temporary = path.with_name(f".{path.name}.part")
    if path.suffix == ".json":
        temporary.write_text(json.dumps(events, indent=2))
    else:
        with temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(events[0]))
            writer.writeheader()
            writer.writerows(events)
    os.replace(temporary, path)
