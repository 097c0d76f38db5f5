"""Pruning transformers by heads and units against training them small: is pruning worth it?

Two tasks, per seed:

- `digits_vit`: the bundled digits (16x16) as 16 patches of 4x4 pixels, each with its
  position one-hot, into a ViT-style pre-norm encoder (width 64, 4 heads of 16,
  feed-forward 128, 2 blocks, mean pooling);
- `counting_bert`: `tfprune.zoo.tiny_transformer` (a post-norm BERT-style encoder, width 32,
  4 heads of 8, feed-forward 64, 2 blocks) on `tfprune.zoo.make_counting_task` with 8
  classes in 32 tokens of 32, 300 training sequences (with thousands every variant reaches
  100 %).

Variants, each ending with a model at about half the dense FLOPs:

  dense          trained for `--dense-epochs`;
  pruned_global  the dense model with heads and feed-forward units pruned during `fit`
                 (`tfprune.prune`, FLOPs target 0.5, global ranking, `PruningCallback`),
                 fine-tuned for `--prune-epochs`, then shrunk;
  pruned_local   the same with `ranking="local"`: every block's heads and units pruned
                 to the same fraction;
  pruned_local_distilled  the same, fine-tuned by `tfprune.methods.Distillation` from the dense
                 model (temperature 4, alpha 0.5);
  small_scratch  the same architecture with half the heads and half the feed-forward
                 units, trained from scratch for dense + prune epochs (the same total);
  leap           the dense model trained for `--prune-epochs` by `tfprune.methods.LEAP` (learned
                 masks over the attention heads and the feed-forward up-projections'
                 units) at a density of those layers' parameters that lands near half
                 the FLOPs, with a score learning rate of 2e-2 (digits) or 0.1
                 (counting, fewer steps) and initial threshold 3 (with LEAP's defaults
                 the thresholds do not come down in this few steps), then shrunk.

Reports test accuracy (mean and spread over seeds), the FLOPs ratio to dense, and the
heads and feed-forward units left.

    python tools/bench_transformer_accuracy.py [--tasks digits_vit counting_bert]
        [--seeds 0 1 2] [--json out/bench_transformer_accuracy.json]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import fine_tune_schedule, over_seeds, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import load_digits, make_counting_task, tiny_transformer  # noqa: E402

TARGET = 0.5
VARIANTS = (
    "dense",
    "pruned_global",
    "pruned_local",
    "pruned_local_distilled",
    "small_scratch",
    "leap",
)
PATCH = 4
COUNTING = {"length": 32, "vocab": 32, "classes": 8}


def digits_patches():
    """The digits as `(n, 16, 16 + 16)`: each 4x4 patch's pixels and its position one-hot."""
    (x, y), (x_test, y_test) = load_digits()

    def patches(images):
        n, side = len(images), images.shape[1] // PATCH
        grid = images[..., 0].reshape(n, side, PATCH, side, PATCH).transpose(0, 1, 3, 2, 4)
        flat = grid.reshape(n, side * side, PATCH * PATCH)
        position = np.broadcast_to(
            np.eye(side * side, dtype=np.float32), (n, side * side, side * side)
        )
        return np.concatenate([flat, position], axis=-1)

    return (patches(x), y), (patches(x_test), y_test)


