"""Does removing filters pay in LiteRT? Latency ratio vs FLOPs ratio after `tfprune.shrink`.

For each model (the digits CNN, a plain VGG-style CNN at 64x64, MobileNetV2, ResNet50 and
ConvNeXtTiny at 96x96, all built with weights=None, a ViT-style encoder whose attention heads
prune, KerasHub's ResNet18-shaped and EfficientNet-B0-shaped classifiers, and KerasHub's BERT
and GPT-2 backbones at 128 tokens, whose blocks prune their feed-forward units)
and each FLOPs target (25 % and 50 % removed, global group ranking), prunes with the L1
criterion, shrinks, exports dense and shrunk models to LiteRT and times them side by side
(alternating, 1 thread). Latency does not depend on the weights' values, so no training is
needed. Also times `shrink` itself. Writes a JSON and a PNG (latency ratio against FLOPs
ratio; the diagonal is "speed-up equals FLOPs saved").

    python tools/bench_shrink.py [--models plain_cnn mobilenetv2 resnet50] [--rounds 5]
        [--round-to 8] [--fine conv3=8] [--ranking local]
    python tools/bench_shrink.py --plot out/a.json out/b.json --out docs/bench_shrink.png
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
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.core.files import write_atomically  # noqa: E402
from tfprune.core.modelwalk import all_layers, clone_layer  # noqa: E402
from tfprune.export.depthwise import split_layers  # noqa: E402
from tfprune.zoo import digits_cnn  # noqa: E402


def plain_cnn(width=1.0):
    """A VGG-style CNN at a phone-camera-like 64x64x3, where convolutions dominate latency;
    `width` multiplies every filter count (0.5: the half-width net of a quarter the FLOPs)."""
    inputs = keras.Input((64, 64, 3))
    x = inputs
    for index, filters in enumerate((32, 64, 128, 128)):
        x = keras.layers.Conv2D(
            int(round(filters * width)), 3, padding="same", use_bias=False, name=f"conv{index}"
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name="plain_cnn")


def vit_style(tokens=64, patch=48, width=128, heads=8, ffn=256, blocks=4):
    """A ViT-style encoder on 64 flattened 4x4x3 patches: attention heads and feed-forward
    units prune together (global ranking, FLOPs counted with the attention matmuls)."""
    inputs = keras.Input((tokens, patch))
    x = keras.layers.Dense(width, name="patch_embed")(inputs)
    for b in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln{b}a")(x)
        h = keras.layers.MultiHeadAttention(heads, width // heads, name=f"attention{b}")(h, h)
        x = keras.layers.Add()([x, h])
        h = keras.layers.LayerNormalization(name=f"ln{b}b")(x)
        h = keras.layers.Dense(ffn, activation="gelu", name=f"ffn{b}_up")(h)
        x = keras.layers.Add()([x, keras.layers.Dense(width, name=f"ffn{b}_down")(h)])
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name="vit_style")


def keras_hub_resnet():
    """KerasHub's ResNet18-shaped backbone and classifier head, built from constructor
    arguments (presets download weights), at a fixed 96x96 input."""
    import keras_hub

    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[2, 2, 2, 2],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(96, 96, 3),
    )
    return keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=10)


def keras_hub_efficientnet():
    """KerasHub's EfficientNetBackbone in the B0 configuration (the "v1" blocks of its B0-B7
    presets), built from constructor arguments at 96x96, and its classifier head."""
    import keras_hub

    backbone = keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3],
        stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
        stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
        stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
        stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6],
        stackwise_squeeze_and_excite_ratios=[0.25] * 7,
        stackwise_strides=[1, 2, 2, 2, 1, 2, 1],
        stackwise_block_types=["v1"] * 7,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        input_shape=(96, 96, 3),
    )
    return keras_hub.models.EfficientNetImageClassifier(backbone=backbone, num_classes=10)


def keras_hub_vit():
    """KerasHub's ViTImageClassifier on a ViTBackbone built from constructor arguments:
    64x64 images in 8x8 patches (65 tokens with the class token), 4 blocks of width 128,
    4 heads, MLP 512. Only the MLP units prune (one `mlp_dim` for every block)."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(64, 64, 3),
        patch_size=8,
        num_layers=4,
        num_heads=4,
        hidden_dim=128,
        mlp_dim=512,
    )
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=10)


