"""Run by test_multi_worker.py: one process of a two-worker MultiWorkerMirroredStrategy job
(or, with index -1, the same training in one process).

    python multi_worker_worker.py INDEX PORT0,PORT1 OUT_DIR

Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the
training is the custom loop the README shows: the strategy runs each step, and a
`keras.callbacks.CallbackList` drives the same callbacks `fit` would. For each mode (plain
`PruningCallback`, then `AdversarialAwarePruning`) it prints one JSON line with the masks,
weights, losses and sparsity log, and what this process wrote to its own `OUT_DIR/<mode>`
(the paths differ per worker only so that the test can tell who wrote what). Last it tries
`fit` and reports how it fails.
"""

import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
INDEX, PORTS, OUT = int(sys.argv[1]), sys.argv[2].split(","), pathlib.Path(sys.argv[3])
if INDEX >= 0:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in PORTS]},
            "task": {"type": "worker", "index": INDEX},
        }
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from distributed_network import network  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import load_digits  # noqa: E402

GLOBAL_BATCH = 32
STRATEGY = (
    tf.distribute.MultiWorkerMirroredStrategy() if INDEX >= 0 else tf.distribute.get_strategy()
)


def distributed(x, y):
    """The global batches, each split between the workers (every worker reads all data)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    return STRATEGY.experimental_distribute_dataset(dataset)


def train(mode, x, y, out):
    keras.utils.set_random_seed(0)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=12, frequency=4)
    with STRATEGY.scope():
        pruned = tfprune.prune(network(), schedule=schedule)
        pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        pruned.optimizer.build(pruned.trainable_variables)
    loss_of = keras.losses.SparseCategoricalCrossentropy(reduction="sum")

    @tf.function
    def train_step(batch):
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_of(yb, pruned(xb, training=True)) / GLOBAL_BATCH
            gradients = tape.gradient(loss, pruned.trainable_variables)
            pruned.optimizer.apply(gradients, pruned.trainable_variables)
            return loss

        return STRATEGY.reduce("SUM", STRATEGY.run(step, args=batch), axis=None)

    if mode == "aware":
        schedule_callback = tfprune.AdversarialAwarePruning(
            (x[:64], y[:64]), tfprune.FGSM(0.05), tolerance=1.0, hard_limit=1.0,
            trace_path=out / "trace.csv",
        )  # fmt: skip
    else:
        schedule_callback = tfprune.PruningCallback()
    callbacks = keras.callbacks.CallbackList(
        [
            schedule_callback,
            tfprune.callbacks.ChiefOnly(
                keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=False)
            ),
            tfprune.callbacks.ChiefOnly(
                keras.callbacks.ModelCheckpoint(str(out / "checkpoint.keras"))
            ),
        ],
        model=pruned,
    )
    log = []
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_begin(epoch)
        losses = []
        for batch_index, batch in enumerate(distributed(x, y)):
            callbacks.on_train_batch_begin(batch_index)
            losses.append(float(train_step(batch)))
            callbacks.on_train_batch_end(batch_index, {"loss": losses[-1]})
        logs = {"loss": float(np.mean(losses))}
        callbacks.on_epoch_end(epoch, logs)
        log.append(logs)
    callbacks.on_train_end()
    if tfprune.callbacks.is_chief(STRATEGY):
        tfprune.export_tflite(tfprune.strip(pruned), out / "pruned.tflite")
    wrappers = tfprune.wrappers_of(pruned)
    return pruned, {
        "mode": mode,
        "index": INDEX,
        "chief": tfprune.callbacks.is_chief(STRATEGY),
        "replicas": STRATEGY.num_replicas_in_sync,
        "log": log,
        "masks": {
            w.name: keras.ops.convert_to_numpy(w.mask).astype(int).tolist() for w in wrappers
        },
        "kernels": {
            w.name: keras.ops.convert_to_numpy(w.pruned_variable).tolist() for w in wrappers
        },
        "steps": [w.steps_seen() for w in wrappers],
        "decisions": [e.get("decision") for e in schedule_callback.events],
        "written": sorted(str(p.relative_to(out)) for p in out.rglob("*")),
    }


def main():
    (x, y), _ = load_digits()
    x, y = x[:256].astype("float32"), y[:256]
    for mode in ("plain", "aware"):
        out = OUT / mode
        out.mkdir(parents=True)
        pruned, result = train(mode, x, y, out)
        print(json.dumps(result), flush=True)
    try:
        pruned.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, verbose=0)
        fit_error = None
    except Exception as error:  # noqa: BLE001 (reported, not handled)
        fit_error = f"{type(error).__name__}: {str(error)[:200]}"
    print(json.dumps({"mode": "fit", "index": INDEX, "error": fit_error}), flush=True)


if __name__ == "__main__":
    main()
    # A worker's collective runtime waits for its peers at interpreter shutdown, and a peer
    # that already left never answers: leave without the shutdown once all is printed.
    sys.stdout.flush()
    os._exit(0)
