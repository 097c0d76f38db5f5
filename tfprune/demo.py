"""End-to-end tfprune demo on scikit-learn's bundled handwritten digits (no download).

Trains a small CNN, prunes half of its filters during `fit` with a cubic schedule, strips the
masks, physically removes the pruned filters (`shrink`), exports every model to LiteRT,
verifies each against Keras, and compares accuracy, robust accuracy (PGD), size, FLOPs and
latency with the dense model and with a half-width CNN trained from scratch for as many
epochs. A second pruned model is trained adversarially (FGSM at the evaluation eps) under
the adversarial-aware schedule with its defaults, whose decisions are plotted. Writes
`results.json`, `pruning_log.csv`, `pruning.png`, `robust_trace.csv` and
`robust_schedule.png` to `--out`.

    tfprune demo --out out          (or: python examples/prune_digits.py --out out)
"""

import argparse
import io
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.core.files import write_atomically  # noqa: E402
from tfprune.zoo import digits_cnn, load_digits  # noqa: E402


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def tflite_accuracy(path, x, y):
    (probabilities,) = tfprune.export.run_tflite(path, x)
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


PGD = tfprune.PGD(eps=0.1, steps=10)


def measure(name, model, path, x_test, y_test):
    """One row of the comparison table, without latency (timed for all rows together)."""
    summary = tfprune.summary(model).total
    return {
        "model": name,
        "keras_accuracy": accuracy(model, x_test, y_test),
        "pgd_accuracy": tfprune.robust_accuracy(model, x_test, y_test, PGD),
        "tflite_accuracy": tflite_accuracy(path, x_test, y_test),
        "max_abs_diff_vs_keras": tfprune.verify_tflite(path, model, x_test[:256]),
        "params": summary["params"],
        "nonzero_params": summary["nonzero_params"],
        "flops": summary["flops"],
        "effective_flops": summary["effective_flops"],
        "file_bytes": path.stat().st_size,
    }