def token_classifier(backbone, sequence_length=128):
    """A KerasHub text backbone at a fixed sequence length (its own inputs take any length,
    and LiteRT would then time one token), mean-pooled into a 2-class head."""
    inputs = {
        name: keras.Input((sequence_length,), dtype="int32", name=name) for name in backbone.input
    }
    features = backbone(inputs)
    if isinstance(features, dict):  # BERT also returns a pooled output
        features = features["sequence_output"]
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(features)
    return keras.Model(inputs, keras.layers.Dense(2, name="classifier")(pooled), name=backbone.name)


def keras_hub_text(kind):
    """KerasHub's BERT (encoder blocks) or GPT-2 (decoder blocks), 4 layers of width 256,
    4 heads, feed-forward 1024, built from constructor arguments: only the feed-forward units
    prune (the attention stays and counts as fixed FLOPs)."""
    import keras_hub

    backbone = getattr(keras_hub.models, {"bert": "BertBackbone", "gpt2": "GPT2Backbone"}[kind])
    sizes = {"num_layers": 4, "num_heads": 4, "hidden_dim": 256, "intermediate_dim": 1024}
    return token_classifier(
        backbone(vocabulary_size=1000, max_sequence_length=128, **sizes, name=kind)
    )


def keras_hub_bert_classifier():
    """KerasHub's `BertTextClassifier` (the BERT backbone of `keras_hub_text`, its pooled
    head) with a `BertTextClassifierPreprocessor` at 128 tokens, at that fixed length: the
    task prunes through its backbone and head; its preprocessor, left untouched, feeds the
    shrunk model (`measure` checks)."""
    import keras_hub

    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"]
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=128)
    sizes = {"num_layers": 4, "num_heads": 4, "hidden_dim": 256, "intermediate_dim": 1024}
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000, max_sequence_length=128, **sizes, name="bert"
    )
    task = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor, name="bert_text_classifier"
    )
    inputs = {name: keras.Input((128,), dtype="int32", name=name) for name in backbone.input}
    return keras.Model(inputs, task(inputs), name="bert_text_classifier_128")


def nested_task(model):
    """The KerasHub task nested in `model` (a layer with a `preprocessor`), or `None`."""
    return next((layer for layer in model.layers if getattr(layer, "preprocessor", None)), None)


def sample_inputs(model, n=2):
    """`n` random inputs for `model`: images uniform in [0, 1); token models get token ids
    below 50, one segment and a padding mask of ones."""
    rng = np.random.default_rng(0)
    if not isinstance(model.input, dict):
        return rng.random((n, *model.input_shape[1:]), dtype=np.float32)
    shape = (n, *next(iter(model.input.values())).shape[1:])
    fixed = {"padding_mask": np.ones(shape, "int32"), "segment_ids": np.zeros(shape, "int32")}
    return {
        name: fixed.get(name, rng.integers(0, 50, shape).astype("int32")) for name in model.input
    }


MODELS = {
    "digits_cnn": lambda: digits_cnn(),
    "plain_cnn": plain_cnn,
    "mobilenetv2": lambda: keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), weights=None, classes=10
    ),
    "resnet50": lambda: keras.applications.ResNet50(
        input_shape=(96, 96, 3), weights=None, classes=10
    ),
    # LayerNormalization over channels, depthwise convolutions as grouped Conv2D: shrinks
    # through ShrunkLayerNormalization.
    "convnext_tiny": lambda: keras.applications.ConvNeXtTiny(
        input_shape=(96, 96, 3), weights=None, classes=10
    ),
    "vit_style": vit_style,
    "keras_hub_resnet": keras_hub_resnet,
    "keras_hub_efficientnet": keras_hub_efficientnet,
    "keras_hub_vit": keras_hub_vit,
    "keras_hub_bert": lambda: keras_hub_text("bert"),
    "keras_hub_gpt2": lambda: keras_hub_text("gpt2"),
    "keras_hub_bert_classifier": keras_hub_bert_classifier,
}


