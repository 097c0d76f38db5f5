"""Does pruning beat training small? Accuracy against measured LiteRT latency, side by side.

Per task (digits CNN, MNIST-1D Conv1D CNN), seed and FLOPs level (26 % and 50 % of the dense
model's FLOPs kept), in one run:

  dense          the full model, trained `--dense-epochs`;
  small          the same architecture narrowed to the level's FLOPs, trained from scratch
                 for the same total epochs (dense + fine-tuning);
  defaults       the dense model pruned during `--prune-epochs` of fine-tuning with
                 `PruningCallback` and tfprune's defaults (`round_to="auto"`), global
                 ranking, FLOPs target = the small net's FLOPs;
  round_to_1     the same, filter by filter (the default before `round_to="auto"`);
  latency        `target="latency"` with a measured `LatencyTable`, the budget the small
                 net's measured latency;
  distilled      defaults + `tfprune.methods.Distillation(teacher=dense, temperature=4, alpha=0.5)`;
  dsp            (digits) DSP group learning, then its deployment (`form="auto"`: the
                 grouped or the filter form, whichever LiteRT runs faster), fine-tuned;
  dsp_grouped    (digits) the same group learning, always the grouped deployment.

Every model is exported to `.tflite` and timed in LiteRT (1 thread), all of one seed and
level in alternating rounds, so latency ratios hold on a shared machine. Then, for models
too large to train here (the 64x64 plain CNN, MobileNetV2 at 96x96), the same pruning one-shot
on untrained weights against the narrower net of the same FLOPs: latency only.

Writes the JSON report and `docs/bench_value.png` (accuracy against latency, the Pareto
front per task and level).

    python tools/bench_value.py [--tasks digits mnist1d] [--seeds 0 1 2] [--variants ...]
"""

import argparse
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_shrink import plain_cnn  # noqa: E402
from benchreport import fine_tune_schedule, over_seeds, trained, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune import zoo  # noqa: E402

LEVELS = (0.26, 0.50)
TASKS = {
    "digits": (zoo.load_digits, zoo.digits_cnn),
    "mnist1d": (zoo.load_mnist1d, zoo.mnist1d_cnn),
}
PRUNED = ("defaults", "round_to_1", "latency", "distilled", "dsp", "dsp_grouped")
TRAINED = ("dense", "small", *PRUNED)


#: Latency-only models: (the dense model, the narrower net of about 26 % of its FLOPs).
UNTRAINED = {
    "plain_cnn": (plain_cnn, lambda: plain_cnn(width=0.5)),
    "mobilenetv2": (
        lambda: keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10),
        lambda: keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.5, weights=None, classes=10
        ),
    ),
}


def width_for(build, keep):
    """The width multiplier whose net has the FLOPs fraction closest to `keep`."""
    full = tfprune.count_flops(build())
    widths = np.round(np.arange(0.3, 1.0, 0.01), 2)
    ratios = [tfprune.count_flops(build(width=float(w))) / full for w in widths]
    return float(widths[int(np.argmin(np.abs(np.array(ratios) - keep)))])


def pruned_during_fit(dense, data, epochs, removed, teacher=None, **prune_kwargs):
    """`dense` pruned to `removed` while fine-tuning `epochs`, stripped and shrunk."""
    (x, y), _ = data
    steps = int(np.ceil(len(x) / 32))
    pruned = tfprune.prune(
        dense,
        schedule=fine_tune_schedule(removed, steps, epochs),
        ranking="global",
        **{"target": "flops", **prune_kwargs},
    )
    trainer = (
        pruned
        if teacher is None
        else tfprune.methods.Distillation(pruned, teacher=teacher, temperature=4.0, alpha=0.5)
    )
    trained(trainer, x, y, epochs, callbacks=[tfprune.PruningCallback(log_layers=False)])
    return tfprune.shrink(tfprune.strip(pruned))


def reachable_latency(model, table):
    """The most latency `target="latency"` can remove from `model` (the first convolution
    and the head protected), less a margin: the small net's budget can be beyond it."""
    pruned = tfprune.prune(
        model,
        schedule=tfprune.OneShot(0.0),
        target="latency",
        latency_table=table,
        ranking="global",
    )
    return min(plan.max_removable() for plan in tfprune.pruning_plans(pruned)) - 0.005


