"""`ChiefOnly`: run a callback that writes files on the chief worker only."""

from __future__ import annotations

import keras

from tfprune.core.distribution import is_chief

HOOKS = tuple(
    f"on_{stage}_{moment}"
    for stage in ("epoch", "train", "test", "predict", "train_batch", "test_batch", "predict_batch")
    for moment in ("begin", "end")
)


class ChiefOnly(keras.callbacks.Callback):
    """Runs `callback` on the chief worker only, so workers do not overwrite its files.

    Keras 3 callbacks write on every process of a multi-worker job: `ModelCheckpoint`,
    `BackupAndRestore`, `CSVLogger` and `TensorBoard` would have each worker write the
    same files. Wrapped, they run on the chief (`tfprune.callbacks.is_chief`); the other workers
    skip them, except for the hooks in `every_worker`. `BackupAndRestore` needs its
    `on_train_begin` on every worker, so that each worker restores the chief's backup
    (from a file system the workers share), and that is the default for it.

    Args:
        callback: a `keras.callbacks.Callback`.
        every_worker: names of hooks that run on every worker, or `None` for the default:
            `("on_train_begin",)` for a `BackupAndRestore`, none otherwise.
            Defaults to `None`.

    Raises:
        TypeError: if `callback` is not a Keras callback.
        ValueError: for a name in `every_worker` that is not a callback hook.

    Example:

    ```python
    callbacks = [
        tfprune.PruningCallback(),
        tfprune.callbacks.ChiefOnly(keras.callbacks.BackupAndRestore("backup")),
        tfprune.callbacks.ChiefOnly(keras.callbacks.ModelCheckpoint("pruned.keras")),
    ]
    ```
    """

    def __init__(self, callback, every_worker=None):
        super().__init__()
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                f"ChiefOnly: callback must be a keras.callbacks.Callback, got "
                f"{type(callback).__name__}."
            )
        if every_worker is None:
            restores = isinstance(callback, keras.callbacks.BackupAndRestore)
            every_worker = ("on_train_begin",) if restores else ()
        unknown = sorted(set(every_worker) - set(HOOKS))
        if unknown:
            raise ValueError(f"ChiefOnly: every_worker names no callback hook: {unknown}.")
        self.callback = callback
        self.every_worker = tuple(every_worker)
        self.chief = True

    def set_model(self, model):
        """Give both callbacks the model, and find out whether this worker is the chief.

        Args:
            model: the model being trained.
        """
        super().set_model(model)
        self.chief = is_chief(getattr(model, "distribute_strategy", None))
        self.callback.set_model(model)

    def set_params(self, params):
        """Give the wrapped callback `fit`'s parameters too.

        Args:
            params: the parameters dict `fit` passes (epochs, steps, verbosity).
        """
        super().set_params(params)
        self.callback.set_params(params)


def _forward(hook):
    def forward(self, *args, **kwargs):
        if self.chief or hook in self.every_worker:
            getattr(self.callback, hook)(*args, **kwargs)

    forward.__name__ = hook
    forward.__doc__ = f"`callback.{hook}` on the chief (and on every worker if listed)."
    return forward


for _hook in HOOKS:
    setattr(ChiefOnly, _hook, _forward(_hook))
del _hook
