"""Training-time overhead of pruning: `fit` with tfprune vs plain `fit`, and tfmot's ratio.

Same model (the digits CNN), same data, in one run. Three Keras 3 models train one epoch
each per round, in a new random order every round: a plain model, its twin (a second plain
model, which shows how far two identical fits differ on this machine) and the model pruned by
tfprune, whose schedule (0 to 50 %) runs over all its epochs. tfmot (which needs tf_keras and
TF_USE_LEGACY_KERAS=1) runs the same comparison on the tf_keras twin of the model in a
subprocess. Each epoch is timed from its start to its end; reported, the median over rounds
of pruned / plain with a 90 % bootstrap interval.

    python tools/bench_fit_overhead.py [--rounds 40] [--frequency 100]
        [--json out/bench_fit_overhead.json]
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

BATCH = 32


class EpochTimer:
    """Keras callback recording wall time per epoch (defined lazily to import the right Keras)."""

    @staticmethod
    def make(keras):
        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self._start)

        return Timer()


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.kron(d.images.astype(np.float32) / 16.0, np.ones((2, 2), np.float32))[..., None]
    return x, d.target.astype(np.int64)


def build(keras):
    """The digits CNN, written against the given Keras module so tf_keras can build its twin."""
    layers = keras.layers
    inputs = keras.Input((16, 16, 1))
    x = inputs
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        if i < 2:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


def compile_digits(keras, model) -> None:
    """Compile `model` as every digits benchmark trains it."""
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )


def interleaved_epochs(keras, runs, x, y, rounds, seed=0) -> list[list[float]]:
    """Seconds of each epoch of each `(model, callbacks)` in `runs`: one epoch of each per
    round, in a new random order every round so that a machine slowing down favours none,
    `rounds` times (after one untimed epoch each, which compiles the step)."""
    rng = np.random.default_rng(seed)
    times = [[] for _ in runs]
    for epoch in range(rounds + 1):
        for i in rng.permutation(len(runs)):
            model, callbacks = runs[i]
            timer = EpochTimer.make(keras)
            model.fit(
                x, y, batch_size=BATCH, initial_epoch=epoch, epochs=epoch + 1, verbose=0,
                callbacks=[*callbacks, timer],
            )  # fmt: skip
            if epoch:
                times[i].append(timer.times[0])
        if epoch:
            print(f"  round {epoch}/{rounds}: " + ", ".join(f"{t[-1]:.3f} s" for t in times))
    return times


def median_ratio(numerators, denominators, seed=0) -> dict:
    """The median of the per-round ratios and its 90 % bootstrap interval."""
    ratios = np.array(numerators) / np.array(denominators)
    rng = np.random.default_rng(seed)
    resampled = np.median(rng.choice(ratios, (2000, len(ratios))), axis=1)
    low, high = np.percentile(resampled, [5, 95])
    return {"median": float(np.median(ratios)), "interval": [float(low), float(high)]}


def schedule_steps(n, rounds, frequency):
    """End step and update frequency over `rounds + 1` epochs: `frequency` steps, or 0 for
    twice per epoch."""
    steps = int(np.ceil(n / BATCH))
    return steps * (rounds + 1), frequency or max(1, steps // 2)


def compared(keras, pruned, callbacks, rounds):
    """Plain, twin and pruned epochs of the digits CNN (seconds each), and the two ratios
    to plain. The twin, a second plain model, shows how far two identical fits differ here."""
    x, y = digits()
    keras.utils.set_random_seed(0)
    plain, twin = build(keras), build(keras)
    for each in (plain, twin, pruned):
        compile_digits(keras, each)
    runs = [(plain, []), (twin, []), (pruned, callbacks)]
    plain_s, twin_s, pruned_s = interleaved_epochs(keras, runs, x, y, rounds)
    return {
        "plain_epoch_s": plain_s,
        "twin_epoch_s": twin_s,
        "pruned_epoch_s": pruned_s,
        "ratio": median_ratio(pruned_s, plain_s),
        "twin_ratio": median_ratio(twin_s, plain_s),
    }


def pruned_digits(keras, tfprune, rounds, frequency):
    """The digits CNN pruned by tfprune, its schedule (0 to 50 %) over `rounds + 1` epochs."""
    end_step, frequency = schedule_steps(len(digits()[0]), rounds, frequency)
    keras.utils.set_random_seed(1)
    schedule = tfprune.PolynomialDecay(
        0.0, 0.5, begin_step=0, end_step=end_step, frequency=frequency
    )
    return tfprune.prune(build(keras), schedule=schedule)


def run_tfprune(rounds, frequency):
    import keras

    import tfprune

    pruned = pruned_digits(keras, tfprune, rounds, frequency)
    return compared(keras, pruned, [tfprune.PruningCallback()], rounds)


def run_tfmot(rounds, frequency):
    """Runs in the subprocess: tf_keras plain vs tfmot prune_low_magnitude."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    end_step, frequency = schedule_steps(len(digits()[0]), rounds, frequency)
    sparsity = tfmot.sparsity.keras
    keras.utils.set_random_seed(1)
    schedule = sparsity.PolynomialDecay(
        0.0, 0.5, begin_step=0, end_step=end_step, frequency=frequency
    )
    pruned = sparsity.prune_low_magnitude(build(keras), pruning_schedule=schedule)
    return compared(keras, pruned, [sparsity.UpdatePruningStep()], rounds)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40, help="timed epochs of each model")
    parser.add_argument(
        "--frequency",
        type=int,
        default=100,
        help="steps between mask updates (100, tfmot's default; 0: twice per epoch)",
    )
    parser.add_argument(
        "--json", default="out/bench_fit_overhead.json", help="where to write the numbers"
    )
    parser.add_argument("--tfmot-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.tfmot_child:
        print("RESULT " + json.dumps(run_tfmot(args.rounds, args.frequency)), flush=True)
        return

    print(f"tfprune vs plain Keras 3 ({args.rounds} rounds; plain, twin, pruned):")
    tfprune_result = run_tfprune(args.rounds, args.frequency)
    print("tfmot vs plain tf_keras, in a subprocess with TF_USE_LEGACY_KERAS=1:")
    child = subprocess.run(
        [sys.executable, __file__, "--tfmot-child", "--rounds", str(args.rounds),
         "--frequency", str(args.frequency)],
        env=dict(os.environ, TF_USE_LEGACY_KERAS="1"),
        capture_output=True,
        text=True,
    )  # fmt: skip
    lines = [line for line in child.stdout.splitlines() if line.strip()]
    if child.returncode or not lines or not lines[-1].startswith("RESULT "):
        sys.stderr.write(child.stderr[-3000:])
        raise SystemExit("tfmot subprocess failed; install the extra: pip install -e '.[compare]'")
    print("\n".join(line for line in lines if "round" in line))
    tfmot_result = json.loads(lines[-1][len("RESULT ") :])

    def interval(ratio):
        low, high = ratio["interval"]
        return f"{ratio['median']:.3f}x (90 %: {low:.3f}-{high:.3f})"

    for name, result in (("tfprune / plain Keras 3", tfprune_result),
                         ("tfmot / plain tf_keras", tfmot_result)):  # fmt: skip
        print(f"\n{name}: {interval(result['ratio'])}; twin {interval(result['twin_ratio'])}")
    write_report(args.json, {"tfprune": tfprune_result, "tfmot": tfmot_result})


if __name__ == "__main__":
    main()
