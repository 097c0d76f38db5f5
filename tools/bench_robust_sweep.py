"""The robustness sparsity sweep: adversarial pruning from 30 to 90 % of FLOPs removed.

Per data set (digits with the digits CNN, MNIST-1D with its Conv1D CNN) and seed: train the
dense model (clean), then at each sparsity prune filter groups (global ranking, FLOPs
target, cubic schedule over the first 2/3 of the fine-tuning) while fine-tuning with

  fgsm            fixed-eps FGSM adversarial training at the evaluation eps (50/50 loss);
  fgsm_small_eps  the same at a badly chosen eps, a third of it;
  fgsm_large_eps  the same at a badly chosen eps, three times it;
  bap             BAP's per-example cut-off-scale DeepFool examples (rho 0.9);
  aware           fgsm, paced by AdversarialAwarePruning (paired comparison) on a
                  held-out PGD-5 probe, rolling back past the hard limit (rollback=True);
  aware_hold      the same, hold-only (rollback=False, the default this sweep chose);
  robust_taylor   aware_hold ranking filters by criterion="robust_taylor" (first-order
                  Taylor on PGD-5 examples against the current weights) instead of L1;
  pgd_training    aware_hold training on PGD-5 examples instead of FGSM;
  long_fine_tune  aware_hold with twice the fine-tuning epochs;
  pgd_long        pgd_training with twice the fine-tuning epochs (both at once);
  pgd_long_distilled  pgd_long distilling from a robust dense teacher (the dense model
                  fine-tuned on PGD-5 examples for its own epochs; temperature 4, alpha 0.5);
  fgsm_recalibrated  fgsm, BatchNormalization recalibrated on 512 clean training
                  examples after each mask update (PruningCallback(recalibrate=...));
  aware_recalibrated  aware_hold whose probes recalibrate BatchNormalization on the same
                  examples first (AdversarialAwarePruning(recalibrate=...));
  hydra           fgsm ranking filters by criterion=Hydra (HYDRA's scores learned on the
                  PGD-5 loss of 512 training examples, at every mask update);
  l1_oneshot      fgsm pruned in one shot at the first step, then fine-tuned;
  hydra_oneshot   the same with Hydra's scores (learn the scores on the trained model,
                  prune, fine-tune adversarially);
  l1_robust_oneshot  l1_oneshot from the dense model adversarially pre-trained (the
                  robust teacher below, made once per seed);
  hydra_robust_oneshot  hydra_oneshot from it: HYDRA's whole recipe (adversarial
                  pre-training, scores learned on the robust loss, adversarial fine-tuning);

then `shrink`, and measure clean accuracy, PGD-10 robust accuracy, and the worst case over
PGD, APGD-CE and APGD-DLR (AutoAttack's first two attacks) at the evaluation eps, with the
BatchNormalization statistics as training left them (a mix of clean and adversarial batches)
and again (`*_clean_bn`) after recalibrating them on 512 clean training examples. Reports
mean and spread over seeds, the largest drop of robust accuracy between neighbouring
sparsities per variant (BAP's stability claim), training and probe seconds, and a PNG of
robust accuracy against sparsity.

Results are written after every run and an interrupted sweep resumes where it stopped
(`--resume`).

    python tools/bench_robust_sweep.py [--datasets digits mnist1d] [--seeds 0 1 2]
        [--json out/bench_robust_sweep.json] [--png docs/bench_robust_sweep.png]
    python tools/bench_robust_sweep.py --report-only --merge out/a.json out/b.json ...
"""

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import fine_tune_schedule, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import digits_cnn, load_digits, load_mnist1d, mnist1d_cnn  # noqa: E402

