"""KerasHub models whose blocks are custom layers: FLOPs counted, pruned, shrunk, timed.

For KerasHub's Gemma, Llama, DeiT, MobileNet (MobileNetV3-small-shaped `MobileNetBackbone`),
DeBERTa-v3, Whisper and ALBERT, each built from constructor arguments (presets download
weights) at sizes where FLOPs dominate LiteRT's per-op overhead, with a mean-pooled 10-class
`Dense` head:

  text     hidden 256, 4 layers, 4 heads (Llama and Gemma: 4 query heads, 2 kv heads),
           feed-forward 512 units (Llama: intermediate_dim 512, gated; Gemma:
           intermediate_dim 1024, which Gemma halves into two 512-unit gates), 128 tokens,
           vocabulary 1000; ALBERT embeddings of 128, one shared block called 4 times;
           DeBERTa-v3 with max_sequence_length 128, bucket_size 64;
  images   96x96x3; DeiT in 16x16 patches (36 patches + class and distillation tokens);
           MobileNetBackbone in the MobileNetV3-small 1.0 configuration;
  audio    Whisper with 80 mel bins, 128 encoder frames (64 tokens after the stride-2
           convolution), 128 decoder tokens, 4 encoder and 4 decoder layers.

one run per model measures, side by side:

- FLOPs per example counted by `tfprune.count_flops` (with `tfprune.set_reference_size`
  at the sequence length, so unknown lengths count at 128) against a hand count from the
  model's configuration (`hand_*` below: 2 FLOPs per multiply-add of every Dense,
  EinsumDense and convolution kernel, and of attention's score (QK^T) and weighted-sum (AV)
  products over the full length x length matrix, DeBERTa's relative-position projections
  and products too; biases, normalizations, activations, softmax, rotary embeddings,
  residual adds, pooling and embedding lookups are not counted), and the layers
  `flops_report` leaves uncounted;
- one-shot pruning to remove 40 % of the FLOPs (`target="flops"`, `ranking="global"`,
  L1 criterion, tfprune's defaults otherwise), `strip`, `shrink`: the FLOPs, parameter and
  width (heads, kv heads, feed-forward units, convolution channels) ratios, and
  max |shrunk - masked| on the same inputs. Where tfprune says the target is out of reach
  (DeBERTa's heads stay whole, so only its feed-forward units prune), the largest reachable
  target is used and the row says so;
- dense and shrunk models exported to LiteRT at the fixed length (`input_shapes`):
  max |LiteRT - Keras| of both, their file sizes and operator counts, and their latency
  (`compare_latency`, interleaved rounds, 1 thread) with the ratio shrunk / dense; the
  dense model written out as the shrunk one is (`tfprune.unfold`) is timed in the same
  rounds, which separates what writing the blocks out costs from what pruning saves.

Random weights and inputs (latency does not depend on the values; the pruning decisions of
random weights are as good as any for timing).

    python tools/bench_custom_layers.py [--models llama gemma] [--rounds 5] [--runs 50]
        [--target 0.4] [--out out/bench_custom_layers.json]
    python tools/bench_custom_layers.py --small   # tiny sizes: a smoke run of the whole path
"""

import argparse
import os
import pathlib
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from benchreport import write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.core.modelwalk import all_layers  # noqa: E402
from tfprune.graph.flops import flops_report  # noqa: E402

CLASSES = 10


# ----------------------------------------------------------------------------- sizes


def sizes_for(small):
    """The benchmark's sizes, or tiny ones for a smoke run (`--small`)."""
    if small:
        return {
            "hidden": 32,
            "layers": 2,
            "heads": 4,
            "kv_heads": 2,
            "intermediate": 64,
            "length": 16,
            "vocabulary": 100,
            "albert_embedding": 16,
            "deberta_bucket": 8,
            "image": 32,
            "patch": 8,
            "mobilenet": MOBILENET_TINY,
            "mels": 8,
            "frames": 16,
        }
    return {
        "hidden": 256,
        "layers": 4,
        "heads": 4,
        "kv_heads": 2,
        "intermediate": 512,
        "length": 128,
        "vocabulary": 1000,
        "albert_embedding": 128,
        "deberta_bucket": 64,
        "image": 96,
        "patch": 16,
        "mobilenet": MOBILENET_V3_SMALL,
        "mels": 80,
        "frames": 128,
    }


