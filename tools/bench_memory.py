"""Peak memory of each step of the data path on ResNet50, against the model's own size.

Each run is a fresh Python process that does the steps up to one point (build the model,
then prune, apply masks, strip, shrink, export) and reports its peak resident memory
(`ru_maxrss`); a step's cost is how much its run's peak exceeds the run before it. The
model's weights are 4 bytes each: a step whose cost is several times that holds several
copies of the weights.

    python tools/bench_memory.py [--input 64] [--json out/bench_memory.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from benchreport import write_report

STEPS = ["build", "prune", "apply_target", "strip", "shrink", "export_tflite"]

WORKER = r"""
import json, os, resource, sys, tempfile
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, tfprune
upto, size = sys.argv[1], int(sys.argv[2])
steps = {STEPS}
model = keras.applications.ResNet50(input_shape=(size, size, 3), weights=None, classes=10)
done = ["build"]
if steps.index(upto) >= 1:
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
if steps.index(upto) >= 2:
    tfprune.apply_target(pruned, 0.5)
if steps.index(upto) >= 3:
    plain = tfprune.strip(pruned)
if steps.index(upto) >= 4:
    small = tfprune.shrink(plain)
if steps.index(upto) >= 5:
    tfprune.export_tflite(small, os.path.join(tempfile.mkdtemp(), "m.tflite"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_bytes": peak, "weights_bytes": 4 * model.count_params()}))
""".replace("{STEPS}", repr(STEPS))


def run(upto, size):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(WORKER)
    try:
        result = subprocess.run(
            [sys.executable, script.name, upto, str(size)],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=int, default=64, help="input side of ResNet50")
    parser.add_argument("--json", default="out/bench_memory.json")
    args = parser.parse_args()
    rows, previous = [], None
    for step in STEPS:
        measured = run(step, args.input)
        weights = measured["weights_bytes"]
        added = measured["peak_bytes"] - (previous or 0)
        rows.append(
            {"step": step, **measured, "added_bytes": added, "added_copies": added / weights}
        )
        print(
            f"{step:>14}: peak {measured['peak_bytes'] / 2**20:7.0f} MiB, "
            f"+{added / 2**20:6.0f} MiB = {added / weights:4.1f}x the weights "
            f"({weights / 2**20:.0f} MiB)",
            flush=True,
        )
        previous = measured["peak_bytes"]
    write_report(args.json, {"model": "ResNet50", "input": args.input, "rows": rows})


if __name__ == "__main__":
    main()