VARIANTS = (
    "fgsm",
    "fgsm_small_eps",
    "fgsm_large_eps",
    "bap",
    "aware",
    "aware_hold",
    "robust_taylor",
    "pgd_training",
    "long_fine_tune",
    "pgd_long",
    "pgd_long_distilled",
    "fgsm_recalibrated",
    "aware_recalibrated",
    "hydra",
    "l1_oneshot",
    "hydra_oneshot",
    "l1_robust_oneshot",
    "hydra_robust_oneshot",
)
# The variants AdversarialAwarePruning paces.
PGD_TRAINED = ("pgd_training", "pgd_long", "pgd_long_distilled")
LONG = ("long_fine_tune", "pgd_long", "pgd_long_distilled")
PACED = (
    "aware",
    "aware_hold",
    "robust_taylor",
    "long_fine_tune",
    "aware_recalibrated",
    *PGD_TRAINED,
)
RECALIBRATED = ("fgsm_recalibrated", "aware_recalibrated")
HYDRA = ("hydra", "hydra_oneshot", "hydra_robust_oneshot")
ROBUST_PRETRAINED = ("l1_robust_oneshot", "hydra_robust_oneshot")
ONE_SHOT = ("l1_oneshot", "hydra_oneshot", *ROBUST_PRETRAINED)
CALIBRATION = 512
METRICS = ("clean", "pgd", "worst")
CLEAN_BN = tuple(f"{m}_clean_bn" for m in METRICS)


def data_sets():
    """`{name: (build_model, clip, eps, dense_epochs, prune_epochs, load)}` per data set."""
    return {
        "digits": (digits_cnn, (0.0, 1.0), 0.1, 12, 12, load_digits),
        "mnist1d": (mnist1d_cnn, None, 0.1, 20, 8, load_mnist1d),
    }


def split_probe(data, size=200):
    """Hold out `size` training examples as the schedule's probe set (the test set stays
    unseen)."""
    (x, y), test = data
    order = np.random.default_rng(0).permutation(len(x))
    probe, train = order[:size], order[size:]
    return (x[train], y[train]), (x[probe], y[probe]), test


def evaluate(model, x, y, eps, clip):
    pgd = tfprune.PGD(eps=eps, steps=10, clip=clip)
    apgd = [tfprune.APGD(eps=eps, steps=25, loss=loss, clip=clip) for loss in ("ce", "dlr")]
    return {
        "clean": tfprune.robust_accuracy(model, x, y, None),
        "pgd": tfprune.robust_accuracy(model, x, y, pgd),
        "worst": tfprune.robust_accuracy(model, x, y, [pgd, *apgd]),
    }


def training_attack(variant, eps, clip):
    if variant == "bap":
        return tfprune.robustness.CutoffScale(rho=0.9, clip=clip)
    if variant in PGD_TRAINED:
        return tfprune.PGD(eps=eps, steps=5, clip=clip)
    scale = {"fgsm_small_eps": 1 / 3, "fgsm_large_eps": 3.0}.get(variant, 1.0)
    return tfprune.FGSM(eps=eps * scale, clip=clip)