# MobileNetV3-small 1.0 (timm's mobilenetv3_small_100, which KerasHub's presets follow):
# stem 16, a depthwise-separable block (16, SE), then 11 inverted-residual blocks, last
# 1x1 convolution 576. Kernel 3 pads 1, kernel 5 pads 2.
MOBILENET_V3_SMALL = {
    "stackwise_expansion": [[72, 88], [96, 240, 240], [120, 144], [288, 576, 576]],
    "stackwise_num_blocks": [2, 3, 2, 3],
    "stackwise_num_filters": [[24, 24], [40, 40, 40], [48, 48], [96, 96, 96]],
    "stackwise_kernel_size": [[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
    "stackwise_num_strides": [[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
    "stackwise_se_ratio": [[None, None], [0.25] * 3, [0.25] * 2, [0.25] * 3],
    "stackwise_activation": [
        ["relu"] * 2,
        ["hard_swish"] * 3,
        ["hard_swish"] * 2,
        ["hard_swish"] * 3,
    ],
    "stackwise_padding": [[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
    "output_num_filters": 1024,
    "depthwise_filters": 16,
    "depthwise_stride": 2,
    "depthwise_residual": False,
    "squeeze_and_excite": 0.25,
    "last_layer_filter": 576,
    "input_num_filters": 16,
}

# The narrowed MobileNetV3 of tests/keras_hub_zoo.py, for --small.
MOBILENET_TINY = {
    "stackwise_expansion": [[32, 48], [64, 96]],
    "stackwise_num_blocks": [2, 2],
    "stackwise_num_filters": [[16, 16], [24, 24]],
    "stackwise_kernel_size": [[3, 3], [5, 5]],
    "stackwise_num_strides": [[2, 1], [2, 1]],
    "stackwise_se_ratio": [[None, None], [0.25, 0.25]],
    "stackwise_activation": [["relu", "relu"], ["hard_swish", "hard_swish"]],
    "stackwise_padding": [[1, 1], [2, 2]],
    "output_num_filters": 64,
    "depthwise_filters": 8,
    "depthwise_stride": 2,
    "depthwise_residual": False,
    "squeeze_and_excite": 0.5,
    "last_layer_filter": 64,
    "input_num_filters": 16,
}


# ----------------------------------------------------------------------------- builders


def build_llama(s):
    import keras_hub

    return keras_hub.models.LlamaBackbone(
        vocabulary_size=s["vocabulary"],
        num_layers=s["layers"],
        num_query_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        hidden_dim=s["hidden"],
        intermediate_dim=s["intermediate"],
    )


def build_gemma(s):
    import keras_hub

    return keras_hub.models.GemmaBackbone(
        vocabulary_size=s["vocabulary"],
        num_layers=s["layers"],
        num_query_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        hidden_dim=s["hidden"],
        intermediate_dim=2 * s["intermediate"],  # Gemma's gates are intermediate_dim // 2
        head_dim=s["hidden"] // s["heads"],
    )


def build_deit(s):
    import keras_hub

    return keras_hub.models.DeiTBackbone(
        image_shape=(s["image"], s["image"], 3),
        patch_size=s["patch"],
        num_layers=s["layers"],
        num_heads=s["heads"],
        hidden_dim=s["hidden"],
        intermediate_dim=s["intermediate"],
    )


def build_mobilenet(s):
    import keras_hub

    return keras_hub.models.MobileNetBackbone(
        **s["mobilenet"], image_shape=(s["image"], s["image"], 3)
    )


def build_deberta(s):
    import keras_hub

    return keras_hub.models.DebertaV3Backbone(
        vocabulary_size=s["vocabulary"],
        num_layers=s["layers"],
        num_heads=s["heads"],
        hidden_dim=s["hidden"],
        intermediate_dim=s["intermediate"],
        max_sequence_length=2 * s["deberta_bucket"],
        bucket_size=s["deberta_bucket"],
    )


def build_whisper(s):
    import keras_hub

    return keras_hub.models.WhisperBackbone(
        vocabulary_size=s["vocabulary"],
        num_layers=s["layers"],
        num_heads=s["heads"],
        hidden_dim=s["hidden"],
        intermediate_dim=s["intermediate"],
        num_mels=s["mels"],
        max_encoder_sequence_length=s["frames"],
        max_decoder_sequence_length=s["length"],
    )


def build_albert(s):
    import keras_hub

    return keras_hub.models.AlbertBackbone(
        vocabulary_size=s["vocabulary"],
        num_layers=s["layers"],
        num_heads=s["heads"],
        embedding_dim=s["albert_embedding"],
        hidden_dim=s["hidden"],
        intermediate_dim=s["intermediate"],
        num_groups=1,
        num_inner_repetitions=1,
        max_sequence_length=s["length"],
    )


def classifier(backbone):
    """The backbone (its own inputs, lengths unknown) mean-pooled into a 10-class Dense head:
    one output to compare, export and time."""
    features = backbone(backbone.input)
    if isinstance(features, dict):
        features = features.get("sequence_output", features.get("decoder_sequence_output"))
    pool = (
        keras.layers.GlobalAveragePooling2D(name="pool")
        if len(features.shape) == 4
        else keras.layers.GlobalAveragePooling1D(name="pool")
    )
    return keras.Model(
        backbone.input,
        keras.layers.Dense(CLASSES, name="head")(pool(features)),
        name=f"{backbone.name}_classifier",
    )


# ----------------------------------------------------------------------------- inputs


def token_inputs(s, batch, segments=False):
    """Random token ids; a padding mask of ones, the last sequence's second half padded."""
    rng = np.random.default_rng(0)
    n = s["length"]
    mask = np.ones((batch, n), "int32")
    mask[-1, n // 2 :] = 0
    x = {
        "token_ids": rng.integers(1, s["vocabulary"], (batch, n)).astype("int32"),
        "padding_mask": mask,
    }
    if segments:
        x["segment_ids"] = np.zeros((batch, n), "int32")
    return x


def image_inputs(s, batch):
    return np.random.default_rng(0).random((batch, s["image"], s["image"], 3), dtype=np.float32)


def whisper_inputs(s, batch):
    x = token_inputs(s, batch)
    return {
        "encoder_features": np.random.default_rng(1)
        .random((batch, s["frames"], s["mels"]))
        .astype("float32"),
        "decoder_token_ids": x["token_ids"],
        "decoder_padding_mask": x["padding_mask"],
    }


def token_shapes(*names):
    return lambda s: {name: (s["length"],) for name in names}


def whisper_shapes(s):
    return {
        "encoder_features": (s["frames"], s["mels"]),
        "decoder_token_ids": (s["length"],),
        "decoder_padding_mask": (s["length"],),
    }


# ----------------------------------------------------------------------------- hand counts
# Each returns multiply-adds by part; `hand_count` doubles them into FLOPs.


def attention_macs(lq, lk, width, heads, kv_heads, head_dim):
    """Multiply-adds of one attention: query (lq tokens) and output projections, key and
    value projections (lk tokens, kv_heads heads), and the score and weighted-sum products
    (every query head against all lk keys, the full matrix even where a causal mask
    discards half of it)."""
    return {
        "projections": lq * width * heads * head_dim
        + 2 * lk * width * kv_heads * head_dim
        + lq * heads * head_dim * width,
        "attention_products": 2 * heads * lq * lk * head_dim,
    }


def add(parts, more, times=1):
    for key, value in more.items():
        parts[key] = parts.get(key, 0) + times * value
    return parts


def hand_llama(s, ffn_units=None):
    """Per layer: attention (4 query heads, 2 kv heads of hidden/4), a gated feed-forward
    network of three hidden x units matrices; the head."""
    n, h, units = s["length"], s["hidden"], ffn_units or s["intermediate"]
    parts = {}
    for _ in range(s["layers"]):
        add(parts, attention_macs(n, n, h, s["heads"], s["kv_heads"], h // s["heads"]))
        add(parts, {"ffn": 3 * n * h * units})
    return add(parts, {"head": h * CLASSES})


def hand_gemma(s):
    """As Llama: Gemma's intermediate_dim 2 * units makes two gates of `units` units."""
    return hand_llama(s, ffn_units=s["intermediate"])


def hand_deit(s):
    """Patch embedding (a patch x patch convolution, stride patch), then per layer
    attention over patches + 2 tokens and a two-matrix feed-forward network; the head."""
    h, grid = s["hidden"], s["image"] // s["patch"]
    tokens = grid * grid + 2
    parts = {"convolutions": grid * grid * s["patch"] ** 2 * 3 * h}
    for _ in range(s["layers"]):
        add(parts, attention_macs(tokens, tokens, h, s["heads"], s["heads"], h // s["heads"]))
        add(parts, {"ffn": 2 * tokens * h * s["intermediate"]})
    return add(parts, {"head": h * CLASSES})


def hand_deberta(s):
    """Per layer: content attention; the query and key projections of the 2 * bucket_size
    relative-position embeddings (per example); the content-to-position and
    position-to-content products (every token against 2 * bucket_size positions, all
    heads); a two-matrix feed-forward network; the head."""
    n, h, span = s["length"], s["hidden"], 2 * s["deberta_bucket"]
    parts = {}
    for _ in range(s["layers"]):
        add(parts, attention_macs(n, n, h, s["heads"], s["heads"], h // s["heads"]))
        add(parts, {"projections": 2 * span * h * h, "attention_products": 2 * n * span * h})
        add(parts, {"ffn": 2 * n * h * s["intermediate"]})
    return add(parts, {"head": h * CLASSES})


def hand_albert(s):
    """Embedding projection (embedding_dim -> hidden per token); the one shared block,
    called `layers` times (attention and a two-matrix feed-forward network each time);
    the pooler (hidden x hidden on the first token, unused by the head but in the graph);
    the head."""
    n, h = s["length"], s["hidden"]
    parts = {"projections": n * s["albert_embedding"] * h}
    for _ in range(s["layers"]):
        add(parts, attention_macs(n, n, h, s["heads"], s["heads"], h // s["heads"]))
        add(parts, {"ffn": 2 * n * h * s["intermediate"]})
    return add(parts, {"head": h * h + h * CLASSES})


def hand_whisper(s):
    """Encoder: a kernel-3 convolution mels -> hidden on every frame, a kernel-3 stride-2
    one hidden -> hidden (frames padded by 1 each side: (frames + 2 - 3) // 2 + 1 tokens),
    then per layer self-attention and a two-matrix feed-forward network. Decoder, per
    layer: self-attention, cross-attention (queries from the decoder tokens, keys and
    values projected from the encoder tokens in every layer) and the feed-forward
    network; the head."""
    h, n, heads = s["hidden"], s["length"], s["heads"]
    tokens = (s["frames"] + 2 - 3) // 2 + 1
    parts = {"convolutions": s["frames"] * 3 * s["mels"] * h + tokens * 3 * h * h}
    for _ in range(s["layers"]):
        add(parts, attention_macs(tokens, tokens, h, heads, heads, h // heads))
        add(parts, {"ffn": 2 * tokens * h * s["intermediate"]})
    for _ in range(s["layers"]):
        add(parts, attention_macs(n, n, h, heads, heads, h // heads))
        add(parts, attention_macs(n, tokens, h, heads, heads, h // heads))
        add(parts, {"ffn": 2 * n * h * s["intermediate"]})
    return add(parts, {"head": h * CLASSES})


def adjust_channels(x, divisor=8):
    """KerasHub MobileNet's channel rounding (mobilenet/util.py)."""
    new = max(divisor, int(x + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * x else new


def hand_mobilenet(s):
    """Every convolution's kernel at its output positions: the stem (3x3, stride 2, padded
    1); the depthwise-separable block (3x3 depthwise, padded 1, stride depthwise_stride; a
    squeeze-and-excite pair of 1x1 convolutions on the pooled 1x1 map; a 1x1 projection);
    each inverted-residual block (1x1 expansion, kxk depthwise padded as configured, the
    squeeze-and-excite pair on 1x1, 1x1 projection); the last 1x1 convolution; the head."""
    c = s["mobilenet"]
    side = s["image"]

    def out(side, kernel, stride, pad):
        return (side + 2 * pad - kernel) // stride + 1

    stem = adjust_channels(c["input_num_filters"])
    side = out(side, 3, 2, 1)
    macs = side * side * 9 * 3 * stem
    side = out(side, 3, c["depthwise_stride"], 1)
    macs += side * side * 9 * stem  # depthwise
    if c["squeeze_and_excite"]:
        squeeze = adjust_channels(stem * c["squeeze_and_excite"])
        macs += 2 * stem * squeeze
    channels = c["depthwise_filters"]
    macs += side * side * stem * channels
    for stage, blocks in enumerate(c["stackwise_num_blocks"]):
        for b in range(blocks):
            expanded = adjust_channels(c["stackwise_expansion"][stage][b])
            filters = adjust_channels(c["stackwise_num_filters"][stage][b])
            kernel = c["stackwise_kernel_size"][stage][b]
            macs += side * side * channels * expanded
            side = out(
                side, kernel, c["stackwise_num_strides"][stage][b], c["stackwise_padding"][stage][b]
            )
            macs += side * side * kernel * kernel * expanded
            ratio = c["stackwise_se_ratio"][stage][b]
            if ratio:
                macs += 2 * expanded * adjust_channels(expanded * ratio)
            macs += side * side * expanded * filters
            channels = filters
    last = adjust_channels(c["last_layer_filter"])
    macs += side * side * channels * last
    return {"convolutions": macs, "head": last * CLASSES}


def hand_count(name, s):
    parts = {key: 2 * value for key, value in FAMILIES[name]["hand"](s).items()}
    return sum(parts.values()), parts


FAMILIES = {
    "gemma": {
        "build": build_gemma,
        "inputs": lambda s, b: token_inputs(s, b),
        "shapes": token_shapes("token_ids", "padding_mask"),
        "hand": hand_gemma,
    },
    "llama": {
        "build": build_llama,
        "inputs": lambda s, b: token_inputs(s, b),
        "shapes": token_shapes("token_ids", "padding_mask"),
        "hand": hand_llama,
    },
    "deit": {
        "build": build_deit,
        "inputs": image_inputs,
        "shapes": lambda s: None,
        "hand": hand_deit,
    },
    "mobilenet": {
        "build": build_mobilenet,
        "inputs": image_inputs,
        "shapes": lambda s: None,
        "hand": hand_mobilenet,
    },
    "deberta": {
        "build": build_deberta,
        "inputs": lambda s, b: token_inputs(s, b),
        "shapes": token_shapes("token_ids", "padding_mask"),
        "hand": hand_deberta,
    },
    "whisper": {
        "build": build_whisper,
        "inputs": whisper_inputs,
        "shapes": whisper_shapes,
        "hand": hand_whisper,
    },
    "albert": {
        "build": build_albert,
        "inputs": lambda s, b: token_inputs(s, b, segments=True),
        "shapes": token_shapes("token_ids", "padding_mask", "segment_ids"),
        "hand": hand_albert,
    },
}


# ----------------------------------------------------------------------------- measuring


def widths(model):
    """Query heads, kv heads, feed-forward units and convolution channels, summed over the
    model's layers (KerasHub blocks written out by `tfprune.unfold` or shrunk: their
    sublayers are layers of the graph). Feed-forward units are counted on the first
    projection of each block (Llama's `intermediate_dense`, not its gate; Gemma's
    `ffw_gating`, not `_2`; DeiT's `mlp_dense`)."""
    counts = {"query_heads": 0, "kv_heads": 0, "ffn_units": 0, "conv_channels": 0}
    up = re.compile(r"(intermediate_dense|mlp_dense|ffw_gating|gating_ffw)$")
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.MultiHeadAttention):
            counts["query_heads"] += layer.num_heads
            counts["kv_heads"] += layer.num_heads
        elif isinstance(layer, keras.layers.EinsumDense) and layer.name.endswith(("query", "key")):
            # The heads are the output's second-last letter ("bqm,muh->bquh": u; Gemma's
            # "btd,ndh->btnh": n), wherever the kernel holds them.
            inputs, _, output = layer.equation.replace(" ", "").partition("->")
            kernel = inputs.partition(",")[2]
            heads = layer.kernel.shape[kernel.index(output[-2])]
            counts["query_heads" if layer.name.endswith("query") else "kv_heads"] += heads
        elif isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) and up.search(
            layer.name
        ):
            counts["ffn_units"] += layer.kernel.shape[-1]
        elif isinstance(layer, keras.layers.Conv2D):
            counts["conv_channels"] += layer.filters
    return {key: value for key, value in counts.items() if value}


def tflite_op_count(path):
    """Operators in a LiteRT file."""
    return len(tfprune.inspect_tflite(path)["operators"])


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def pruned_to(model, target):
    """`model` pruned one-shot to `target` of its FLOPs (global ranking), and the target
    used: where tfprune says the target is out of reach, the largest it says it can reach
    (less 0.5 %)."""
    try:
        pruned = tfprune.prune(
            model, schedule=tfprune.OneShot(target), target="flops", ranking="global"
        )
        note = None
    except ValueError as error:
        reachable = re.search(r"at most ([0-9.]+) can be removed", str(error))
        if reachable is None:
            raise
        note = f"target {target} out of reach: {str(error).split(': ', 1)[-1]}"
        target = max(0.0, float(reachable.group(1)) - 0.005)
        pruned = tfprune.prune(
            model, schedule=tfprune.OneShot(target), target="flops", ranking="global"
        )
    tfprune.apply_target(pruned, target)
    return pruned, target, note


def measure(name, s, args, workdir):
    family = FAMILIES[name]
    keras.utils.set_random_seed(0)
    model = classifier(family["build"](s))
    flops, uncounted = flops_report(model)
    hand, parts = hand_count(name, s)

    start = time.perf_counter()
    pruned, target, note = pruned_to(model, args.target)
    prune_seconds = time.perf_counter() - start
    masked = tfprune.strip(pruned)
    start = time.perf_counter()
    small = tfprune.shrink(masked)
    shrink_seconds = time.perf_counter() - start
    small_flops, small_uncounted = flops_report(small)
    masked_effective = tfprune.count_flops(pruned, effective=True, warn=False)

    x = family["inputs"](s, 2)
    diff = float(np.abs(outputs(small, x) - outputs(masked, x)).max())
    row = {
        "model": name,
        "flops_tfprune": flops,
        "flops_hand": hand,
        "flops_tfprune_over_hand": flops / hand,
        "flops_hand_parts": parts,
        "uncounted": uncounted,
        "target_removed": target,
        "target_note": note,
        "flops_ratio": small_flops / flops,
        "flops_shrunk": small_flops,
        "uncounted_shrunk": small_uncounted,
        # The masked model's effective FLOPs (nonzero weights, live heads) over the shrunk
        # model's: above 1, since the layers that read removed channels still hold their
        # rows until shrink takes them out.
        "flops_masked_effective_over_shrunk": masked_effective / small_flops,
        "params_ratio": small.count_params() / model.count_params(),
        "widths_dense": widths(tfprune.unfold(model)),
        "widths_shrunk": widths(small),
        "max_abs_diff_shrunk_vs_masked": diff,
        "prune_seconds": prune_seconds,
        "shrink_seconds": shrink_seconds,
    }
    try:
        row.update(exported(name, family, s, args, workdir, model, small, x))
    except ValueError as error:  # a model LiteRT cannot run, dense or not
        row["export_error"] = str(error)
    return row


def exported(name, family, s, args, workdir, model, small, x):
    """The dense, written-out and shrunk models in LiteRT at the fixed length: checked
    against Keras, timed together, sized."""
    shapes = family["shapes"](s)
    start = time.perf_counter()
    dense_path = tfprune.export_tflite(model, workdir / f"{name}_dense.tflite", input_shapes=shapes)
    small_path = tfprune.export_tflite(
        small, workdir / f"{name}_shrunk.tflite", input_shapes=shapes
    )
    export_seconds = time.perf_counter() - start
    # The dense model with its blocks written out as the shrunk model has them (what
    # unfolding alone costs in LiteRT), timed in the same rounds.
    unfolded = tfprune.unfold(model)
    unfolded_path = tfprune.export_tflite(
        unfolded, workdir / f"{name}_unfolded.tflite", input_shapes=shapes
    )
    latency = tfprune.compare_latency(
        [dense_path, unfolded_path, small_path], args.rounds, args.runs, input_shapes=shapes
    )
    return {
        "tflite_vs_keras_dense": tfprune.verify_tflite(dense_path, model, x),
        "tflite_vs_keras_shrunk": tfprune.verify_tflite(small_path, small, x),
        "dense_latency_ms": latency[dense_path] * 1e3,
        "shrunk_latency_ms": latency[small_path] * 1e3,
        "latency_ratio": latency[small_path] / latency[dense_path],
        "unfolded_dense_latency_ms": latency[unfolded_path] * 1e3,
        "latency_ratio_vs_unfolded": latency[small_path] / latency[unfolded_path],
        "tflite_ops": {
            key: tflite_op_count(path)
            for key, path in (
                ("dense", dense_path),
                ("unfolded", unfolded_path),
                ("shrunk", small_path),
            )
        },
        "dense_file_kb": dense_path.stat().st_size / 1024,
        "shrunk_file_kb": small_path.stat().st_size / 1024,
        "file_ratio": small_path.stat().st_size / dense_path.stat().st_size,
        "export_seconds": export_seconds,
    }


def print_table(rows):
    header = (
        f"{'model':10s} {'MFLOPs':>8s} {'hand':>8s} {'tfp/hand':>8s} {'removed':>7s} "
        f"{'FLOPs x':>7s} {'params x':>8s} {'|shr-msk|':>9s} {'|lite-K|':>8s} "
        f"{'dense ms':>8s} {'unfold ms':>9s} {'shrunk ms':>9s} {'lat x':>6s} "
        f"{'dense KB':>8s} {'shrunk KB':>9s} {'ops d/u/s':>11s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        if "export_error" in r:
            print(
                f"{r['model']:10s} {r['flops_tfprune'] / 1e6:8.2f} {r['flops_hand'] / 1e6:8.2f} "
                f"{r['flops_tfprune_over_hand']:8.4f} {r['target_removed']:7.3f} "
                f"{r['flops_ratio']:7.3f} {r['params_ratio']:8.3f} "
                f"{r['max_abs_diff_shrunk_vs_masked']:9.1e}  (no LiteRT file, see below)"
            )
            continue
        ops = r["tflite_ops"]
        print(
            f"{r['model']:10s} {r['flops_tfprune'] / 1e6:8.2f} {r['flops_hand'] / 1e6:8.2f} "
            f"{r['flops_tfprune_over_hand']:8.4f} {r['target_removed']:7.3f} "
            f"{r['flops_ratio']:7.3f} {r['params_ratio']:8.3f} "
            f"{r['max_abs_diff_shrunk_vs_masked']:9.1e} {r['tflite_vs_keras_shrunk']:8.1e} "
            f"{r['dense_latency_ms']:8.2f} {r['unfolded_dense_latency_ms']:9.2f} "
            f"{r['shrunk_latency_ms']:9.2f} {r['latency_ratio']:6.3f} "
            f"{r['dense_file_kb']:8.0f} {r['shrunk_file_kb']:9.0f} "
            f"{ops['dense']:>3d}/{ops['unfolded']:>3d}/{ops['shrunk']:>3d}"
        )
    print(
        "(FLOPs x, params x, lat x: shrunk / dense; |shr-msk|: max |shrunk - masked| outputs; "
        "|lite-K|: max |LiteRT - Keras| of the shrunk model; unfold ms: the dense model "
        "written out as the shrunk one is; ops: LiteRT operators dense/unfolded/shrunk)"
    )
    for r in rows:
        kept = ", ".join(
            f"{key} {r['widths_shrunk'].get(key, 0)}/{value}"
            for key, value in r["widths_dense"].items()
        )
        print(f"  {r['model']}: kept {kept}")
        if r["uncounted"]:
            print(f"    uncounted by tfprune: {r['uncounted']}")
        if r["target_note"]:
            print(f"    {r['target_note']}")
        if "export_error" in r:
            print(f"    {r['export_error']}")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="invokes per file per round")
    parser.add_argument("--target", type=float, default=0.4, help="fraction of FLOPs to remove")
    parser.add_argument("--small", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", default="out/bench_custom_layers.json", help="JSON to write")
    args = parser.parse_args()
    s = sizes_for(args.small)
    tfprune.set_reference_size(s["length"])  # unknown lengths count at the length timed
    if s["frames"] != s["length"]:
        raise SystemExit("Whisper's frames and decoder length both count at the reference size")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, name in enumerate(args.models, 1):
            print(f"[{index}/{len(args.models)}] {name} ...", flush=True)
            row = measure(name, s, args, pathlib.Path(tmp))
            rows.append(row)
            latency = (
                f"latency {row['dense_latency_ms']:.2f} -> {row['shrunk_latency_ms']:.2f} ms "
                f"({row['latency_ratio']:.3f}x)"
                if "export_error" not in row
                else "no LiteRT file"
            )
            print(
                f"    FLOPs {row['flops_tfprune']:,} (hand {row['flops_hand']:,}, "
                f"{row['flops_tfprune_over_hand']:.4f}x)  shrunk {row['flops_ratio']:.3f}x  "
                f"{latency}  prune {row['prune_seconds']:.1f} s  shrink "
                f"{row['shrink_seconds']:.1f} s",
                flush=True,
            )
    print_table(rows)
    write_report(
        args.out,
        {
            "rows": rows,
            "sizes": {k: v for k, v in s.items() if k != "mobilenet"},
            "mobilenet_config": s["mobilenet"],
            "settings": vars(args),
        },
    )


if __name__ == "__main__":
    main()
