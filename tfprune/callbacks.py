"""`PruningCallback`: updates masks on schedule during `model.fit` and logs sparsity."""

from __future__ import annotations

import keras

from tfprune.ranking import PruningPlan


def model_sparsity(wrappers) -> float:
    """Fraction of all prunable weights (across `wrappers`) that the masks zero."""
    total = sum(w.mask_array().size for w in wrappers)
    zeros = sum(w.mask_array().size - w.mask_array().sum() for w in wrappers)
    return float(zeros / total) if total else 0.0


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

    Args:
        log_layers: also log each layer's sparsity.

    With filter granularity the units are channel groups (see `tfprune.grouping`), and
    `flops_removed` counts FLOPs as `tfprune.shrink` will leave them.

    Raises:
        ValueError: at the start of training, if the model has no `PruneWrapper` (it was
            never passed through `tfprune.prune`) or its wrappers disagree on the policy.

    Example:

    >>> pruned = tfprune.prune(model, schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 300, frequency=25))
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> pruned.fit(x, y, epochs=5, callbacks=[tfprune.PruningCallback(), keras.callbacks.CSVLogger("log.csv")])
    """

    def __init__(self, log_layers: bool = True):
        super().__init__()
        self.log_layers = log_layers
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
        self._last_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = True
        self._epoch_base = None

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
        if target is None:
            return
        self._plan.apply(target)
        self.events.append(
            {"step": step, "epoch": self._epoch, "target": target, "sparsity": model_sparsity(self._wrappers)}
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["sparsity"] = model_sparsity(self._wrappers)
        if self.log_layers:
            for wrapper in self._wrappers:
                logs[f"sparsity/{wrapper.layer.name}"] = wrapper.sparsity()
        if self._plan.by_flops:
            logs["flops_removed"] = self._plan.removed()
