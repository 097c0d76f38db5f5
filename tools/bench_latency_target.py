"""Does `target="latency"` land where it aims? Predicted against measured LiteRT latency.

For each model (bench_shrink's models, plus EfficientNetB0 at 96x96, weights=None) this
measures a latency table on this machine (`tfprune.measure_latency_table`, cached in
~/.cache/tfprune), then for each latency budget (0.5 and 0.3 of dense by default) prunes
with `target="latency"` (L1, global ranking, nothing protected, one shot: latency does not
depend on the weights' values, so no training is needed), shrinks, and times dense and
shrunk side by side in LiteRT (alternating, 1 thread). For comparison, the same model pruned
with `target="flops"` to the same fraction of FLOPs is timed in the same rounds: that is
what a user without the table would have done.

    python tools/bench_latency_target.py [--models digits_cnn plain_cnn mobilenetv2]
        [--keep 0.5 0.3] [--round-to auto] [--rounds 7] [--out out] [--png docs/x.png]
    python tools/bench_latency_target.py --plot out/a.json --png docs/bench_latency_target.png
"""

import argparse
import io
import json
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from bench_shrink import MODELS  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.core.files import write_atomically  # noqa: E402

BENCH_MODELS = {
    **{k: v for k, v in MODELS.items() if k not in ("vit_style", "keras_hub_resnet")},
    "efficientnetb0": lambda: keras.applications.EfficientNetB0(
        input_shape=(96, 96, 3), weights=None, classes=10
    ),
}


def shrunk(model, target, removed, round_to, table=None):
    """The model pruned one-shot to `removed` of its FLOPs or latency, shrunk; and the plan."""
    pruned = tfprune.prune(
        model,
        schedule=tfprune.OneShot(removed),
        target=target,
        ranking="global",
        round_to=round_to,
        latency_table=table,
        # The first convolution prunes too: a budget of 0.3 needs it on the small CNNs.
        protect=None,
    )
    plan = tfprune.apply_target(pruned, removed)
    return tfprune.shrink(tfprune.strip(pruned)), plan


def measure(name, keeps, rounds, runs, round_to, workdir):
    keras.utils.set_random_seed(0)
    model = BENCH_MODELS[name]()
    start = time.perf_counter()
    table = tfprune.measure_latency_table(model, verbose=0)
    table_seconds = time.perf_counter() - start
    dense_path = tfprune.export_tflite(model, workdir / f"{name}_dense.tflite")
    rows = []
    for keep in keeps:
        try:
            by_latency, plan = shrunk(model, "latency", 1 - keep, round_to, table)
        except ValueError as error:  # a budget the safeguards cannot reach: say so, go on
            print(f"  {name} budget {keep:.2f}: {error}", flush=True)
            rows.append(
                {
                    "model": name,
                    "latency_budget": keep,
                    "round_to": round_to,
                    "impossible": str(error),
                }
            )
            continue
        by_flops, _ = shrunk(model, "flops", 1 - keep, round_to)
        paths = {
            "latency": tfprune.export_tflite(by_latency, workdir / f"{name}_{keep}_lat.tflite"),
            "flops": tfprune.export_tflite(by_flops, workdir / f"{name}_{keep}_flops.tflite"),
        }
        latency = tfprune.compare_latency([dense_path, *paths.values()], rounds, runs)
        measured = {k: latency[p] / latency[dense_path] for k, p in paths.items()}
        predicted = 1 - plan.removed()
        rows.append(
            {
                "model": name,
                "latency_budget": keep,
                "round_to": round_to,
                "predicted_latency_ratio": predicted,
                "measured_latency_ratio": measured["latency"],
                "miss_vs_budget": measured["latency"] / keep - 1,
                "miss_vs_prediction": measured["latency"] / predicted - 1,
                "flops_ratio": tfprune.count_flops(by_latency) / tfprune.count_flops(model),
                "flops_target_latency_ratio": measured["flops"],
                "flops_target_flops_ratio": tfprune.count_flops(by_flops)
                / tfprune.count_flops(model),
                "dense_latency_ms": latency[dense_path] * 1e3,
                "table_entries": len(table.entries),
                "table_seconds": table_seconds,
                "table_scale": table.scale,
                "table_fixed_us": table.fixed_us,
                "table_tile": table.tile,
            }
        )
        row = rows[-1]
        print(
            f"  {name} budget {keep:.2f}: predicted {predicted:.3f}, measured "
            f"{row['measured_latency_ratio']:.3f} ({row['miss_vs_budget']:+.1%} vs budget); "
            f"FLOPs {row['flops_ratio']:.3f}; flops target: latency {measured['flops']:.3f}",
            flush=True,
        )
    return rows


def plot(rows, path):
    """Measured latency against the budget, for the latency target and for a FLOPs target of
    the same fraction: on the diagonal, the budget is met."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "impossible" not in r]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0.1, 0.8], [0.1, 0.8], "k--", lw=1, label="measured = budget")
    ax.fill_between(
        [0.1, 0.8], [0.095, 0.76], [0.105, 0.84], color="gray", alpha=0.2, label="within 5 %"
    )
    for name, marker in zip(BENCH_MODELS, "osD^v<>"):
        mine = [r for r in rows if r["model"] == name]
        if mine:
            budgets = [r["latency_budget"] for r in mine]
            ax.scatter(
                budgets,
                [r["measured_latency_ratio"] for r in mine],
                marker=marker,
                s=60,
                label=f"{name}, target='latency'",
            )
            ax.scatter(
                budgets,
                [r["flops_target_latency_ratio"] for r in mine],
                marker=marker,
                s=40,
                facecolors="none",
                edgecolors="gray",
            )
    ax.set_xlabel("latency budget (fraction of dense)")
    ax.set_ylabel("measured LiteRT latency, shrunk / dense (1 thread)")
    ax.set_title(
        "target='latency' (filled) vs target='flops' at the same fraction (hollow)", fontsize=9
    )
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomically(path, buffer.getvalue())
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=list(BENCH_MODELS), choices=list(BENCH_MODELS)
    )
    parser.add_argument(
        "--keep", nargs="+", type=float, default=[0.5, 0.3], help="latency budgets (of dense)"
    )
    parser.add_argument(
        "--round-to",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="filter counts' multiple, or auto (the table's channel tile)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds")
    parser.add_argument("--runs", type=int, default=30, help="invokes per timing round")
    parser.add_argument("--out", default="out", help="directory for bench_latency_target.json")
    parser.add_argument("--png", help="also draw the rows into this PNG (e.g. docs/...png)")
    parser.add_argument(
        "--plot", nargs="+", metavar="JSON", help="only draw these earlier reports into --png"
    )
    args = parser.parse_args()
    if args.plot:
        reports = [json.loads(pathlib.Path(r).read_text())["rows"] for r in args.plot]
        plot([row for rows in reports for row in rows], pathlib.Path(args.png))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, name in enumerate(args.models, 1):
            print(f"[{index}/{len(args.models)}] {name}: measuring its latency table ...")
            rows += measure(
                name, args.keep, args.rounds, args.runs, args.round_to, pathlib.Path(tmp)
            )
    write_report(pathlib.Path(args.out) / "bench_latency_target.json", {"rows": rows})
    if args.png:
        plot(rows, pathlib.Path(args.png))


if __name__ == "__main__":
    main()
