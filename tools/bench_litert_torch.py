"""Export from the PyTorch backend two ways, side by side: tfprune's `export_tflite` (the model
handed to TensorFlow's converter in a child process as a `.keras` file) and Keras' own
`model.export(format="litert")` (litert-torch). Both files are checked against PyTorch's
outputs and timed in LiteRT in turns.

The shrunk digits CNN of `bench_backends.py` (half its filters by L1 norm, stripped and
shrunk on PyTorch). litert-torch pins its own converter and LiteRT releases, so Keras' export
runs in a Python that has it (`--litert-python`, a venv with torch, keras and litert-torch);
this script needs tfprune and ai-edge-litert.

    python tools/bench_litert_torch.py --litert-python /path/to/venv/bin/python
        [--threads 1] [--json out/bench_litert_torch.json]
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

KERAS_EXPORT = """
import sys, time, keras
model = keras.saving.load_model(sys.argv[1])
start = time.perf_counter()
model.export(sys.argv[2], format="litert", verbose=False)
print("SECONDS", time.perf_counter() - start)
"""


def shrunk_on_torch(work):
    """Train, prune, strip and shrink the digits CNN on PyTorch (run with KERAS_BACKEND=torch);
    save it, its outputs on 64 images and tfprune's export of it in `work`."""
    import keras
    from bench_fit_overhead import build, digits

    import tfprune

    x, y = digits()
    keras.utils.set_random_seed(0)
    model = build(keras)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    small.save(work / "small.keras")
    np.savez(work / "io.npz", x=x[:64], y=keras.ops.convert_to_numpy(small(x[:64], training=False)))
    start = time.perf_counter()
    tfprune.export_tflite(small, work / "tfprune.tflite", verbose=False)
    return time.perf_counter() - start


def outputs_of(path, x):
    """The file's outputs on `x`, one example at a time (litert-torch fixes the batch)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for example in x:
        batch = example[None].astype(given["dtype"])
        if tuple(given["shape"]) != batch.shape:
            interpreter.resize_tensor_input(given["index"], batch.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], batch)
        interpreter.invoke()
        results.append(interpreter.get_tensor(taken["index"])[0])
    return np.stack(results)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--litert-python", required=True, help="a Python with litert-torch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="out/bench_litert_torch.json")
    parser.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_child:
        print("SECONDS", shrunk_on_torch(pathlib.Path(args.torch_child)), flush=True)
        return

    from benchreport import write_report

    from tfprune.export.interpreter import interleaved_latencies

    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        seconds = {}
        runs = {
            "tfprune": [sys.executable, __file__, "--litert-python", args.litert_python,
                        "--torch-child", str(work)],
            "keras": [args.litert_python, "-c", KERAS_EXPORT, str(work / "small.keras"),
                      str(work / "keras.tflite")],
        }  # fmt: skip
        for name, command in runs.items():  # tfprune's run makes the model Keras exports
            done = subprocess.run(
                command, env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True,
                text=True,
            )  # fmt: skip
            lines = [line for line in done.stdout.splitlines() if line.startswith("SECONDS ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"{name} export failed:\n{done.stderr[-3000:]}")
            seconds[name] = float(lines[-1].split()[1])
        with np.load(work / "io.npz") as io:
            x, reference = io["x"], io["y"]
        files = {name: work / f"{name}.tflite" for name in runs}
        errors = {
            name: float(np.abs(outputs_of(path, x) - reference).max())
            for name, path in files.items()
        }
        latencies = interleaved_latencies(
            [path.read_bytes() for path in files.values()], args.threads, rounds=7, runs=50
        )
        results = {
            name: {
                "export_s": seconds[name],
                "max_diff_vs_torch": errors[name],
                "latency_us": 1e6 * latency,
                "bytes": path.stat().st_size,
            }
            for (name, path), latency in zip(files.items(), latencies)
        }
    print(f"{'export':<8} {'export s':>8} {'bytes':>8} {'LiteRT us':>9} {'vs PyTorch':>10}")
    for name, r in results.items():
        print(
            f"{name:<8} {r['export_s']:>8.1f} {r['bytes']:>8} {r['latency_us']:>9.1f} "
            f"{r['max_diff_vs_torch']:>10.1e}"
        )
    write_report(args.json, {"results": results, "threads": args.threads})


if __name__ == "__main__":
    main()