def print_table(rows):
    columns = [
        ("model", "model", "{}"),
        ("test acc", "keras_accuracy", "{:.1%}"),
        ("PGD acc", "pgd_accuracy", "{:.1%}"),
        ("LiteRT acc", "tflite_accuracy", "{:.1%}"),
        ("max|diff|", "max_abs_diff_vs_keras", "{:.1e}"),
        ("params", "params", "{:,}"),
        ("nonzero", "nonzero_params", "{:,}"),
        ("MFLOPs", "flops", "{:.2f}"),
        ("eff. MFLOPs", "effective_flops", "{:.2f}"),
        ("file KiB", "file_bytes", "{:.1f}"),
        ("latency us", "latency_us", "{:.1f}"),
    ]
    scale = {"flops": 1e-6, "effective_flops": 1e-6, "file_bytes": 1 / 1024}
    cells = [[fmt.format(row[key] * scale.get(key, 1)) for _, key, fmt in columns] for row in rows]
    widths = [
        max(len(title), *(len(c[i]) for c in cells)) for i, (title, _, _) in enumerate(columns)
    ]
    print("  ".join(t.rjust(w) for (t, _, _), w in zip(columns, widths)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


def save_figure(fig, path):
    """Write a matplotlib figure as a PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomically(path, buffer.getvalue())


def plot(history, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["sparsity"]) + 1)
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(epochs, history["sparsity"], "o-", color="tab:red", label="filter sparsity")
    left.set_xlabel("pruning epoch")
    left.set_ylabel("sparsity of pruned layers", color="tab:red")
    left.set_ylim(0, 1)
    right = left.twinx()
    right.plot(epochs, history["val_accuracy"], "s-", color="tab:blue", label="validation accuracy")
    right.set_ylabel("validation accuracy", color="tab:blue")
    right.set_ylim(0, 1)
    fig.legend(loc="lower center", ncol=2)
    left.set_title("Filter pruning during fit (digits CNN)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(fig, path)


def plot_trace(events, path, training):
    """The adversarial-aware schedule's decisions: targets, accuracies, holds and rollbacks,
    with the training accuracy `training = (steps, accuracies)` that the probes follow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in events]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    top.step(
        steps,
        [e["planned_target"] for e in events],
        where="post",
        color="gray",
        ls="--",
        label="schedule",
    )
    top.step(
        steps,
        [e["accepted_target"] for e in events],
        where="post",
        color="tab:red",
        label="accepted",
    )
    top.set_ylabel("fraction of filters pruned")
    top.legend(loc="lower right")
    bottom.plot(steps, [e["clean_accuracy"] for e in events], "o-", label="clean (probe)")
    bottom.plot(steps, [e["robust_accuracy"] for e in events], "s-", label="PGD eps 0.1 (probe)")
    bottom.plot(*training, "k:", label="clean (training, epoch mean)")
    for e in events:
        for word, color in (("hold", "orange"), ("rollback", "purple"), ("forced", "black")):
            if word in e["decision"]:
                bottom.axvline(e["step"], color=color, alpha=0.4, lw=2)
    bottom.set_xlabel("training step  (orange: hold, purple: rollback, black: forced)")
    bottom.set_ylabel("accuracy")
    bottom.set_ylim(0, 1)
    bottom.legend(loc="center right")
    top.set_title("Adversarial-aware pruning: what the schedule decided")
    fig.tight_layout()
    save_figure(fig, path)


def add_arguments(parser):
    """The demo's options, shared by `python examples/prune_digits.py` and `tfprune demo`."""
    parser.add_argument("--out", default="out", help="output directory (default: out)")
    parser.add_argument(
        "--epochs", type=int, default=15, help="dense training epochs (default: 15)"
    )
    parser.add_argument(
        "--prune-epochs", type=int, default=12, help="pruning + fine-tuning epochs (default: 12)"
    )
    parser.add_argument(
        "--sparsity", type=float, default=0.5, help="fraction of filters to prune (default: 0.5)"
    )
    parser.add_argument("--seed", type=int, default=0)


def main(argv=None):
    """Run the demo with command-line options (see `add_arguments`)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    run(parser.parse_args(argv))


def run(args):
    """Run the demo with parsed options; writes everything to `args.out`."""
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(args.seed)

    (x_train, y_train), (x_test, y_test) = load_digits()
    print(f"digits: {len(x_train)} train / {len(x_test)} test images, 16x16")

    print(f"\n== 1. train the dense CNN ({args.epochs} epochs)")
    dense = digits_cnn()
    dense.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    dense.fit(x_train, y_train, batch_size=32, epochs=args.epochs, validation_split=0.1, verbose=2)

    print(
        f"\n== 2. prune {args.sparsity:.0%} of the filters during fit ({args.prune_epochs} epochs)"
    )
    steps_per_epoch = int(np.ceil(len(x_train) * 0.9 / 32))
    end_step = steps_per_epoch * max(1, args.prune_epochs * 2 // 3)  # last third only fine-tunes
    schedule = tfprune.PolynomialDecay(
        0.0, args.sparsity, begin_step=0, end_step=end_step, frequency=steps_per_epoch // 2
    )
    pruned = tfprune.prune(dense, granularity="filter", criterion="l1", schedule=schedule)
    pruned.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = pruned.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.prune_epochs,
        validation_split=0.1,
        verbose=2,
        callbacks=[
            tfprune.PruningCallback(log_layers=False),
            keras.callbacks.CSVLogger(str(out / "pruning_log.csv")),
        ],
    ).history
    plain = tfprune.strip(pruned)
    print("\n" + str(tfprune.summary(plain)))

    print("\n== 3. remove the pruned filters (shrink)")
    small = tfprune.shrink(plain)
    shrink_diff = float(
        np.abs(small.predict(x_test, verbose=0) - plain.predict(x_test, verbose=0)).max()
    )
    print(
        f"shrunk model: {small.count_params():,} params (masked: {plain.count_params():,}); max "
        f"|shrunk - masked| on the test set: {shrink_diff:.1e}"
    )

    print(
        "\n== 4. robust pruning: FGSM adversarial training paced by the adversarial-aware schedule"
    )
    # 10 % of the training images are held out as the schedule's probe set; the test set
    # stays unseen.
    probe, rest = slice(0, len(x_train) // 10), slice(len(x_train) // 10, None)
    robust = tfprune.prune(dense, schedule=schedule)
    # FGSM at the evaluation eps: the sparsity sweep (BENCHMARKS.md section 13) found it more
    # robust than BAP's cut-off scale at every sparsity from 50 %, at a fifth of the time.
    trainer = tfprune.AdversarialTraining(robust, tfprune.FGSM(eps=0.1), weight=0.5)
    trainer.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    aware = tfprune.AdversarialAwarePruning(
        (x_train[probe], y_train[probe]),
        tfprune.PGD(eps=0.1, steps=5),
        trace_path=out / "robust_trace.csv",
        # Probes with BatchNormalization recalibrated on clean images measure the pruning,
        # not statistics lagging the masks (BENCHMARKS.md section 20).
        recalibrate=x_train[rest][:512],
    )
    robust_history = trainer.fit(
        x_train[rest],
        y_train[rest],
        batch_size=32,
        epochs=args.prune_epochs,
        verbose=2,
        callbacks=[aware],
    ).history
    decisions = [e["decision"] for e in aware.events]
    print(
        "schedule decisions: "
        + ", ".join(f"{decisions.count(d)} x {d}" for d in dict.fromkeys(decisions))
    )
    robust_small = tfprune.shrink(robust)
    epoch_ends = [steps_per_epoch * (epoch + 1) for epoch in range(args.prune_epochs)]
    plot_trace(aware.events, out / "robust_schedule.png", (epoch_ends, robust_history["accuracy"]))

    total_epochs = args.epochs + args.prune_epochs
    print(f"\n== 5. baseline: half-width CNN trained from scratch ({total_epochs} epochs)")
    keras.utils.set_random_seed(args.seed)
    half = digits_cnn(width=0.5, name="half_width_cnn")
    half.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    half.fit(x_train, y_train, batch_size=32, epochs=total_epochs, validation_split=0.1, verbose=0)

    print("\n== 6. export to LiteRT, verify and time (1 thread)")
    models = [
        ("dense", dense, "dense.tflite"),
        ("pruned (masked)", plain, "pruned_masked.tflite"),
        ("pruned + shrunk", small, "pruned_shrunk.tflite"),
        ("robust pruned + shrunk", robust_small, "robust_pruned_shrunk.tflite"),
        ("half width, scratch", half, "half_width.tflite"),
    ]
    paths = [tfprune.export_tflite(model, out / file) for _, model, file in models]
    rows = [
        measure(name, model, path, x_test, y_test) for (name, model, _), path in zip(models, paths)
    ]
    # Full-integer quantization of the shrunk model, calibrated on 200 training images.
    int8_path = tfprune.export_tflite(
        small, out / "pruned_shrunk_int8.tflite", quantize="int8", representative_data=x_train[:200]
    )
    rows.append(measure("pruned + shrunk, int8", small, int8_path, x_test, y_test))
    paths.append(int8_path)
    # Timed in turn, so that load on this machine hits every model alike.
    latency = tfprune.compare_latency(paths, rounds=5, runs=60)
    for row, path in zip(rows, paths):
        row["latency_us"] = latency[path] * 1e6
    print()
    print_table(rows)
    for row in rows:
        # int8 probabilities differ from float by the quantization steps.
        tolerance = 0.1 if row["model"].endswith("int8") else 1e-4
        if row["max_abs_diff_vs_keras"] > tolerance:
            raise SystemExit(
                f"LiteRT output of {row['model']} differs from Keras by "
                f"{row['max_abs_diff_vs_keras']:.2e}"
            )

    dense_row = rows[0]
    print()
    for row in rows[1:]:
        print(
            f"{row['model']:>20}: latency {row['latency_us'] / dense_row['latency_us']:.2f}x "
            f"dense, FLOPs {row['effective_flops'] / dense_row['flops']:.2f}x, file "
            f"{row['file_bytes'] / dense_row['file_bytes']:.2f}x, accuracy "
            f"{100 * (row['keras_accuracy'] - dense_row['keras_accuracy']):+.1f} pt, PGD accuracy "
            f"{100 * (row['pgd_accuracy'] - dense_row['pgd_accuracy']):+.1f} pt"
        )
    if shrink_diff > 1e-5:
        raise SystemExit(f"the shrunk model differs from the masked one by {shrink_diff:.2e}")
    results = {
        "rows": rows,
        "shrink_max_abs_diff": shrink_diff,
        "robust_schedule": aware.events,
        "history": {k: [float(v) for v in vals] for k, vals in history.items()},
        "seconds": time.time() - started,
    }
    write_atomically(out / "results.json", json.dumps(results, indent=2))
    plot(history, out / "pruning.png")
    written = ", ".join(
        str(out / name)
        for name in (
            "results.json",
            "pruning.png",
            "pruning_log.csv",
            "robust_trace.csv",
            "robust_schedule.png",
        )
    )
    print(f"\nwrote {written} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
