"""How long one mask update takes on a big model: ResNet50 (25M weights).

The callback builds a `PruningPlan` once per `fit` (it reads the channel graph) and then
recomputes every mask at each pruning step with `plan.apply`: the second is what a schedule
with frequent updates pays per update. Times both, for local and global ranking side by side
for each granularity, and reports the global / local ratio of the update.

    python tools/bench_ranking.py [--repeats 2] [--input 64] [--json out/bench_ranking.json]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.masking.ranking import PruningPlan  # noqa: E402

CASES = [
    {"granularity": "unstructured", "target": "sparsity"},
    {"granularity": "unstructured", "target": "flops"},
    {"granularity": "filter", "target": "sparsity"},
    {"granularity": "filter", "target": "flops", "round_to": 8},
]


def seconds(model, repeats, **kwargs):
    """`(seconds to build the plan, fastest of `repeats` timed updates)` on a fresh pruned
    copy, stepping the target so that every update changes masks."""
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.6), **kwargs)
    start = time.perf_counter()
    plan = PruningPlan(pruned)
    build = time.perf_counter() - start
    best = float("inf")
    for index in range(repeats):
        start = time.perf_counter()
        plan.apply(0.3 + 0.1 * index)
        best = min(best, time.perf_counter() - start)
    return build, best


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
            build, update = seconds(model, args.repeats, ranking=ranking, **case)
            row[f"{ranking}_plan_seconds"], row[f"{ranking}_seconds"] = build, update
        row["global_over_local"] = row["global_seconds"] / row["local_seconds"]
        rows.append(row)
        print(
            f"{case['granularity']:>12} {case['target']:>8}: update local "
            f"{row['local_seconds']:.2f} s, global {row['global_seconds']:.2f} s "
            f"({row['global_over_local']:.1f}x); plan {row['local_plan_seconds']:.2f} s / "
            f"{row['global_plan_seconds']:.2f} s",
            flush=True,
        )
    write_report(args.json, {"model": "ResNet50", "weights": model.count_params(), "rows": rows})


if __name__ == "__main__":
    main()
