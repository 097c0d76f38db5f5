"""What each way of shipping a pruned model buys in LiteRT: latency and size, side by side.

For three models, exports and times (1 thread, files timed in turn, 5 rounds):

- dense: the unpruned model, float32;
- shrunk: 50 % of the filters / units pruned (L1, global), removed by `tfprune.shrink`;
- sparse auto / sparse forced: 90 % of the weights pruned (1x4 blocks for Dense layers,
  unstructured for convolutions), exported with `sparse="auto"` and `sparse=True`;
- int8: the dense and the shrunk model, full-integer quantized;
- int8 sparse auto: 95 % pruned in 1x16 blocks, int8, `sparse="auto"`.

Models: the digits CNN and a 2-block transformer FFN (256 -> 1024 -> 256, twice) on the
flattened digits, both trained (dense 8 epochs, each pruned variant fine-tuned 3 epochs, so
accuracies are meaningful), and MobileNetV2 at 96x96 (weights=None, untrained: latency and
size only). Writes `bench_deploy.json`.

    python tools/bench_deploy.py [--models digits_cnn ffn mobilenetv2] [--rounds 5]
"""

import argparse
import os
import pathlib
import tempfile
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import digits_cnn, load_digits  # noqa: E402


def ffn():
    """Two transformer feed-forward blocks (with residuals) on a 256-wide token."""
    inputs = keras.Input((256,), name="features")
    x = inputs
    for block in (1, 2):
        hidden = keras.layers.Dense(1024, activation="gelu", name=f"ffn{block}_up")(x)
        x = keras.layers.Add()([x, keras.layers.Dense(256, name=f"ffn{block}_down")(hidden)])
    return keras.Model(
        inputs, keras.layers.Dense(10, activation="softmax", name="classifier")(x), name="ffn"
    )


MODELS = {
    "digits_cnn": (digits_cnn, False),
    "ffn": (ffn, True),
    "mobilenetv2": (
        lambda: keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10),
        False,
    ),
}


def data_for(name):
    """(train, test) for the trainable models; random inputs for MobileNetV2."""
    if name == "mobilenetv2":
        x = np.random.default_rng(0).random((64, 96, 96, 3), dtype=np.float32)
        return None, (x, np.zeros(len(x), int))
    (x_train, y_train), (x_test, y_test) = load_digits()
    if name == "ffn":
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return (x_train, y_train), (x_test, y_test)


def fit(model, train, epochs):
    if train is None:
        return model
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(*train, batch_size=32, epochs=epochs, verbose=0)
    return model


def pruned(dense, train, granularity, target, has_dense_blocks):
    """A stripped copy of `dense` pruned to `target` and fine-tuned."""
    if granularity != "filter" and not has_dense_blocks:
        granularity = "unstructured"
    model = tfprune.prune(
        dense,
        granularity=granularity,
        schedule=tfprune.OneShot(target),
        protect=None if granularity != "filter" else "auto",
    )
    tfprune.apply_target(model, target)
    fit(model, train, 3)
    return tfprune.strip(model)


def accuracy(path, test):
    (probabilities,) = tfprune.export.run_tflite(path, test[0])
    return float(np.mean(np.argmax(probabilities, axis=1) == test[1]))


def measure(name, rounds, runs, workdir):
    build, has_dense_blocks = MODELS[name]
    keras.utils.set_random_seed(0)
    train, test = data_for(name)
    dense = fit(build(), train, 8)
    calibration = (train or test)[0][:200]
    shrunk = tfprune.shrink(pruned(dense, train, "filter", 0.5, has_dense_blocks))
    sparse90 = pruned(dense, train, "block:1x4", 0.9, has_dense_blocks)
    sparse95 = pruned(dense, train, "block:1x16", 0.95, has_dense_blocks)
    variants = {
        "dense": (dense, {}),
        "shrunk": (shrunk, {}),
        "sparse auto": (sparse90, {"sparse": "auto"}),
        "sparse forced": (sparse90, {"sparse": True}),
        "int8": (dense, {"quantize": "int8", "representative_data": calibration}),
        "int8 shrunk": (shrunk, {"quantize": "int8", "representative_data": calibration}),
        "int8 sparse auto": (
            sparse95,
            {"sparse": "auto", "quantize": "int8", "representative_data": calibration},
        ),
    }
    paths, notes = {}, {}
    for variant, (model, options) in variants.items():
        path = workdir / f"{name}_{variant.replace(' ', '_')}.tflite"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tfprune.export_tflite(model, path, **options)
        notes[variant] = [str(w.message) for w in caught if "sparse=True" in str(w.message)]
        paths[variant] = path
    latency = tfprune.compare_latency(list(paths.values()), rounds, runs)
    rows = []
    for variant, path in paths.items():
        info = tfprune.inspect_tflite(path)
        rows.append(
            {
                "model": name,
                "variant": variant,
                "latency_ms": latency[path] * 1e3,
                "latency_ratio": latency[path] / latency[paths["dense"]],
                "bytes": path.stat().st_size,
                "size_ratio": path.stat().st_size / paths["dense"].stat().st_size,
                "sparse_tensors": sum(t["sparse"] for t in info["tensors"]),
                "densify_ops": info["operators"].count("DENSIFY"),
                "accuracy": None if train is None else accuracy(path, test),
                "warnings": notes[variant],
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds over all files")
    parser.add_argument("--runs", type=int, default=50, help="invokes per file per round")
    parser.add_argument("--out", default="out", help="directory for bench_deploy.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            print(f"{name} ...", flush=True)
            for row in measure(name, args.rounds, args.runs, pathlib.Path(tmp)):
                rows.append(row)
                acc = "" if row["accuracy"] is None else f"  acc {row['accuracy']:.1%}"
                print(
                    f"    {row['variant']:>17}: {row['latency_ms']:.3f} ms "
                    f"({row['latency_ratio']:.2f}x)  {row['bytes'] / 1024:.0f} KiB "
                    f"({row['size_ratio']:.2f}x)  sparse tensors {row['sparse_tensors']}{acc}",
                    flush=True,
                )
    write_report(pathlib.Path(args.out) / "bench_deploy.json", {"rows": rows})


if __name__ == "__main__":
    main()