def prune_once(dense, variant, sparsity, seed, spec, data):
    _, clip, eps, _, prune_epochs, _ = spec
    prune_epochs *= 2 if variant in LONG else 1
    (x, y), probe, (x_test, y_test) = data
    initial = robust_teacher(dense, spec, seed, data) if variant in ROBUST_PRETRAINED else dense
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(x) / 32))
    if variant in ONE_SHOT:
        schedule = tfprune.OneShot(sparsity, step=0)
    else:
        schedule = fine_tune_schedule(sparsity, steps, prune_epochs)
    criterion = "l1"
    if variant == "robust_taylor":
        criterion = tfprune.criteria.RobustTaylor(tfprune.PGD(eps=eps, steps=5, clip=clip))
    elif variant in HYDRA:
        criterion = tfprune.criteria.Hydra(tfprune.PGD(eps=eps, steps=5, clip=clip))
    pruned = tfprune.prune(
        initial, schedule=schedule, target="flops", ranking="global", criterion=criterion
    )
    student, teacher_row = pruned, {}
    if variant == "pgd_long_distilled":
        teacher = robust_teacher(dense, spec, seed, data)
        teacher_row = {
            f"teacher_{k}": v for k, v in evaluate(teacher, x_test, y_test, eps, clip).items()
        }
        student = tfprune.methods.Distillation(pruned, teacher=teacher, temperature=4.0, alpha=0.5)
    trainer = tfprune.AdversarialTraining(student, training_attack(variant, eps, clip), weight=0.5)
    paced = variant in PACED
    calibration = x[:CALIBRATION] if variant in RECALIBRATED else None
    if paced:
        callback = tfprune.AdversarialAwarePruning(
            probe,
            tfprune.PGD(eps=eps, steps=5, clip=clip),
            rollback=variant == "aware",
            data=(x[:256], y[:256]),
            recalibrate=calibration,
        )
    else:
        scoring = (x[:CALIBRATION], y[:CALIBRATION]) if variant in HYDRA else None
        callback = tfprune.PruningCallback(log_layers=False, recalibrate=calibration, data=scoring)
    trainer.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    start = time.perf_counter()
    trainer.fit(x, y, batch_size=32, epochs=prune_epochs, verbose=0, callbacks=[callback])
    fit_seconds = time.perf_counter() - start
    small = tfprune.shrink(pruned)
    row = evaluate(small, x_test, y_test, eps, clip)
    # How adversarial training should feed BatchNormalization: as trained, the moving
    # statistics mix clean and adversarial batches; recalibrated, they are clean data's only.
    tfprune.recalibrate_batchnorm(small, x[:CALIBRATION])
    row.update({f"{k}_clean_bn": v for k, v in evaluate(small, x_test, y_test, eps, clip).items()})
    row["flops_ratio"] = tfprune.count_flops(small) / tfprune.count_flops(dense)
    row["fit_seconds"] = fit_seconds
    row.update(teacher_row)
    if paced:
        decisions = [e["decision"].split(",")[0] for e in callback.events]
        row["decisions"] = {d: decisions.count(d) for d in sorted(set(decisions))}
        row["probe_seconds"] = callback.probe_budget["seconds"]
        row["probes"] = callback.probe_budget["probes"]
    return row


ROBUST_TEACHERS = {}


def robust_teacher(dense, spec, seed, data):
    """The dense model fine-tuned on PGD-5 examples (50/50 loss) for the dense epochs (made
    once per dense model and seed)."""
    key = (id(dense), seed)
    if key not in ROBUST_TEACHERS:
        ROBUST_TEACHERS[key] = adversarially_pretrained(dense, spec, seed, data)
    return ROBUST_TEACHERS[key]


def adversarially_pretrained(dense, spec, seed, data):
    _, clip, eps, dense_epochs, _, _ = spec
    (x, y), _, _ = data
    keras.utils.set_random_seed(seed)
    teacher = keras.models.clone_model(dense)
    teacher.set_weights(dense.get_weights())
    trainer = tfprune.AdversarialTraining(
        teacher, tfprune.PGD(eps=eps, steps=5, clip=clip), weight=0.5
    )
    trainer.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    trainer.fit(x, y, batch_size=32, epochs=dense_epochs, verbose=0)
    return teacher


