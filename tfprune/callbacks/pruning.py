"""`PruningCallback`: updates masks on schedule during `model.fit`, and logs sparsity."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfprune.core import checks, keras_internals, modelwalk
from tfprune.masking.ranking import pruning_plans
from tfprune.masking.recalibration import recalibrate_batchnorm
from tfprune.masking.rounding import TOLERANCE
from tfprune.masking.wrappers import followers_of, mask_optimizer_states, model_sparsity


def relative_drop(before: float, after: float) -> float:
    """An event's instability: the fraction of accuracy it lost, `(before - after) / before`.

    From "The Generalization-Stability Tradeoff In Neural Network Pruning" (Bartoldson et
    al., arXiv 1906.03728).

    Args:
        before: Accuracy just before the pruning event.
        after: Accuracy just after it.

    Returns:
        The relative drop as a float: negative where accuracy rose, 0 where `before` is 0
        (there was nothing to lose).

    Example:

    >>> relative_drop(1.0, 0.75)
    0.25
    >>> relative_drop(0.0, 0.5)
    0.0
    """
    return (before - after) / before if before > 0 else 0.0


class PruningCallback(keras.callbacks.Callback):
    """Updates the masks of a `tfprune.prune`d model as its schedule says, while it trains.

    The schedule's step counts training steps, and lives with the model: the callback writes
    it into the wrappers at every epoch's end and when training ends, so `.keras` files and
    `BackupAndRestore` checkpoints carry it with the masks. A resumed run updates the same
    masks at the same steps, also after `keras.saving.load_model(path, compile=False)` and a
    `compile` with a fresh optimizer: the schedule goes on where it stopped, counted from the
    optimizer's iterations. `restart_schedule=True` starts it over instead. Masks never
    regrow either way. (Put this callback before a `ModelCheckpoint` in `callbacks`, so the
    checkpoint sees the epoch's count.)

    At the end of every epoch it writes `sparsity` (over all pruned layers) and, with
    `log_layers`, `sparsity/<layer>` into `logs`; with a FLOPs target also
    `flops_removed`. Keras' progress bar, `CSVLogger` and `TensorBoard` show them when they
    come after this callback in the `callbacks` list. When the schedule's final FLOPs or
    latency target is reached more than 2 % off (masks never regrow, and the units left may
    only come in coarse steps, such as attention heads), it warns, with what lands closer.
    With filter granularity the units are channel groups (see `tfprune.masking.grouping`),
    and `flops_removed` counts FLOPs as `tfprune.shrink` will leave them.

    With `validation_data`, every pruning event also measures its *instability*:
    `(acc_before - acc_after) / acc_before`, accuracy on `validation_data` just before and
    right after the masks change, with no training in between ("The
    Generalization-Stability Tradeoff In Neural Network Pruning", Bartoldson et al., arXiv
    1906.03728). Each event in `events` records both accuracies and the instability; `logs`
    gets `instability`, the largest of the epoch's events (0 in an epoch without pruning);
    `tfprune.summary(model, events=callback.events)` tabulates them. `max_instability`
    caps it: an event that would exceed the cap is undone and the largest target under the
    schedule's that stays within the cap is applied instead (bisection), or none.

    Args:
        log_layers: also log each layer's sparsity. Defaults to `True`.
        data: calibration batches `(x, y)` for data-dependent criteria (`"taylor"`,
            `"pwc"`). Defaults to `None`.
        validation_data: `(x, y)` with integer labels, to measure instability. Defaults to
            `None`.
        max_instability: cap on an event's instability, in [0, 1], or `None`; needs
            `validation_data`. Defaults to `None`.
        batch_size: batch size of the accuracy measurements. Defaults to 256.
        restart_schedule: start the schedule over at step 0 in this `fit`, instead of going
            on from the steps the model has already trained (a new pruning phase with a
            fresh optimizer). Defaults to `False`.
        recalibrate: inputs (arrays, or a dataset of batches of `x` or `(x, y)`: a few
            training batches, `train_dataset.take(8)`) on which every BatchNormalization
            layer's statistics are recalibrated after each mask update
            (`tfprune.recalibrate_batchnorm`), so that validation, the instability measured
            and the next steps see statistics of the model as it is; a few hundred training
            examples. Each event then records `recalibrated` and, with `validation_data`,
            `accuracy_recalibrated` and `instability_recalibrated` (also in `logs`, the
            epoch's largest). Defaults to `None`: training normalises with batch
            statistics, so recalibrating changed what was measured between updates (mean
            instability 0.38 -> -0.06 on digits) but not the final accuracy, at up to 1.4x
            the `fit` time (BENCHMARKS.md section 20). Pass it with `validation_data` or
            `max_instability`.

    Attributes:
        events: one dict per mask update: step, epoch, target and sparsity reached (and,
            with `validation_data`, the accuracies and instability; with several pruning
            policies, the index of the policy in `plans`).
        plans: one `PruningPlan` per pruning policy of the model being trained (one, unless
            it was pruned with `prune(policies=...)`), each run on its own schedule; set when
            training begins.
        plan: the first of `plans`.
        wrappers: every `PruneWrapper` of the model.
        epoch: the current epoch.
        last_step: the last training step seen.

    Raises:
        ValueError: at the start of training, if the model has no `PruneWrapper` (it was
            never passed through `tfprune.prune`) or its wrappers disagree on the policy;
            at construction, for `max_instability` without `validation_data` or outside
            [0, 1], or validation inputs and labels of different lengths.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=3, frequency=1)
    >>> pruned = tfprune.prune(model, schedule=schedule)
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> x, y = np.random.rand(32, 4), np.arange(32) % 2
    >>> history = pruned.fit(x, y, batch_size=8, verbose=0, callbacks=[PruningCallback()])
    >>> logs = history.history
    >>> logs["sparsity"], logs["sparsity/fc"]
    ([0.5], [0.5])
    """

    def __init__(
        self,
        log_layers: bool = True,
        data=None,
        validation_data=None,
        max_instability=None,
        batch_size=256,
        restart_schedule=False,
        recalibrate=None,
    ):
        super().__init__()
        self.recalibrate = recalibrate
        #: How many times BatchNormalization statistics were recalibrated.
        self.recalibrations = 0
        self.log_layers = log_layers
        self.restart_schedule = bool(restart_schedule)
        self.data = data
        if validation_data is not None:
            if (
                len(validation_data) != 2
                or len(validation_data[0]) != len(validation_data[1])
                or not len(validation_data[0])
            ):
                raise ValueError(
                    "PruningCallback: validation_data must be (x, y) with as many labels as "
                    "inputs, at least one."
                )
            validation_data = (validation_data[0], np.asarray(validation_data[1]).reshape(-1))
        if max_instability is not None:
            if validation_data is None:
                raise ValueError(
                    "PruningCallback: max_instability needs validation_data=(x, y) to measure "
                    "accuracy before and after each event."
                )
            checks.check_number("PruningCallback: max_instability", max_instability, 0, 1)
        self.validation_data = validation_data
        self.max_instability = max_instability
        self.batch_size = batch_size
        self._applied = 0.0
        self._epoch_instability = 0.0
        #: One entry per mask update: step, epoch, target and sparsity reached.
        self.events = []
        self.wrappers = []
        self.plan = None
        self.plans = []
        self.epoch = 0
        self._epoch_start = False
        self._epoch_base = None
        self._step_offset = None
        self.last_step = None

    def on_train_begin(self, logs=None):
        try:
            self.plans = pruning_plans(self.model)
        except ValueError as error:
            raise ValueError(f"PruningCallback: {error}") from None
        if len(self.plans) > 1 and self.max_instability is not None:
            raise ValueError(
                "PruningCallback: max_instability caps one schedule, and this model has "
                f"{len(self.plans)} pruning policies. Leave it out, or prune with one policy."
            )
        self.plan = self.plans[0]
        self.wrappers = [w for plan in self.plans for w in plan.wrappers]
        for plan in self.plans:
            plan.data = self.data
        self.last_step = None
        self._step_offset = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._epoch_start = True
        self._epoch_base = None
        self._epoch_instability = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        # The step is the optimizer's counter plus an offset, read once per epoch (after
        # BackupAndRestore or a reload has restored it); reading it every batch would stall
        # Keras' pipeline. `batch` counts steps within the epoch, also under
        # steps_per_execution.
        if self._epoch_base is None:
            iterations = self._iterations()
            if self._step_offset is None:
                self._step_offset = self._offset_for(iterations)
            self._epoch_base = iterations + self._step_offset - batch
        step = self._epoch_base + batch
        # With steps_per_execution > 1 Keras calls back only every few steps: catch up on
        # the steps in between, so an update planned there is applied now, not skipped.
        first = step if self.last_step is None else min(self.last_step + 1, step)
        due = []
        for plan in self.plans:  # each policy on its own schedule
            targets = [
                plan.schedule(s, self.epoch, self._epoch_start and s == step)
                for s in range(first, step + 1)
            ]
            target = next((t for t in reversed(targets) if t is not None), None)
            if target is not None:
                due.append((plan, target))
        if due:
            # On JAX the weights live in the trainer's state during an epoch: read them
            # back, and the next step reads the new masks and weights from the variables.
            keras_internals.sync_training_state(self.model)
        for plan, target in due:
            if plan is self.plan:
                self.on_planned_update(step, target)
            else:
                self._update(plan, step, target)
        if due:
            mask_optimizer_states(self.model, getattr(self.model, "optimizer", None))
        self.last_step = step
        self._epoch_start = False

    def _iterations(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _offset_for(self, iterations: int) -> int:
        """Steps to add to the optimizer's count: those trained before it (a fresh optimizer)."""
        if self.restart_schedule:
            return -iterations
        seen = self.wrappers[0].steps_seen()
        return seen - iterations if iterations < seen else 0

    def _record_steps(self) -> None:
        if self._step_offset is None:  # no batch ran
            return
        steps = self._iterations() + self._step_offset
        for wrapper in self.wrappers:
            wrapper.set_schedule_values({"steps_seen": float(steps)})

    def on_planned_update(self, step: int, target: float) -> None:
        """Called at each step where the schedule plans a mask update; applies it.

        Subclasses (`AdversarialAwarePruning`) override this to decide otherwise.

        Args:
            step: the training step.
            target: the schedule's target for this step.
        """
        self._update(self.plan, step, target)

    def _update(self, plan, step: int, target: float) -> None:
        """Apply one policy's planned update and record it in `events`."""
        event = {"step": step, "epoch": self.epoch, "target": target}
        if len(self.plans) > 1:
            event["policy"] = self.plans.index(plan)
        if self.validation_data is None:
            plan.apply(target)
        else:
            event.update(self._apply_measured(plan, target))
            self._epoch_instability = max(self._epoch_instability, event["instability"])
        if self.recalibrate is not None:
            event.update(self._recalibrated(event))
        event["sparsity"] = model_sparsity(self.wrappers)
        self.events.append(event)
        if plan.target != "sparsity" and target >= plan.schedule.final_target - 1e-9:
            removed = plan.removed()
            if abs(removed - target) > TOLERANCE:
                # Masks never regrow: what earlier updates took is gone, and the units left
                # (an attention layer's heads, whole tiles) may only come in coarse steps.
                other = (
                    "ranking='global' (units ranked across layers)"
                    if plan.ranking == "local"
                    else "ranking='local' (every layer to the target), a one-shot schedule"
                )
                warnings.warn(
                    f"PruningCallback: the schedule's final {plan.target} target {target:.3f} "
                    f"was reached as {removed:.3f} removed: the units still prunable at the "
                    f"last update come in steps too coarse to land within {TOLERANCE:.0%}. "
                    f"{other} or round_to=1 may land closer.",
                    stacklevel=2,
                )

    def recalibrate_now(self) -> None:
        """Recalibrate every BatchNormalization layer of the model on `recalibrate`, and
        count it in `recalibrations`."""
        recalibrate_batchnorm(
            modelwalk.trained_model(self.model), self.recalibrate, self.batch_size, verbose=False
        )
        self.recalibrations += 1

    def _recalibrated(self, event) -> dict:
        """Recalibrate BatchNormalization after an update; with `validation_data`, the
        accuracy and instability that follow."""
        self.recalibrate_now()
        if "accuracy_before" not in event:
            return {"recalibrated": True}
        after = self._accuracy()
        return {
            "recalibrated": True,
            "accuracy_recalibrated": after,
            "instability_recalibrated": relative_drop(event["accuracy_before"], after),
        }

    # ------------------------------------------------------- instability (§8)
    def _accuracy(self) -> float:
        x, y = self.validation_data
        probabilities = self.model.predict(x, batch_size=self.batch_size, verbose=0)
        return float(np.mean(np.argmax(probabilities, axis=-1).reshape(-1) == y))

    def weights_snapshot(self) -> list:
        """Every weight of the pruned layers and their BN followers, masks included.

        Returns:
            `(variable, value)` pairs, for `restore_snapshot`.
        """
        layers = self.wrappers + followers_of(modelwalk.trained_model(self.model))
        return [(v, keras.ops.convert_to_numpy(v)) for layer in layers for v in layer.weights]

    @staticmethod
    def restore_snapshot(snapshot) -> None:
        """Assign every variable of a `weights_snapshot` its saved value.

        Args:
            snapshot: what `weights_snapshot` returned.
        """
        for variable, value in snapshot:
            variable.assign(value)

    def _apply_measured(self, plan, target: float) -> dict:
        """Apply `target` (or less, under `max_instability`) and measure its instability."""
        before = self._accuracy()

        def attempt(value):
            plan.apply(value)
            after = self._accuracy()
            return after, relative_drop(before, after)

        snapshot = self.weights_snapshot() if self.max_instability is not None else None
        after, instability = attempt(target)
        applied, capped = target, False
        if snapshot is not None and instability > self.max_instability:
            capped, low, high = True, self._applied, target
            applied, after, instability = self._applied, before, 0.0
            for _ in range(5):
                self.restore_snapshot(snapshot)
                middle = (low + high) / 2
                tried_after, tried = attempt(middle)
                if tried <= self.max_instability:
                    applied, after, instability, low = middle, tried_after, tried, middle
                else:
                    high = middle
            self.restore_snapshot(snapshot)
            if applied > self._applied:
                plan.apply(applied)
        self._applied = max(self._applied, applied)
        return {
            "applied_target": applied,
            "accuracy_before": before,
            "accuracy_after": after,
            "instability": instability,
            "capped": capped,
        }

    def on_epoch_end(self, epoch, logs=None):
        self._record_steps()
        if logs is None:
            return
        logs["sparsity"] = model_sparsity(self.wrappers)
        if self.log_layers:
            for wrapper in self.wrappers:
                logs[f"sparsity/{wrapper.layer.name}"] = wrapper.sparsity()
        for target in ("flops", "latency"):  # each policy's share of the model's cost
            plans = [plan for plan in self.plans if plan.target == target]
            if plans:
                logs[f"{target}_removed"] = sum(plan.removed() for plan in plans)
        if self.validation_data is not None:
            logs["instability"] = self._epoch_instability
            if self.recalibrate is not None:
                logs["instability_recalibrated"] = max(
                    (e["instability_recalibrated"] for e in self.events if e["epoch"] == epoch),
                    default=0.0,
                )

    def on_train_end(self, logs=None):
        self._record_steps()
        final = self.plan.schedule.final_target
        if self.max_instability is not None and self.events and self._applied < final - 1e-9:
            warnings.warn(
                f"PruningCallback: max_instability={self.max_instability} held pruning at target "
                f"{self._applied:.3f}, short of the schedule's {final:.3f}. Raise the cap or prune "
                "more gradually.",
                stacklevel=2,
            )