def dsp_models(dense, data, epochs, removed, variants):
    """DSP: group learning for 2/3 of `epochs`, then each asked deployment fine-tuned for the
    rest: `dsp` (`form="auto"`: grouped or filter form, whichever LiteRT runs faster) and
    `dsp_grouped` (always grouped). Returns `{variant: (model, FLOPs ratio, form)}`."""
    (x, y), _ = data
    learning = epochs * 2 // 3
    steps = int(np.ceil(len(x) / 32))
    # DSP trains the model it wraps: a copy, so the dense model stays the others' start.
    copy = keras.models.clone_model(dense)
    copy.set_weights(dense.get_weights())
    dsp = tfprune.methods.DSP(copy, groups=4, lam=1e-5, ramp_steps=steps * learning // 2)
    trained(dsp, x, y, learning)
    built = {}
    for variant, form in (("dsp", "auto"), ("dsp_grouped", "grouped")):
        if variant in variants:
            plan = dsp.prune(flops_target=removed, form=form)
            deployed = trained(tfprune.methods.deploy_groups(plan), x, y, epochs - learning)
            built[variant] = (deployed, 1 - plan.flops_removed, plan.form)
            print(f"  {variant}: deployed in the {plan.form} form; timed {plan.latency}")
    return built


def timed_rows(models, workdir, tag, rounds, runs):
    """Export `models` and time them in alternating rounds: `{name: (seconds, bytes)}`."""
    paths = {
        name: tfprune.export_tflite(model, workdir / f"{tag}_{name}.tflite")
        for name, model in models.items()
    }
    latency = tfprune.compare_latency(list(paths.values()), rounds, runs)
    return {name: (latency[path], path.stat().st_size) for name, path in paths.items()}


def run_trained(task, seed, args, workdir):
    load, build = TASKS[task]
    data = load()
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = trained(build(), x, y, args.dense_epochs)
    dense_flops = tfprune.count_flops(dense)
    if "latency" in args.variants:
        table = tfprune.measure_latency_table(dense, verbose=0)
        reachable = reachable_latency(dense, table)
    results = {}
    for level in LEVELS:
        keras.utils.set_random_seed(seed)
        small = trained(
            build(width=width_for(build, level)), x, y, args.dense_epochs + args.prune_epochs
        )
        removed = 1 - tfprune.count_flops(small) / dense_flops
        # The latency budget is the small net's, measured before the pruned models exist.
        budget = timed_rows({"dense": dense, "small": small}, workdir, "budget", 3, args.runs)
        latency_removed = 1 - budget["small"][0] / budget["dense"][0]
        models = {"dense": dense, "small": small}
        flops_of = {}
        forms = {}
        for variant, kwargs in (
            ("defaults", {}),
            ("round_to_1", {"round_to": 1}),
            ("latency", {"target": "latency"}),
            ("distilled", {"teacher": dense}),
        ):
            if variant in args.variants:
                keras.utils.set_random_seed(seed)
                goal = removed
                if variant == "latency":
                    latency_removed = min(latency_removed, reachable)
                    goal, kwargs = latency_removed, {**kwargs, "latency_table": table}
                models[variant] = pruned_during_fit(dense, data, args.prune_epochs, goal, **kwargs)
        if task == "digits" and {"dsp", "dsp_grouped"} & set(args.variants):
            keras.utils.set_random_seed(seed)
            built = dsp_models(dense, data, args.prune_epochs, removed, args.variants)
            for variant, (model, flops_ratio, form) in built.items():
                models[variant], flops_of[variant], forms[variant] = (
                    model,
                    flops_ratio * dense_flops,
                    form,
                )
        timing = timed_rows(models, workdir, f"{task}_{seed}_{level}", args.rounds, args.runs)
        for name, model in models.items():
            seconds, size = timing[name]
            results[f"{level}/{name}"] = {
                "accuracy": tfprune.robust_accuracy(model, x_test, y_test, None),
                "flops_ratio": flops_of.get(name, tfprune.count_flops(model)) / dense_flops,
                "latency_ratio": seconds / timing["dense"][0],
                "latency_vs_small": seconds / timing["small"][0],
                "latency_us": seconds * 1e6,
                "file_kb": size / 1024,
            }
            if name in forms:
                results[f"{level}/{name}"]["grouped_form"] = float(forms[name] == "grouped")
        if "latency" in models:
            # The budget asked for: the small net's measured latency, or what is reachable.
            results[f"{level}/latency"]["latency_budget"] = 1 - latency_removed
        for name in models:
            row = results[f"{level}/{name}"]
            print(
                f"  {task} seed {seed} kept {level:.2f} {name:11s} acc {row['accuracy']:.4f} "
                f"FLOPs {row['flops_ratio']:.3f} latency {row['latency_ratio']:.3f} "
                f"(x{row['latency_vs_small']:.2f} the small net)",
                flush=True,
            )
    return results


def run_untrained(name, args, workdir):
    """One-shot pruning of an untrained model to the narrower net's FLOPs: latency only."""
    build, build_small = UNTRAINED[name]
    keras.utils.set_random_seed(0)
    dense, small = build(), build_small()
    dense_flops = tfprune.count_flops(dense)
    removed = 1 - tfprune.count_flops(small) / dense_flops
    table = tfprune.measure_latency_table(dense, verbose=0)
    budget = timed_rows({"dense": dense, "small": small}, workdir, f"{name}_budget", 3, args.runs)
    latency_removed = 1 - budget["small"][0] / budget["dense"][0]
    models = {"dense": dense, "small": small}
    for variant, kwargs in (
        ("defaults", {"target": "flops"}),
        ("round_to_1", {"target": "flops", "round_to": 1}),
        ("latency", {"target": "latency", "latency_table": table}),
    ):
        goal = latency_removed if variant == "latency" else removed
        pruned = tfprune.prune(dense, schedule=tfprune.OneShot(goal), ranking="global", **kwargs)
        tfprune.apply_target(pruned, goal)
        models[variant] = tfprune.shrink(tfprune.strip(pruned))
    timing = timed_rows(models, workdir, name, args.rounds, args.runs)
    rows = {}
    for variant, model in models.items():
        seconds, size = timing[variant]
        rows[variant] = {
            "flops_ratio": tfprune.count_flops(model) / dense_flops,
            "latency_ratio": seconds / timing["dense"][0],
            "latency_vs_small": seconds / timing["small"][0],
            "latency_us": seconds * 1e6,
            "file_kb": size / 1024,
        }
        print(
            f"  {name} {variant:11s} FLOPs {rows[variant]['flops_ratio']:.3f} latency "
            f"{rows[variant]['latency_ratio']:.3f} (x{rows[variant]['latency_vs_small']:.2f} "
            "the small net)",
            flush=True,
        )
    return rows


def plot(summaries, path):
    """Accuracy against measured latency ratio, one panel per task and level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(task, level) for task in summaries for level in LEVELS]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for axis, (task, level) in zip(axes[0], panels):
        for variant in TRAINED:
            row = summaries[task].get(f"{level}/{variant}")
            if row is None:
                continue
            axis.errorbar(
                row["latency_ratio"]["mean"],
                100 * row["accuracy"]["mean"],
                xerr=row["latency_ratio"]["std"],
                yerr=100 * row["accuracy"]["std"],
                fmt="o",
                capsize=3,
                label=variant,
            )
        axis.set_title(f"{task}, {int(round(100 * level))} % of FLOPs kept")
        axis.set_xlabel("LiteRT latency / dense (1 thread)")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--untrained", nargs="*", default=list(UNTRAINED), choices=list(UNTRAINED))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(PRUNED), choices=list(PRUNED))
    parser.add_argument("--dense-epochs", type=int, default=15)
    parser.add_argument("--prune-epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", default="out/bench_value.json")
    parser.add_argument("--plot", default="docs/bench_value.png")
    args = parser.parse_args()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench_value_"))
    report = {"summary": {}, "per_seed": {}, "untrained": {}}
    for task in args.tasks:
        per_seed = [run_trained(task, seed, args, workdir) for seed in args.seeds]
        report["per_seed"][task] = per_seed
        report["summary"][task] = over_seeds(per_seed, list(per_seed[0]))
        print(f"\n{task}: variant, accuracy, FLOPs, latency / dense, latency / small")
        for key, row in report["summary"][task].items():
            print(
                f"  {key:16s} {100 * row['accuracy']['mean']:5.1f} ± "
                f"{100 * row['accuracy']['std']:3.1f} %  {row['flops_ratio']['mean']:.3f}  "
                f"{row['latency_ratio']['mean']:.3f}  {row['latency_vs_small']['mean']:.2f}",
                flush=True,
            )
    for name in args.untrained:
        report["untrained"][name] = run_untrained(name, args, workdir)
    write_report(args.json, report)
    if report["summary"]:
        plot(report["summary"], pathlib.Path(args.plot))


if __name__ == "__main__":
    main()
