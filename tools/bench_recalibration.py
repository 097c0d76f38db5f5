"""BatchNormalization statistics after pruning: stale, or recalibrated on data?

Per dataset (the bundled digits with the demo's BN CNN, MNIST-1D with its BN Conv1D CNN) and
seed, the dense model is trained first, then side by side:

- one shot: 30 % and 50 % of each layer's filters masked at once (L1, local ranking), no
  fine-tuning: test accuracy with the statistics training left, and after
  `tfprune.recalibrate_batchnorm` on 512 training examples (and how long that took);
- during `fit`: pruned to 50 % of FLOPs by a `PolynomialDecay` over 2 epochs, then
  fine-tuned 1 epoch, with `PruningCallback()` and with `PruningCallback(recalibrate=...)`:
  the instability each update shows on the test split (raw, and after recalibrating),
  the final test accuracy of the shrunk model, and the training time.

    python tools/bench_recalibration.py [--seeds 0 1 2] [--datasets digits mnist1d]
        [--out out/bench_recalibration.json]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import over_seeds, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune import zoo  # noqa: E402

SETUPS = {
    # builder, loader, dense epochs, learning rate
    "digits": (zoo.digits_cnn, zoo.load_digits, 12, 2e-3),
    "mnist1d": (zoo.mnist1d_cnn, zoo.load_mnist1d, 30, 2e-3),
}
CALIBRATION = 512


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=512), axis=1) == y))


def compiled(model, lr):
    model.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy")
    return model


def one_shot(dense, fraction, data):
    """Accuracy with `fraction` of the filters masked at once, raw and recalibrated."""
    (x, _), (x_test, y_test) = data
    pruned = tfprune.prune(dense, schedule=tfprune.OneShot(fraction), protect=None)
    tfprune.apply_target(pruned, fraction)
    raw = accuracy(pruned, x_test, y_test)
    start = time.perf_counter()
    tfprune.recalibrate_batchnorm(pruned, x[:CALIBRATION])
    seconds = time.perf_counter() - start
    return {"raw": raw, "recalibrated": accuracy(pruned, x_test, y_test), "seconds": seconds}


def during_fit(dense, data, lr, recalibrate, seed):
    """Pruned to half the FLOPs during `fit`, with or without recalibration."""
    (x, y), (x_test, y_test) = data
    steps = len(x) // 32
    schedule = tfprune.PolynomialDecay(
        0.0, 0.5, begin_step=0, end_step=2 * steps, frequency=max(1, steps // 2)
    )
    keras.utils.set_random_seed(seed)
    pruned = compiled(tfprune.prune(dense, schedule=schedule, target="flops", ranking="global"), lr)
    callback = tfprune.PruningCallback(
        validation_data=(x_test, y_test),
        recalibrate=x[:CALIBRATION] if recalibrate else None,
    )
    start = time.perf_counter()
    pruned.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[callback])
    seconds = time.perf_counter() - start
    updates = [e for e in callback.events if e["target"] > 0]
    row = {
        "accuracy": accuracy(tfprune.shrink(pruned), x_test, y_test),
        "mean_instability": float(np.mean([e["instability"] for e in updates])),
        "max_instability": float(np.max([e["instability"] for e in updates])),
        "seconds": seconds,
    }
    if recalibrate:
        after = [e["instability_recalibrated"] for e in updates]
        row["mean_instability_recalibrated"] = float(np.mean(after))
        row["max_instability_recalibrated"] = float(np.max(after))
    return row


def run(dataset, seed):
    build, load, epochs, lr = SETUPS[dataset]
    data = load()
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = compiled(build(), lr)
    dense.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    row = {"dense": {"accuracy": accuracy(dense, x_test, y_test)}}
    for fraction in (0.3, 0.5):
        row[f"one_shot_{int(fraction * 100)}"] = one_shot(dense, fraction, data)
    row["fit_stale"] = during_fit(dense, data, lr, False, seed)
    row["fit_recalibrated"] = during_fit(dense, data, lr, True, seed)
    return row


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--out", default="out/bench_recalibration.json")
    args = parser.parse_args()
    results = {}
    for dataset in args.datasets:
        per_seed = []
        for seed in args.seeds:
            print(f"{dataset} seed {seed} ...", flush=True)
            per_seed.append(run(dataset, seed))
        variants = list(per_seed[0])
        results[dataset] = {"per_seed": per_seed, "summary": over_seeds(per_seed, variants)}
        summary = results[dataset]["summary"]
        print(f"\n{dataset}: dense {summary['dense']['accuracy']['mean']:.1%}")
        for fraction in (30, 50):
            cell = summary[f"one_shot_{fraction}"]
            print(
                f"  {fraction} % of filters at once: raw {cell['raw']['mean']:.1%} "
                f"+- {cell['raw']['std']:.1%}, recalibrated {cell['recalibrated']['mean']:.1%} "
                f"+- {cell['recalibrated']['std']:.1%} ({cell['seconds']['mean']:.2f} s)"
            )
        for variant in ("fit_stale", "fit_recalibrated"):
            cell = summary[variant]
            extra = (
                f", after recalibration {cell['mean_instability_recalibrated']['mean']:.3f}"
                if "mean_instability_recalibrated" in cell
                else ""
            )
            print(
                f"  {variant}: shrunk {cell['accuracy']['mean']:.1%} +- "
                f"{cell['accuracy']['std']:.1%}, mean instability "
                f"{cell['mean_instability']['mean']:.3f}{extra}, "
                f"{cell['seconds']['mean']:.1f} s"
            )
    write_report(args.out, {"results": results, "settings": vars(args)})


if __name__ == "__main__":
    main()
