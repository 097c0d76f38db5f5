"""Which importance criterion prunes best? Accuracy at 50 % of FLOPs removed, over seeds.

On the bundled digits (2D CNN) and MNIST-1D (Conv1D CNN, generated offline by `mnist1d`),
per seed: train the dense model, then for each criterion prune filter groups one-shot to
50 % of FLOPs removed (local ranking) and fine-tune for the same budget; `shrink` and report
test accuracy. Also: PwC compensation against plain L1 with no fine-tuning, and BPPS
layer-wise rates against uniform rates with the same fine-tune. And how long one mask
update takes per criterion.

    python tools/bench_criteria.py [--seeds 0 1 2] [--datasets digits mnist1d]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune import zoo  # noqa: E402

CRITERIA = ("l1", "l2", "random", "bn_scale", "taylor", "lap", "fpgm")
SETUPS = {
    # builder, loader, dense epochs, fine-tune epochs, learning rate
    "digits": (zoo.digits_cnn, zoo.load_digits, 12, 4, 2e-3),
    "mnist1d": (zoo.mnist1d_cnn, zoo.load_mnist1d, 40, 10, 2e-3),
}


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=512), axis=1) == y))


def compile_(model, lr):
    model.compile(
        keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def prune_finetune(dense, criterion, data, epochs, lr, calibration, **kwargs):
    (x, y), (x_test, y_test) = data
    pruned = tfprune.prune(
        dense, criterion=criterion, schedule=tfprune.OneShot(0.5), target="flops", **kwargs
    )
    start = time.perf_counter()
    tfprune.apply_target(pruned, 0.5, data=calibration)
    update_seconds = time.perf_counter() - start
    compile_(pruned, lr).fit(
        x,
        y,
        batch_size=32,
        epochs=epochs,
        verbose=0,
        callbacks=[tfprune.PruningCallback(data=calibration)],
    )
    small = tfprune.shrink(pruned)
    return (
        accuracy(small, x_test, y_test),
        update_seconds,
        tfprune.count_flops(small) / tfprune.count_flops(dense),
    )


def run(dataset, seed):
    build, load, dense_epochs, epochs, lr = SETUPS[dataset]
    data = load()
    (x, y), (x_test, y_test) = data
    calibration = (x[:256], y[:256])
    keras.utils.set_random_seed(seed)
    dense = compile_(build(), lr)
    dense.fit(x, y, batch_size=32, epochs=dense_epochs, verbose=0)
    row = {"dense": accuracy(dense, x_test, y_test)}
    for criterion in CRITERIA:
        keras.utils.set_random_seed(seed)
        acc, seconds, ratio = prune_finetune(dense, criterion, data, epochs, lr, calibration)
        row[criterion] = acc
        row[f"{criterion}_update_s"] = seconds
        row[f"{criterion}_flops_ratio"] = ratio
    # PwC against L1, no fine-tuning: one-shot masks, then compensation on 20 % of the train set.
    pruned = tfprune.prune(dense, schedule=tfprune.OneShot(0.5), target="flops")
    tfprune.apply_target(pruned, 0.5)
    row["l1_no_finetune"] = accuracy(tfprune.strip(pruned), x_test, y_test)
    row["pwc_no_finetune"] = accuracy(
        tfprune.methods.compensate(dense, pruned, x[: len(x) // 5]), x_test, y_test
    )
    # BPPS rates against uniform (local) rates, same fine-tune.
    found = tfprune.methods.layerwise_rates(
        dense, (x[:500], y[:500]), target_flops=0.5, verbose=False
    )
    keras.utils.set_random_seed(seed)
    bpps = tfprune.prune(dense, schedule=tfprune.OneShot(0.5), rates=found.rates)
    tfprune.apply_target(bpps, 0.5)
    compile_(bpps, lr).fit(
        x, y, batch_size=32, epochs=epochs, verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    small = tfprune.shrink(bpps)
    row["bpps"] = accuracy(small, x_test, y_test)
    row["bpps_flops_ratio"] = tfprune.count_flops(small) / tfprune.count_flops(dense)
    row["uniform"] = row["l1"]  # l1 above is local (uniform) ranking at the same FLOPs target
    print(
        f"  {dataset} seed {seed}: "
        + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if not k.endswith(("_s", "_ratio"))),
        flush=True,
    )
    return row


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--json", default="out/bench_criteria.json")
    args = parser.parse_args()
    results = {}
    for dataset in args.datasets:
        print(f"{dataset}:", flush=True)
        rows = [run(dataset, seed) for seed in args.seeds]
        results[dataset] = {
            key: {
                "mean": float(np.mean([r[key] for r in rows])),
                "std": float(np.std([r[key] for r in rows])),
            }
            for key in rows[0]
        }
        results[dataset]["per_seed"] = rows
        print(f"\n{dataset}: mean ± std test accuracy over seeds {args.seeds}")
        for key, value in results[dataset].items():
            if key != "per_seed" and not key.endswith(("_s", "_ratio")):
                print(f"  {key:16s} {100 * value['mean']:5.1f} ± {100 * value['std']:4.1f} %")
        for criterion in CRITERIA:
            print(
                f"  {criterion:16s} one mask update: "
                f"{1000 * results[dataset][f'{criterion}_update_s']['mean']:.0f} ms"
            )
    write_report(args.json, {"results": results})


if __name__ == "__main__":
    main()
