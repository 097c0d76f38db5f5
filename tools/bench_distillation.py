"""Does distillation recover what pruning to a small model loses? Digits, 74 % of FLOPs removed.

Per seed, on the bundled digits and the digits CNN: train the dense model, then prune its
filters during fine-tuning (global ranking, FLOPs target, polynomial schedule) in three ways,
and train the half-width CNN from scratch for the same total epochs, the baseline pruning
has to beat:

  (a) plain: fine-tuning on the labels;
  (b) distilled: `tfprune.methods.Distillation(pruned, teacher=dense, temperature=4, alpha=0.5)`;
  (c) distilled, alpha 0.9 (mostly the teacher's soft targets);
  (d) half width from scratch, dense-epochs + prune-epochs epochs.

Reports test accuracy (mean and spread over seeds) and the FLOPs ratio.

    python tools/bench_distillation.py [--seeds 0 1 2] [--json out/bench_distillation.json]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import compile_classifier, fine_tune_schedule, over_seeds, trained, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import digits_cnn, load_digits  # noqa: E402

TARGET = 0.74
VARIANTS = ("dense", "a_plain", "b_distilled", "c_distilled_0.9", "d_half_width_scratch")


def run_seed(seed, args, data):
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = trained(digits_cnn(), x, y, args.dense_epochs)
    dense_flops = tfprune.count_flops(dense)
    results = {"dense": {"accuracy": tfprune.robust_accuracy(dense, x_test, y_test, None)}}
    steps = int(np.ceil(len(x) / 32))
    for variant, alpha in (("a_plain", None), ("b_distilled", 0.5), ("c_distilled_0.9", 0.9)):
        keras.utils.set_random_seed(seed)
        schedule = fine_tune_schedule(TARGET, steps, args.prune_epochs)
        pruned = tfprune.prune(dense, schedule=schedule, target="flops", ranking="global")
        trainer = (
            pruned
            if alpha is None
            else tfprune.methods.Distillation(pruned, teacher=dense, temperature=4.0, alpha=alpha)
        )
        compile_classifier(trainer)
        trainer.fit(
            x,
            y,
            batch_size=32,
            epochs=args.prune_epochs,
            verbose=0,
            callbacks=[tfprune.PruningCallback(log_layers=False)],
        )
        small = tfprune.shrink(pruned)
        results[variant] = {
            "accuracy": tfprune.robust_accuracy(small, x_test, y_test, None),
            "flops_ratio": tfprune.count_flops(small) / dense_flops,
        }
    keras.utils.set_random_seed(seed)
    half = trained(digits_cnn(width=0.5), x, y, args.dense_epochs + args.prune_epochs)
    results["d_half_width_scratch"] = {
        "accuracy": tfprune.robust_accuracy(half, x_test, y_test, None),
        "flops_ratio": tfprune.count_flops(half) / dense_flops,
    }
    for variant, row in results.items():
        print(
            f"  seed {seed} {variant:22s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()),
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dense-epochs", type=int, default=15)
    parser.add_argument("--prune-epochs", type=int, default=12)
    parser.add_argument("--json", default="out/bench_distillation.json")
    args = parser.parse_args()
    data = load_digits()
    per_seed = [run_seed(seed, args, data) for seed in args.seeds]
    summary = over_seeds(per_seed, VARIANTS)
    print("\nvariant                 accuracy          FLOPs ratio")
    for variant, row in summary.items():
        flops = row.get("flops_ratio", {"mean": 1.0})["mean"]
        accuracy = row["accuracy"]
        print(
            f"{variant:22s}  {100 * accuracy['mean']:5.1f} ± {100 * accuracy['std']:4.1f} %"
            f"   {flops:.2f}"
        )
    write_report(args.json, {"summary": summary, "per_seed": per_seed})


if __name__ == "__main__":
    main()