def digits_vit(heads=4, ffn=128, width=64, blocks=2, tokens=16, features=32):
    """A pre-norm ViT-style classifier on patch tokens; heads of `width // 4` dims."""
    inputs = keras.Input((tokens, features), name="patches")
    x = keras.layers.Dense(width, name="patch_embed")(inputs)
    for b in range(1, blocks + 1):
        h = keras.layers.LayerNormalization(name=f"norm{b}a")(x)
        h = keras.layers.MultiHeadAttention(heads, width // 4, name=f"attention{b}")(h, h)
        x = keras.layers.Add(name=f"residual{b}a")([x, h])
        h = keras.layers.LayerNormalization(name=f"norm{b}b")(x)
        h = keras.layers.Dense(ffn, activation="gelu", name=f"ffn{b}_up")(h)
        x = keras.layers.Add(name=f"residual{b}b")(
            [x, keras.layers.Dense(width, name=f"ffn{b}_down")(h)]
        )
    x = keras.layers.GlobalAveragePooling1D(name="pool")(
        keras.layers.LayerNormalization(name="norm")(x)
    )
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_vit")


def counting_bert(heads=4, ffn=64):
    """`tiny_transformer` with `heads` heads of 8 dims (width 32) and `ffn` units."""
    model = tiny_transformer(
        vocab=COUNTING["vocab"],
        length=COUNTING["length"],
        classes=COUNTING["classes"],
        heads=4,
        ffn=ffn,
        name="counting_bert",
    )
    if heads == 4:
        return model
    # tiny_transformer ties the head size to width // heads; the small net keeps heads of 8.
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "MultiHeadAttention":
            layer["config"]["num_heads"] = heads
    return keras.Model.from_config(config)


def counting_data(seed):
    x, y = make_counting_task(300, seed=100 + seed, **COUNTING)
    x_test, y_test = make_counting_task(1000, seed=200 + seed, **COUNTING)
    return (x, y), (x_test, y_test)


# LEAP's target is a density of the pruned layers' parameters, and its thresholds need
# enough steps to come down: (density, score learning rate) per task, chosen on seed 0 so
# that LEAP lands near half the FLOPs (digits: 45 steps an epoch, counting: 10).
LEAP_SETTINGS = {"digits_vit": (0.5, 2e-2), "counting_bert": (0.55, 0.1)}

TASKS = {
    "digits_vit": (digits_vit, lambda seed: digits_patches(), 128),
    "counting_bert": (counting_bert, counting_data, 64),
}


def compile_for(model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def widths(model):
    """Heads and feed-forward units left, summed over the blocks."""
    heads = sum(
        layer.num_heads
        for layer in model.layers
        if isinstance(layer, keras.layers.MultiHeadAttention)
    )
    units = sum(layer.units for layer in model.layers if layer.name.endswith("_up"))
    return heads, units


def evaluate(model, dense_flops, data):
    _, (x_test, y_test) = data
    heads, units = widths(model)
    return {
        "accuracy": tfprune.robust_accuracy(model, x_test, y_test, None),
        "flops_ratio": tfprune.count_flops(model) / dense_flops,
        "heads": heads,
        "ffn_units": units,
    }


def copy_of(model):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    return twin


def run_seed(task, seed, args):
    build, load, ffn = TASKS[task]
    data = load(seed)
    (x, y), _ = data
    fit = dict(batch_size=32, verbose=0)
    keras.utils.set_random_seed(seed)
    dense = build()
    compile_for(dense, args.learning_rate)
    dense.fit(x, y, epochs=args.dense_epochs, **fit)
    dense_flops = tfprune.count_flops(dense)
    results = {"dense": evaluate(dense, dense_flops, data)}

    steps = int(np.ceil(len(x) / 32))
    for variant, ranking, distilled in (
        ("pruned_global", "global", False),
        ("pruned_local", "local", False),
        ("pruned_local_distilled", "local", True),
    ):
        keras.utils.set_random_seed(seed)
        pruned = tfprune.prune(
            dense,
            schedule=fine_tune_schedule(TARGET, steps, args.prune_epochs),
            target="flops",
            ranking=ranking,
        )
        trainer = (
            tfprune.methods.Distillation(pruned, teacher=dense, temperature=4.0, alpha=0.5)
            if distilled
            else pruned
        )
        compile_for(trainer, args.learning_rate / 2)
        trainer.fit(
            x,
            y,
            epochs=args.prune_epochs,
            callbacks=[tfprune.PruningCallback(log_layers=False)],
            **fit,
        )
        results[variant] = evaluate(tfprune.shrink(pruned), dense_flops, data)

    keras.utils.set_random_seed(seed)
    small = build(heads=2, ffn=ffn // 2)
    compile_for(small, args.learning_rate)
    small.fit(x, y, epochs=args.dense_epochs + args.prune_epochs, **fit)
    results["small_scratch"] = evaluate(small, dense_flops, data)

    keras.utils.set_random_seed(seed)
    twin = copy_of(dense)
    layers = [
        layer.name
        for layer in twin.layers
        if isinstance(layer, keras.layers.MultiHeadAttention) or layer.name.endswith("_up")
    ]
    density, score_learning_rate = LEAP_SETTINGS[task]
    leap = tfprune.methods.LEAP(
        twin,
        target_density=density,
        granularity="row",
        layers=layers,
        score_learning_rate=score_learning_rate,
        initial_threshold=3.0,
    )
    compile_for(leap, args.learning_rate / 2)
    leap.fit(x, y, epochs=args.prune_epochs, **fit)
    results["leap"] = evaluate(tfprune.shrink(leap.pruned_model()), dense_flops, data)

    for variant, row in results.items():
        print(
            f"  {task} seed {seed} {variant:22s} "
            + "  ".join(f"{k} {v:.3f}" for k, v in row.items()),
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dense-epochs", type=int, default=30)
    parser.add_argument("--prune-epochs", type=int, default=15)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--json", default="out/bench_transformer_accuracy.json")
    args = parser.parse_args()
    report = {}
    for task in args.tasks:
        per_seed = [run_seed(task, seed, args) for seed in args.seeds]
        summary = over_seeds(per_seed, VARIANTS)
        report[task] = {"summary": summary, "per_seed": per_seed}
        print(f"\n{task}: variant        accuracy         FLOPs ratio  heads  ffn units")
        for variant, row in summary.items():
            accuracy = row["accuracy"]
            print(
                f"  {variant:22s}  {100 * accuracy['mean']:5.1f} ± {100 * accuracy['std']:4.1f} %"
                f"   {row['flops_ratio']['mean']:.3f}      {row['heads']['mean']:4.1f}"
                f"   {row['ffn_units']['mean']:6.1f}"
            )
    write_report(args.json, {**report, "settings": vars(args)})


if __name__ == "__main__":
    main()