def measure(name, target, rounds, runs, workdir, round_to, ranking, unfold=False):
    keras.utils.set_random_seed(0)
    model = folded = MODELS[name]()
    if unfold:  # KerasHub blocks as Keras layers: their heads prune too
        model = tfprune.unfold(folded)
    pruned = tfprune.prune(
        model, schedule=tfprune.OneShot(target), target="flops", ranking=ranking, round_to=round_to
    )
    tfprune.apply_target(pruned, target)
    plain = tfprune.strip(pruned)
    start = time.perf_counter()
    small = tfprune.shrink(plain)
    shrink_seconds = time.perf_counter() - start
    dense_heads = {
        layer.name: layer.num_heads
        for layer in all_layers(model)
        if isinstance(layer, keras.layers.MultiHeadAttention)
    }
    x = sample_inputs(model)
    diff = float(np.abs(np.asarray(small(x)) - np.asarray(plain(x))).max())
    dense_path = tfprune.export_tflite(model, workdir / f"{name}_dense.tflite")
    small_path = tfprune.export_tflite(small, workdir / f"{name}_{int(target * 100)}.tflite")
    verify = tfprune.verify_tflite(small_path, small, x)
    task = nested_task(model)
    if task is not None:  # the untouched preprocessor's output feeds the shrunk model
        fed = small({k: np.asarray(v) for k, v in task.preprocessor(["the quick fox"]).items()})
        assert tuple(np.asarray(fed).shape) == (1, task.num_classes), fed.shape
    paths = [dense_path, small_path]
    stock = with_stock_normalization(small)
    if stock is not None:
        paths.append(
            tfprune.export_tflite(stock, workdir / f"{name}_{int(target * 100)}_stock_norm.tflite")
        )
    # Models with depthwise kernels over 5x5 (ConvNeXt): also as one op per layer, what
    # export wrote before it cut them into tiles.
    whole = {}
    if split_layers(model):
        for key, source in (("dense", model), ("shrunk", small)):
            whole[key] = tfprune.export_tflite(
                source,
                workdir / f"{name}_{int(target * 100)}_{key}_whole.tflite",
                split_depthwise=False,
            )
    if unfold:  # the same dense model folded: what unfolding itself costs
        whole["folded"] = tfprune.export_tflite(folded, workdir / f"{name}_folded.tflite")
    latency = tfprune.compare_latency([*paths, *whole.values()], rounds, runs)
    flops_ratio = tfprune.count_flops(small) / tfprune.count_flops(model)
    latency_ratio = latency[small_path] / latency[dense_path]
    return {
        "model": name,
        "flops_target_removed": target,
        "round_to": round_to,
        "ranking": ranking,
        "flops_ratio": flops_ratio,
        "latency_ratio": latency_ratio,
        "latency_over_flops": latency_ratio / flops_ratio,
        "dense_latency_ms": latency[dense_path] * 1e3,
        "shrunk_latency_ms": latency[small_path] * 1e3,
        "params_ratio": small.count_params() / model.count_params(),
        "file_ratio": small_path.stat().st_size / dense_path.stat().st_size,
        "shrink_seconds": shrink_seconds,
        "max_abs_diff_shrunk_vs_masked": diff,
        "unfolded": unfold,
        "folded_dense_latency_ms": latency[whole["folded"]] * 1e3 if unfold else None,
        # Attention heads left per attention layer (of what each had).
        "heads": [
            f"{layer.num_heads}/{dense_heads[layer.name]}"
            for layer in all_layers(small)
            if isinstance(layer, keras.layers.MultiHeadAttention)
        ],
        "tflite_vs_keras": verify,
        # The same widths with stock normalization layers (another function, timing only):
        # what the Shrunk*Normalization layers cost over plain ones.
        "stock_norm_latency_ms": latency[paths[2]] * 1e3 if stock is not None else None,
        # Depthwise kernels over 5x5 exported whole (split_depthwise=False), same rounds.
        **(
            {
                "dense_whole_depthwise_ms": latency[whole["dense"]] * 1e3,
                "shrunk_whole_depthwise_ms": latency[whole["shrunk"]] * 1e3,
                "latency_ratio_whole_depthwise": latency[whole["shrunk"]] / latency[whole["dense"]],
            }
            if "dense" in whole
            else {}
        ),
    }


