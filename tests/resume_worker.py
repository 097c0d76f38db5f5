"""Run by test_kill_resume.py: prune with BackupAndRestore, and die (SIGKILL) mid-epoch while
writing a file, if told to.

    python resume_worker.py OUT_DIR {none,keras,tflite}

Trains 4 epochs of 8 steps with `PruningCallback`, `CSVLogger(append=True)` and
`BackupAndRestore(double_checkpoint=True)` in OUT_DIR. With `keras` or `tflite`, at the 4th
step of epoch 2 (pruning has started at step 4) it saves `model.keras` and `model.tflite`
whole, then writes one of them again and is killed in the middle:
- `keras`: a thread SIGKILLs the process as soon as `tfprune.save_model`'s temporary file
  appears, while Keras is writing the archive into it;
- `tflite`: the bytes of the temporary file are written halfway, then the process SIGKILLs
  itself (the rename never happens).
Run to the end, it writes `result.json`: masks, kernels and the schedule's step.
"""

import json
import os
import pathlib
import signal
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from distributed_network import network  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import load_digits  # noqa: E402

OUT, DIE = pathlib.Path(sys.argv[1]), sys.argv[2]
DIE_AT = (2, 3)  # (epoch, batch)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def die_once_written_into(pattern):
    """Kill this process as soon as a file matching `pattern` appears in OUT."""

    def watch():
        while not list(OUT.glob(pattern)):
            time.sleep(0.0005)
        die()

    threading.Thread(target=watch, daemon=True).start()


def write_half_then_die(self, data):
    with open(self, "wb") as file:
        file.write(bytes(data)[: len(data) // 2])
        file.flush()
    die()


class DieWhileWriting(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if DIE == "none" or (self.epoch, batch) != DIE_AT:
            return
        tfprune.save_model(self.model, OUT / "model.keras")
        tfprune.export_tflite(self.model, OUT / "model.tflite")
        if DIE == "keras":
            die_once_written_into(".model.keras.*")
            tfprune.save_model(self.model, OUT / "model.keras")
        else:
            pathlib.Path.write_bytes = write_half_then_die
            tfprune.export_tflite(self.model, OUT / "model.tflite")
        raise AssertionError("the process should have died while writing")


def main():
    (x, y), _ = load_digits()
    x, y = x[:256], y[:256]
    keras.utils.set_random_seed(0)
    schedule = tfprune.PolynomialDecay(0.0, 0.6, begin_step=4, end_step=24, frequency=4)
    pruned = tfprune.prune(network(), schedule=schedule)
    pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    callbacks = [
        tfprune.PruningCallback(),
        keras.callbacks.CSVLogger(str(OUT / "log.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(OUT / "backup"), double_checkpoint=True),
        DieWhileWriting(),
    ]
    pruned.fit(x, y, batch_size=32, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    wrappers = tfprune.wrappers_of(pruned)
    result = {
        "masks": {w.name: keras.ops.convert_to_numpy(w.mask).tolist() for w in wrappers},
        "kernels": {
            w.name: keras.ops.convert_to_numpy(w.pruned_variable).tolist() for w in wrappers
        },
        "steps": [w.steps_seen() for w in wrappers],
    }
    (OUT / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
