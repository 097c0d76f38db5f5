"""ChiefOnly: the wrapped callback runs on the chief; other workers skip it, except the
hooks listed to run everywhere (BackupAndRestore's restore)."""

import json

import keras
import numpy as np
import pytest

import tfprune


def second_worker(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
                "task": {"type": "worker", "index": 1},
            }
        ),
    )


def fit(callbacks, epochs=1, model=None):
    keras.utils.set_random_seed(0)
    model = model or keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def test_the_chief_runs_the_callback(tmp_path):
    fit(
        [tfprune.callbacks.ChiefOnly(keras.callbacks.CSVLogger(str(tmp_path / "log.csv")))],
        epochs=2,
    )
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 3  # header and 2 epochs


def test_other_workers_write_nothing(tmp_path, monkeypatch):
    second_worker(monkeypatch)
    fit(
        [
            tfprune.callbacks.ChiefOnly(keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))),
            tfprune.callbacks.ChiefOnly(keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"))),
            tfprune.callbacks.ChiefOnly(keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))),
        ]
    )
    assert list(tmp_path.iterdir()) == []


def test_other_workers_restore_the_chiefs_backup(tmp_path, monkeypatch):
    backup = str(tmp_path / "backup")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        fit(
            [tfprune.callbacks.ChiefOnly(keras.callbacks.BackupAndRestore(backup)), Stop()],
            epochs=3,
        )
    second_worker(monkeypatch)
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs.append(epoch))
    fit([tfprune.callbacks.ChiefOnly(keras.callbacks.BackupAndRestore(backup)), seen], epochs=3)
    assert epochs == [2]  # restored: epochs 0 and 1 were backed up before Stop raised
    assert (tmp_path / "backup").exists()  # and the chief's backup is left to the chief


def test_bad_arguments():
    with pytest.raises(TypeError, match="ChiefOnly: callback must be a keras.callbacks.Callback"):
        tfprune.callbacks.ChiefOnly(lambda: None)
    with pytest.raises(ValueError, match=r"every_worker names no callback hook: \['on_save'\]"):
        tfprune.callbacks.ChiefOnly(keras.callbacks.History(), every_worker=["on_save"])
