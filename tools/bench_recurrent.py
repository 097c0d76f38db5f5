"""Recurrent models: accuracy of GRU unit pruning, and LiteRT latency and size of sequence models.

Part 1, accuracy (MNIST-1D, 40-step sequences generated offline by `mnist1d`), per seed:
  dense      a two-layer GRU classifier (`tfprune.zoo.mnist1d_gru`, 64 units), trained;
  pruned     the dense model fine-tuned while 50 % of its hidden units are pruned (filter
             granularity, polynomial schedule), then shrunk to 32 units per layer;
  scratch    the 32-unit GRU trained from scratch for the same total epochs.

Part 2, LiteRT (1 thread, interleaved timing), per model: dense, shrunk (50 % of the units
removed), sparse-stored (75 % of the weights in 1x4 blocks, `export_tflite(sparse=True)`),
and int8 of the dense model:
  mnist1d_gru  the trained GRU classifier of part 1 (seed 0);
  kws          a keyword-spotting-shaped model: 49 x 40 features, Conv1D + GRU + Dense;
  text         an Embedding (vocabulary 2000) + LSTM + Dense text classifier.

    python tools/bench_recurrent.py [--seeds 0 1 2] [--json out/bench_recurrent.json]
"""

import argparse
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import fine_tune_schedule, over_seeds, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import load_mnist1d, mnist1d_gru  # noqa: E402

VARIANTS = ("dense", "pruned", "scratch")


def compile_for(model):
    model.compile(
        keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=256), -1) == y))


def run_seed(seed, args, data):
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = mnist1d_gru(64)
    compile_for(dense)
    dense.fit(x, y, batch_size=64, epochs=args.dense_epochs, verbose=0)
    steps = int(np.ceil(len(x) / 64))
    schedule = fine_tune_schedule(0.5, steps, args.prune_epochs)
    pruned = tfprune.prune(dense, schedule=schedule, protect=["classifier"])
    compile_for(pruned)
    pruned.fit(
        x,
        y,
        batch_size=64,
        epochs=args.prune_epochs,
        verbose=0,
        callbacks=[tfprune.PruningCallback(log_layers=False)],
    )
    small = tfprune.shrink(pruned)
    keras.utils.set_random_seed(seed)
    scratch = mnist1d_gru(32)
    compile_for(scratch)
    scratch.fit(x, y, batch_size=64, epochs=args.dense_epochs + args.prune_epochs, verbose=0)
    flops = tfprune.count_flops(dense)
    results = {
        "dense": {"accuracy": accuracy(dense, x_test, y_test), "flops_ratio": 1.0},
        "pruned": {
            "accuracy": accuracy(small, x_test, y_test),
            "flops_ratio": tfprune.count_flops(small) / flops,
            "units": [small.get_layer(n).units for n in ("gru1", "gru2")],
        },
        "scratch": {
            "accuracy": accuracy(scratch, x_test, y_test),
            "flops_ratio": tfprune.count_flops(scratch) / flops,
        },
    }
    for variant, row in results.items():
        print(f"  seed {seed} {variant:8s} accuracy {row['accuracy']:.3f}", flush=True)
    return results, dense


def kws_model():
    inputs = keras.Input((49, 40), name="features")
    x = keras.layers.Conv1D(64, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GRU(64, name="gru")(x)
    return keras.Model(inputs, keras.layers.Dense(12, name="classifier")(x), name="kws")


def text_model():
    tokens = keras.Input((40,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(2000, 64, name="embedding")(tokens)
    x = keras.layers.LSTM(64, name="lstm")(x)
    return keras.Model(tokens, keras.layers.Dense(4, name="classifier")(x), name="text")


def sample_inputs(model, n=64, seed=0):
    rng = np.random.default_rng(seed)
    spec = model.inputs[0]
    if "int" in str(spec.dtype):
        return rng.integers(0, 2000, (n, *spec.shape[1:]))
    return rng.normal(size=(n, *spec.shape[1:])).astype(np.float32)


def deployments(model, folder, args, exclude=None):
    """Dense, shrunk, sparse-stored and int8 files of one model, timed side by side;
    `exclude` names layers whose rows are not a multiple of the block (one input channel)."""
    folder.mkdir(parents=True, exist_ok=True)
    x = sample_inputs(model)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["classifier"])
    tfprune.apply_target(pruned, 0.5)
    shrunk = tfprune.shrink(pruned)
    blocks = tfprune.prune(
        model,
        granularity="block:1x4",
        schedule=tfprune.OneShot(0.75),
        protect=None,
        exclude=exclude,
    )
    tfprune.apply_target(blocks, 0.75)
    sparse = tfprune.strip(blocks)
    paths = {
        "dense": tfprune.export_tflite(model, folder / "dense.tflite"),
        "shrunk": tfprune.export_tflite(shrunk, folder / "shrunk.tflite"),
        "sparse_blocks": tfprune.export_tflite(
            sparse, folder / "sparse.tflite", sparse=True, verbose=False
        ),
        "int8": tfprune.export_tflite(
            model, folder / "int8.tflite", quantize="int8", representative_data=x
        ),
    }
    checks = {
        "dense": tfprune.verify_tflite(paths["dense"], model, x),
        "shrunk": tfprune.verify_tflite(paths["shrunk"], shrunk, x),
        "sparse_blocks": tfprune.verify_tflite(paths["sparse_blocks"], sparse, x),
        "int8": tfprune.verify_tflite(paths["int8"], model, x),
    }
    latency = tfprune.compare_latency(list(paths.values()), args.rounds, args.runs)
    base = latency[paths["dense"]]
    rows = {}
    for name, path in paths.items():
        rows[name] = {
            "latency_us": latency[path] * 1e6,
            "latency_ratio": latency[path] / base,
            "size_kb": path.stat().st_size / 1024,
            "max_abs_diff": checks[name],
        }
        row = rows[name]
        print(
            f"  {model.name:12s} {name:14s} {row['latency_us']:8.1f} us "
            f"({row['latency_ratio']:.2f}x)  {row['size_kb']:7.1f} KB  "
            f"max|diff| {row['max_abs_diff']:.1e}",
            flush=True,
        )
    rows["shrunk"]["flops_ratio"] = tfprune.count_flops(shrunk) / tfprune.count_flops(model)
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dense-epochs", type=int, default=20)
    parser.add_argument("--prune-epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", default="out/bench_recurrent.json")
    args = parser.parse_args()
    data = load_mnist1d()
    per_seed, trained = [], None
    for seed in args.seeds:
        results, dense = run_seed(seed, args, data)
        per_seed.append(results)
        trained = trained or dense
    summary = over_seeds(per_seed, VARIANTS, keys=["accuracy", "flops_ratio"])
    print("\nvariant   accuracy          FLOPs ratio")
    for variant, row in summary.items():
        accuracy_row = row["accuracy"]
        print(
            f"{variant:8s}  {100 * accuracy_row['mean']:5.1f} ± {100 * accuracy_row['std']:4.1f} %"
            f"   {row['flops_ratio']['mean']:.2f}"
        )
    folder = pathlib.Path(tempfile.mkdtemp())
    litert = {}
    for model, exclude in ((trained, ["gru1"]), (kws_model(), None), (text_model(), None)):
        litert[model.name] = deployments(model, folder / model.name, args, exclude)
    write_report(args.json, {"summary": summary, "per_seed": per_seed, "litert": litert})


if __name__ == "__main__":
    main()
