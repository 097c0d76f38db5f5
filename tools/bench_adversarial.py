"""Robustness of pruned models: four ways to prune to 50 % of FLOPs, clean and PGD accuracy.

On the bundled digits and the digits CNN, per seed: train the dense model, then prune
(filter groups, global ranking, FLOPs target 50 %, cubic schedule) while fine-tuning:

  (a) plain: the polynomial schedule, clean training;
  (b) fixed-eps adversarial training: FGSM(eps) examples, 50/50 loss;
  (c) BAP: cut-off-scale DeepFool examples (rho 0.9, adaptive delta), 50/50 loss;
  (d) (c) paced by AdversarialAwarePruning (PGD probe on a held-out split).

Reports clean test accuracy and PGD (L-inf, 10 steps, random start) robust accuracy at two
eps, mean and spread over seeds, plus the dense model for reference.

    python tools/bench_adversarial.py [--seeds 0 1 2] [--json out/bench_adversarial.json]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import fine_tune_schedule, over_seeds, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import digits_cnn, load_digits  # noqa: E402

EPS = (0.05, 0.1)
VARIANTS = ("dense", "a_plain", "b_fgsm", "c_bap", "d_bap_aware")


def evaluate(model, x, y):
    row = {"clean": tfprune.robust_accuracy(model, x, y, None)}
    for eps in EPS:
        row[f"pgd_{eps}"] = tfprune.robust_accuracy(model, x, y, tfprune.PGD(eps=eps, steps=10))
    return row


def run_seed(seed, args, data):
    (x, y), (x_probe, y_probe), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = digits_cnn()
    dense.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    dense.fit(x, y, batch_size=32, epochs=args.dense_epochs, verbose=0)
    results = {"dense": evaluate(dense, x_test, y_test)}
    steps = int(np.ceil(len(x) / 32))
    for variant in VARIANTS[1:]:
        keras.utils.set_random_seed(seed)
        schedule = fine_tune_schedule(0.5, steps, args.prune_epochs)
        pruned = tfprune.prune(dense, schedule=schedule, target="flops", ranking="global")
        if variant == "a_plain":
            trainer = pruned
        elif variant == "b_fgsm":
            trainer = tfprune.AdversarialTraining(
                pruned, tfprune.FGSM(eps=args.train_eps), weight=0.5
            )
        else:
            trainer = tfprune.AdversarialTraining(
                pruned, tfprune.robustness.CutoffScale(rho=0.9), weight=0.5
            )
        if variant == "d_bap_aware":
            callback = tfprune.AdversarialAwarePruning(
                (x_probe, y_probe),
                tfprune.PGD(eps=0.1, steps=5),
                tolerance=args.tolerance,
                hard_limit=args.hard_limit,
            )
        else:
            callback = tfprune.PruningCallback(log_layers=False)
        trainer.compile(
            keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        start = time.perf_counter()
        trainer.fit(x, y, batch_size=32, epochs=args.prune_epochs, verbose=0, callbacks=[callback])
        small = tfprune.shrink(pruned)
        row = evaluate(small, x_test, y_test)
        row["flops_ratio"] = tfprune.count_flops(small) / tfprune.count_flops(dense)
        row["fit_seconds"] = time.perf_counter() - start
        if variant == "d_bap_aware":
            decisions = [e["decision"] for e in callback.events]
            row["decisions"] = {d: decisions.count(d) for d in sorted(set(decisions))}
        results[variant] = row
        print(
            f"  seed {seed} {variant:12s} "
            + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dense-epochs", type=int, default=12)
    parser.add_argument("--prune-epochs", type=int, default=12)
    parser.add_argument("--train-eps", type=float, default=0.1, help="FGSM eps of variant (b)")
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--hard-limit", type=float, default=0.08)
    parser.add_argument("--json", default="out/bench_adversarial.json")
    args = parser.parse_args()

    (x, y), test = load_digits()
    # Hold out 200 training images as the schedule's probe set; the test set stays unseen.
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    probe, train = order[:200], order[200:]
    data = ((x[train], y[train]), (x[probe], y[probe]), test)
    per_seed = []
    for seed in args.seeds:
        print(f"seed {seed}:", flush=True)
        per_seed.append(run_seed(seed, args, data))

    summary = over_seeds(per_seed, VARIANTS, ["clean", *[f"pgd_{e}" for e in EPS]])
    print("\nvariant         clean            " + "  ".join(f"PGD eps {e:<10}" for e in EPS))
    for variant, row in summary.items():
        cells = "  ".join(
            f"{100 * row[k]['mean']:5.1f} ± {100 * row[k]['std']:4.1f} %" for k in row
        )
        print(f"{variant:14s}  {cells}")
    write_report(args.json, {"summary": summary, "per_seed": per_seed})


if __name__ == "__main__":
    main()