def with_stock_normalization(small):
    """`small` with each Shrunk*Normalization swapped for the stock layer of the same width,
    or None if it has none."""
    stock_of = {
        tfprune.layers.ShrunkLayerNormalization: keras.layers.LayerNormalization,
        tfprune.layers.ShrunkRMSNormalization: keras.layers.RMSNormalization,
    }
    found = []

    def swap(layer):
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=swap)
        if type(layer) in stock_of:
            found.append(layer)
            config = {k: v for k, v in layer.get_config().items() if k != "removed_values"}
            return stock_of[type(layer)].from_config(config)
        return clone_layer(layer)

    stock = keras.models.clone_model(small, clone_function=swap)
    return stock if found else None


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="latency ratio = FLOPs ratio")
    ax.plot([0, 1], [0, 1.1], ":", color="gray", lw=1, label="+10 %")
    for name, marker in zip(MODELS, "osD^v<>"):
        points = [(r["flops_ratio"], r["latency_ratio"]) for r in rows if r["model"] == name]
        if points:
            ax.scatter(*zip(*points), marker=marker, s=60, label=name)
    ax.set_xlabel("FLOPs, shrunk / dense")
    ax.set_ylabel("LiteRT latency, shrunk / dense (1 thread)")
    ax.set_xlim(0.3, 1.0)
    ax.set_ylim(0.3, 1.1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Filter removal: LiteRT latency vs FLOPs")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomically(path, buffer.getvalue())


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--targets", nargs="+", type=float, default=[0.25, 0.5], help="fractions of FLOPs to remove"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="invokes per timing round")
    parser.add_argument(
        "--round-to",
        type=lambda v: v if v == "auto" else int(v),
        default=1,
        help="keep filter counts a multiple of this, or auto (tfprune's default)",
    )
    parser.add_argument(
        "--fine",
        nargs="*",
        default=[],
        metavar="LAYER=N",
        help="per-layer multiples overriding --round-to, e.g. conv3=8",
    )
    parser.add_argument(
        "--ranking", default="global", choices=["global", "local"], help="group ranking"
    )
    parser.add_argument(
        "--unfold",
        action="store_true",
        help="tfprune.unfold the model first (KerasHub blocks' heads prune too)",
    )
    parser.add_argument("--out", default="out", help="directory for bench_shrink.json and .png")
    parser.add_argument(
        "--plot",
        nargs="+",
        metavar="JSON",
        help="only draw the rows of these earlier reports into one PNG (--out names the file)",
    )
    args = parser.parse_args()
    if args.plot:
        plot(
            [
                row
                for report in args.plot
                for row in json.loads(pathlib.Path(report).read_text())["rows"]
            ],
            pathlib.Path(args.out),
        )
        return
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for target in args.targets:
                print(
                    f"[{len(rows) + 1}/{len(args.models) * len(args.targets)}] {name}, "
                    f"{target:.0%} of FLOPs ...",
                    flush=True,
                )
                round_to = (
                    {
                        "*": args.round_to,
                        **{k: int(v) for k, v in (item.split("=") for item in args.fine)},
                    }
                    if args.fine
                    else args.round_to
                )
                row = measure(
                    name,
                    target,
                    args.rounds,
                    args.runs,
                    pathlib.Path(tmp),
                    round_to,
                    args.ranking,
                    args.unfold,
                )
                rows.append(row)
                print(
                    f"    FLOPs {row['flops_ratio']:.3f}x  latency {row['latency_ratio']:.3f}x "
                    f"({row['dense_latency_ms']:.2f} -> {row['shrunk_latency_ms']:.2f} ms)  "
                    f"latency/FLOPs {row['latency_over_flops']:.2f}  shrink "
                    f"{row['shrink_seconds']:.1f} s  diff "
                    f"{row['max_abs_diff_shrunk_vs_masked']:.1e}"
                    + (f"  heads {' '.join(row['heads'])}" if row["heads"] else "")
                    + (
                        f"  dense folded {row['folded_dense_latency_ms']:.2f} ms"
                        if row["folded_dense_latency_ms"]
                        else ""
                    )
                    + (
                        f"  stock-norm twin {row['stock_norm_latency_ms']:.2f} ms"
                        if row["stock_norm_latency_ms"]
                        else ""
                    )
                    + (
                        f"  depthwise whole: {row['dense_whole_depthwise_ms']:.2f} -> "
                        f"{row['shrunk_whole_depthwise_ms']:.2f} ms, latency "
                        f"{row['latency_ratio_whole_depthwise']:.3f}x"
                        if "dense_whole_depthwise_ms" in row
                        else ""
                    ),
                    flush=True,
                )
    stem = (
        f"bench_shrink_{args.ranking}_round{args.round_to}"
        + "".join(f"_{item}" for item in args.fine)
        + ("_unfolded" if args.unfold else "")
    )
    write_report(out / f"{stem}.json", {"rows": rows})
    plot(rows, out / f"{stem}.png")


if __name__ == "__main__":
    main()