def dense_model(spec, seed, data):
    build, clip, eps, dense_epochs, _, _ = spec
    (x, y), _, (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    dense = build()
    dense.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    dense.fit(x, y, batch_size=32, epochs=dense_epochs, verbose=0)
    return dense, evaluate(dense, x_test, y_test, eps, clip)


def summarise(runs, datasets, seeds, sparsities):
    """Mean and spread over seeds per data set, variant and sparsity, and the largest drop
    of worst-case robust accuracy between neighbouring sparsities (of the means, and the
    largest of any one seed)."""
    summary = {}
    for name in datasets:
        summary[name] = {}
        for variant in VARIANTS:
            cells, per_seed = {}, []
            for sparsity in sparsities:
                rows = [runs.get(f"{name}/{seed}/{sparsity}/{variant}") for seed in seeds]
                rows = [r for r in rows if r is not None]
                if not rows:
                    continue
                cells[str(sparsity)] = {
                    k: {
                        "mean": float(np.mean([r[k] for r in rows])),
                        "std": float(np.std([r[k] for r in rows])),
                        "n": len(rows),
                    }
                    for k in (*METRICS, *CLEAN_BN, "flops_ratio", "fit_seconds")
                    if all(k in r for r in rows)  # runs from before a metric existed lack it
                }
            for seed in seeds:
                # Sparsities that no seed of this data set ran (a sweep of other data sets
                # with more points) are not neighbours.
                curve = [
                    runs.get(f"{name}/{seed}/{s}/{variant}") for s in sparsities if str(s) in cells
                ]
                if len(curve) > 1 and all(curve):
                    per_seed.append(max(a["worst"] - b["worst"] for a, b in zip(curve, curve[1:])))
            means = [cells[str(s)]["worst"]["mean"] for s in sparsities if str(s) in cells]
            summary[name][variant] = {
                "by_sparsity": cells,
                "largest_drop_of_means": max(
                    (a - b for a, b in zip(means, means[1:])), default=float("nan")
                ),
                "largest_drop_any_seed": max(per_seed, default=float("nan")),
            }
    return summary


def plot(summary, sparsities, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(summary), figsize=(6 * len(summary), 4.5), squeeze=False)
    for axis, (name, variants) in zip(axes[0], summary.items()):
        for variant, result in variants.items():
            cells = result["by_sparsity"]
            shown = [s for s in sparsities if str(s) in cells]
            if not shown:  # a variant this sweep did not run
                continue
            mean = [100 * cells[str(s)]["worst"]["mean"] for s in shown]
            std = [100 * cells[str(s)]["worst"]["std"] for s in shown]
            axis.errorbar(
                [100 * s for s in shown], mean, yerr=std, marker="o", capsize=3, label=variant
            )
        axis.set_title(f"{name}: worst of PGD-10, APGD-CE, APGD-DLR")
        axis.set_xlabel("FLOPs removed (%)")
        axis.set_ylabel("robust test accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--json", default="out/bench_robust_sweep.json")
    parser.add_argument("--png", default="docs/bench_robust_sweep.png")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")
    parser.add_argument(
        "--merge",
        nargs="*",
        default=[],
        help="also keep the runs of these JSON files (sweeps run in parallel, one data set each)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: summarise and plot the runs of --json (with --resume) and --merge",
    )
    args = parser.parse_args()

    specs = data_sets()
    path = pathlib.Path(args.json)
    runs = json.loads(path.read_text())["runs"] if args.resume and path.exists() else {}
    for other in args.merge:
        runs.update(json.loads(pathlib.Path(other).read_text())["runs"])
    for name in [] if args.report_only else args.datasets:
        data = split_probe(specs[name][5]())
        for seed in args.seeds:
            todo = [
                (s, v)
                for s in args.sparsities
                for v in args.variants
                if f"{name}/{seed}/{s}/{v}" not in runs
            ]
            if not todo:
                continue
            dense, dense_row = dense_model(specs[name], seed, data)
            runs[f"{name}/{seed}/dense"] = dense_row
            print(f"{name} seed {seed} dense: {dense_row}", flush=True)
            for sparsity, variant in todo:
                key = f"{name}/{seed}/{sparsity}/{variant}"
                runs[key] = prune_once(dense, variant, sparsity, seed, specs[name], data)
                cells = "  ".join(
                    f"{k} {v:.3f}" for k, v in runs[key].items() if isinstance(v, float)
                )
                print(f"  {key:32s} {cells}", flush=True)
                summary = summarise(runs, args.datasets, args.seeds, args.sparsities)
                write_report(path, {"summary": summary, "runs": runs})
    summary = summarise(runs, args.datasets, args.seeds, args.sparsities)
    write_report(path, {"summary": summary, "runs": runs})
    for name, variants in summary.items():
        print(f"\n{name}: worst-case robust accuracy (mean ± sd over seeds) by FLOPs removed")
        for variant, result in variants.items():
            cells = "  ".join(
                f"{100 * c['worst']['mean']:5.1f} ± {100 * c['worst']['std']:4.1f}"
                for c in result["by_sparsity"].values()
            )
            drop = 100 * result["largest_drop_of_means"]
            print(f"  {variant:15s} {cells}   largest drop {drop:.1f}")
    plot(summary, args.sparsities, args.png)


if __name__ == "__main__":
    main()
