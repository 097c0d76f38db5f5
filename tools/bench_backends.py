"""tfprune on each Keras backend: `fit` with pruning against plain `fit`, step time against
TensorFlow's, the cost of one mask update, and the exported file's latency.

The digits CNN of `bench_fit_overhead.py` (16x16 inputs, three convolutions with
BatchNormalization), the same data on every backend. Each backend runs in its own process
(`KERAS_BACKEND`), one after another. Within it three models train one epoch each per
round, in a new random order every round, `--rounds` times: a plain model, its twin (a second
plain model: how far two identical fits differ on this machine) and the pruned model, whose
schedule runs over all its epochs with a mask update twice per epoch, in the middle of
epochs (on JAX every update reads the trainer's state back). An epoch is timed from its start
to its end (not `fit`'s own set-up). The overhead is the median over rounds of pruned / plain,
with a 90 % bootstrap interval: each ratio compares two epochs a second apart, which a shared
machine's drift hardly separates. A mask update is timed alone after training
(`PruningCallback`'s work: read the state, rank, install the masks, zero the optimizer's slots
where JAX needs it), and the shrunk model is exported from that backend (on JAX and PyTorch
through a TensorFlow child process) and timed in LiteRT.

    python tools/bench_backends.py [--backends tensorflow jax torch] [--rounds 40]
        [--json out/bench_backends.json]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_fit_overhead import (  # noqa: E402
    BATCH,
    compared,
    digits,
    pruned_digits,
)
from benchreport import write_report  # noqa: E402


def mask_update_ms(keras, tfprune, model, repeats=7) -> float:
    """Median milliseconds of one mask update as the callback makes it, outside `fit`."""
    from tfprune.core import keras_internals
    from tfprune.masking.wrappers import mask_optimizer_states

    (plan,) = tfprune.pruning_plans(model)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        keras_internals.sync_training_state(model)
        plan.apply(0.3 + 0.02 * i)
        mask_optimizer_states(model, model.optimizer)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def child(rounds):
    """This backend's numbers (run with KERAS_BACKEND set)."""
    import keras

    import tfprune

    x = digits()[0]
    model = pruned_digits(keras, tfprune, rounds, 0)  # a mask update twice per epoch
    timings = compared(keras, model, [tfprune.PruningCallback()], rounds)
    update = mask_update_ms(keras, tfprune, model)
    small = tfprune.shrink(tfprune.strip(model))
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        path = tfprune.export_tflite(small, pathlib.Path(work) / "small.tflite", verbose=False)
        export_s = time.perf_counter() - start
        error = tfprune.verify_tflite(path, small, x[:64])
        latency = tfprune.benchmark_tflite(path, runs=300).median
    return {
        "backend": keras.backend.backend(),
        **timings,
        "final_sparsity": tfprune.masking.wrappers.model_sparsity(tfprune.wrappers_of(model)),
        "step_ms": 1000 * float(np.median(timings["plain_epoch_s"])) / np.ceil(len(x) / BATCH),
        "mask_update_ms": update,
        "export_s": export_s,
        "litert_vs_keras": error,
        "litert_latency_us": 1e6 * latency,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--rounds", type=int, default=40, help="timed epochs of each model")
    parser.add_argument("--json", default="out/bench_backends.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.rounds)), flush=True)
        return

    results = {}
    for backend in args.backends:
        print(f"{backend}:", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--rounds", str(args.rounds)],
            env={**os.environ, "KERAS_BACKEND": backend},
            capture_output=True,
            text=True,
        )  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"  failed:\n{done.stderr[-2000:]}")
            continue
        print("\n".join(line for line in done.stdout.splitlines() if "round" in line))
        results[backend] = json.loads(lines[-1][len("RESULT ") :])
    reference = results.get("tensorflow", {}).get("step_ms")
    print(
        f"\n{'backend':<11} {'plain s/ep':>10} {'pruned s/ep':>11} {'pruned/plain (90 %)':<20} "
        f"{'twin/plain (90 %)':<20} {'sparsity':>8} {'step ms':>8} {'vs TF':>6} "
        f"{'update ms':>9} {'export s':>8} {'LiteRT us':>9} {'max diff':>9}"
    )

    def interval(ratio):
        low, high = ratio["interval"]
        return f"{ratio['median']:.3f} ({low:.3f}-{high:.3f})"

    for backend, r in results.items():
        versus = r["step_ms"] / reference if reference else float("nan")
        print(
            f"{backend:<11} {np.median(r['plain_epoch_s']):>10.3f} "
            f"{np.median(r['pruned_epoch_s']):>11.3f} {interval(r['ratio']):<20} "
            f"{interval(r['twin_ratio']):<20} {r['final_sparsity']:>8.2f} {r['step_ms']:>8.2f} "
            f"{versus:>6.2f} {r['mask_update_ms']:>9.1f} {r['export_s']:>8.1f} "
            f"{r['litert_latency_us']:>9.1f} {r['litert_vs_keras']:>9.1e}"
        )
    write_report(args.json, {"results": results, "rounds": args.rounds})


if __name__ == "__main__":
    main()
