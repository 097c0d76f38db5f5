"""Training-time overhead of pruning: `fit` with tfprune vs plain `fit`, and tfmot's ratio.

Same model (the digits CNN), same data, same epochs, in one run. tfprune and plain Keras 3
alternate in this process; tfmot (which needs tf_keras and TF_USE_LEGACY_KERAS=1) runs the
same comparison on the tf_keras twin of the model in a subprocess. Reports the fastest epoch
of each fit (the first epoch, which traces the graph, left out; noise on a shared machine
only adds time) and the median over rounds of the per-round ratios.

    python tools/bench_fit_overhead.py [--rounds 10] [--epochs 8] [--frequency 100]
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


def time_fit(keras, model, x, y, epochs, callbacks=()):
    compile_digits(keras, model)
    timer = EpochTimer.make(keras)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=[*callbacks, timer])
    # The fastest epoch: on a shared machine noise only ever adds time, so the minimum is
    # the steadiest estimate of what the training step itself costs.
    return float(np.min(timer.times[1:]))


def schedule_steps(n, epochs, frequency):
    """End step and update frequency: `frequency` steps, or 0 for twice per epoch."""
    steps = int(np.ceil(n / BATCH))
    return steps * epochs, frequency or max(1, steps // 2)


def alternate(rounds, labels, plain_fit, pruned_fit):
    """Time plain and pruned fits `rounds` times, swapping which goes first every round so
    that a machine slowing down (or speeding up) within a round favours neither side."""
    plain_times, pruned_times = [], []
    for r in range(rounds):
        order = [(plain_times, plain_fit), (pruned_times, pruned_fit)]
        for times, fit in order if r % 2 == 0 else reversed(order):
            times.append(fit(r))
        print(
            f"  round {r + 1}/{rounds}: {labels[0]} {plain_times[-1]:.3f} s/epoch, {labels[1]} "
            f"{pruned_times[-1]:.3f} s/epoch",
            flush=True,
        )
    return plain_times, pruned_times


def plain_fit(keras, x, y, epochs):
    """A function timing plain training of a fresh model, seeded per round."""

    def fit(seed):
        keras.utils.set_random_seed(seed)
        return time_fit(keras, build(keras), x, y, epochs)

    return fit


def run_tfprune(rounds, epochs, frequency):
    import keras

    import tfprune

    x, y = digits()
    end_step, frequency = schedule_steps(len(x), epochs, frequency)

    def pruned(seed):
        keras.utils.set_random_seed(seed)
        schedule = tfprune.PolynomialDecay(
            0.0, 0.5, begin_step=0, end_step=end_step, frequency=frequency
        )
        return time_fit(
            keras,
            tfprune.prune(build(keras), schedule=schedule),
            x,
            y,
            epochs,
            [tfprune.PruningCallback()],
        )

    return alternate(rounds, ("plain", "tfprune"), plain_fit(keras, x, y, epochs), pruned)


def run_tfmot(rounds, epochs, frequency):
    """Runs in the subprocess: tf_keras plain vs tfmot prune_low_magnitude."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    x, y = digits()
    end_step, frequency = schedule_steps(len(x), epochs, frequency)
    sparsity = tfmot.sparsity.keras

    def pruned(seed):
        keras.utils.set_random_seed(seed)
        schedule = sparsity.PolynomialDecay(
            0.0, 0.5, begin_step=0, end_step=end_step, frequency=frequency
        )
        model = sparsity.prune_low_magnitude(build(keras), pruning_schedule=schedule)
        return time_fit(keras, model, x, y, epochs, [sparsity.UpdatePruningStep()])

    return alternate(rounds, ("tf_keras plain", "tfmot"), plain_fit(keras, x, y, epochs), pruned)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating plain/pruned repetitions"
    )
    parser.add_argument(
        "--epochs", type=int, default=6, help="epochs per fit (the first is not timed)"
    )
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
        print(json.dumps(run_tfmot(args.rounds, args.epochs, args.frequency)), flush=True)
        return

    print(f"tfprune vs plain Keras 3 ({args.rounds} rounds x {args.epochs} epochs):")
    plain, pruned = run_tfprune(args.rounds, args.epochs, args.frequency)
    print("tfmot vs plain tf_keras, in a subprocess with TF_USE_LEGACY_KERAS=1:")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--tfmot-child",
            "--rounds",
            str(args.rounds),
            "--epochs",
            str(args.epochs),
            "--frequency",
            str(args.frequency),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if child.returncode:
        sys.stderr.write(child.stderr[-3000:])
        raise SystemExit("tfmot subprocess failed; install the extra: pip install -e '.[compare]'")
    lines = child.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    tf_plain, tf_pruned = json.loads(lines[-1])

    result = {
        "plain_s_per_epoch": float(np.median(plain)),
        "tfprune_s_per_epoch": float(np.median(pruned)),
        # The median of per-round ratios: each round's pair ran back to back, so a slow
        # spell of this shared machine hits both sides of one ratio.
        "tfprune_ratio": float(np.median(np.array(pruned) / np.array(plain))),
        "tf_keras_plain_s_per_epoch": float(np.median(tf_plain)),
        "tfmot_s_per_epoch": float(np.median(tf_pruned)),
        "tfmot_ratio": float(np.median(np.array(tf_pruned) / np.array(tf_plain))),
    }
    print(
        f"\ntfprune / plain Keras 3: {result['tfprune_ratio']:.3f}x   tfmot / plain tf_keras: "
        f"{result['tfmot_ratio']:.3f}x"
    )
    write_report(args.json, result)


if __name__ == "__main__":
    main()
