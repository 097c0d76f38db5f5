"""How long one mask update takes on a big model: `apply_target` on ResNet50 (25M weights).

The callback recomputes every mask at each pruning step, so this is what a schedule with
frequent updates pays per update. Times local and global ranking side by side for each
granularity (the global ranking sorts every unit of the model together), reports seconds per
update and the global / local ratio.

    python tools/bench_ranking.py [--repeats 2] [--input 64] [--json out/bench_ranking.json]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402

CASES = [
    {"granularity": "unstructured", "target": "sparsity"},
    {"granularity": "unstructured", "target": "flops"},
    {"granularity": "filter", "target": "sparsity"},
    {"granularity": "filter", "target": "flops", "round_to": 8},
]


def seconds_per_update(model, repeats, **kwargs):
    """Fastest of `repeats` timed `apply_target` calls on a fresh pruned copy (stepping the
    target, so every call changes masks)."""
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.6), **kwargs)
    best = float("inf")
    for index in range(repeats):
        start = time.perf_counter()
        tfprune.apply_target(pruned, 0.3 + 0.1 * index)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed updates per case (the fastest counts)"
    )
    parser.add_argument(
        "--input", type=int, default=64, help="input side (only FLOPs targets depend on it)"
    )
    parser.add_argument("--json", default="out/bench_ranking.json")
    args = parser.parse_args()
    model = keras.applications.ResNet50(
        input_shape=(args.input, args.input, 3), weights=None, classes=10
    )
    rows = []
    for case in CASES:
        row = {**case}
        for ranking in ("local", "global"):
            row[f"{ranking}_seconds"] = seconds_per_update(
                model, args.repeats, ranking=ranking, **case
            )
        row["global_over_local"] = row["global_seconds"] / row["local_seconds"]
        rows.append(row)
        print(
            f"{case['granularity']:>12} {case['target']:>8}: local {row['local_seconds']:.2f} s  "
            f"global {row['global_seconds']:.2f} s  ({row['global_over_local']:.1f}x)",
            flush=True,
        )
    write_report(args.json, {"model": "ResNet50", "weights": model.count_params(), "rows": rows})


if __name__ == "__main__":
    main()
