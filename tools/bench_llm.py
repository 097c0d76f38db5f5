"""A Llama-style decoder pruned during training against the same decoder trained half-size.

The model is KerasHub's `LlamaCausalLM` (no preprocessor: it takes `token_ids` and
`padding_mask` and returns next-token logits through the backbone's untied
`ReversibleEmbedding`) on a `LlamaBackbone` built from constructor arguments: vocabulary 64,
hidden 128, 2 layers, 4 query heads and 2 key-value heads of 32, gated feed-forward 512
units, sequences of 32 tokens.

The task (generated; the full model learns it to about 93 % in 200 steps on CPU): a
sequence opens with two rule symbols (tokens 0-7: 64 rules), then a random data token
(tokens 8-63, 56 of them), and every later token is the one the rule's table gives after
the previous one. Each rule's table is a fixed random cyclic permutation of the 56 data
tokens (one cycle through all of them), so no token comes back within the sequence and
nothing can be copied from earlier tokens: the model has to find the rule in the first two
tokens and learn 64 x 56 transitions. (`--task shift` puts arithmetic in place of the
tables, data token + rule + 1 modulo 56: in a trial with 4 rules in one symbol, all three
variants learnt that to 100 % within 200 steps, which leaves nothing to compare.) The
model reads tokens 0..31 and predicts tokens 1..32; the predictions of the second symbol
and of the random first data token are left out of the loss and of the accuracy, so a
perfect model scores 100 %. Training sequences are fresh for
every step (one epoch of `batch * steps` sequences, no repeats); accuracy is measured on
1000 held-out sequences.

Variants, per seed, all trained for the same `--steps` optimizer steps (Adam 2e-3, batch 32):

  dense          the full model (the reference: accuracy and latency);
  pruned         the full model pruned during `fit` to remove half of its FLOPs
                 (`tfprune.prune(target="flops", ranking="global")`, L1, a
                 `PolynomialDecay` from 0 at 20 % of the steps to 0.5 at 60 %, a mask
                 update every 5 % of the steps, `PruningCallback`), then stripped and
                 shrunk: heads (with their key-value groups) and feed-forward units go,
                 each block its own widths;
  half_scratch   the same architecture at half size, trained from scratch: every block
                 keeps 2 of its 4 query heads (head size 32 unchanged, as pruning leaves
                 it), 1 of its 2 key-value heads and 256 of its 512 feed-forward units;
                 hidden width (the residual stream), vocabulary, embeddings and output
                 layer unchanged. Llama ties the head size to hidden / heads, so this is
                 not a `LlamaBackbone` configuration: it is built as a freshly initialized
                 full model with the first half of each block's heads, key-value heads and
                 units kept (`tfprune.prune` with a criterion that ranks units by index,
                 `ranking="local"`, `round_to=1`, then `shrink`) - the same layers as the
                 pruned model, and Llama's initializers (normal, stddev 0.02) do not depend
                 on the widths, so its weights are an ordinary fresh initialization. Its
                 FLOPs are half of the blocks' (the output layer stays whole).

Reports next-token accuracy (mean and spread over seeds), FLOPs (tfprune's count and a hand
count from the widths: 2 FLOPs per multiply-add of the query, key, value and output
projections, the score and weighted-sum products over the full 32 x 32 matrix, the three
feed-forward matrices and the output layer), parameters, widths kept, and LiteRT latency:
dense, pruned and half-size models exported at the fixed length (`input_shapes`), checked
against Keras and timed together (`compare_latency`, interleaved rounds, 1 thread).

    python tools/bench_llm.py [--seeds 0 1 2] [--steps 400] [--rounds 5] [--runs 50]
        [--task permute] [--symbols 8] [--out out/bench_llm.json]
    python tools/bench_llm.py --small   # tiny model, few steps, one seed: a smoke run
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from bench_custom_layers import build_llama  # noqa: E402
from benchreport import over_seeds, write_report  # noqa: E402

import tfprune  # noqa: E402
from tfprune.core.modelwalk import all_layers  # noqa: E402
from tfprune.layers import registry  # noqa: E402

VARIANTS = ("dense", "pruned", "half_scratch")
TARGET = 0.5


def sizes_for(args):
    if args.small:
        base = {
            "task": "permute",
            "vocabulary": 24,
            "symbols": 4,
            "rule_tokens": 1,
            "length": 16,
            "hidden": 32,
            "layers": 2,
            "heads": 4,
            "kv_heads": 2,
            "intermediate": 64,
            "steps": 60,
            "batch": 16,
        }
    else:
        base = {
            "task": "permute",
            "vocabulary": 64,
            "symbols": 8,
            "rule_tokens": 2,
            "length": 32,
            "hidden": 128,
            "layers": 2,
            "heads": 4,
            "kv_heads": 2,
            "intermediate": 512,
            "steps": 400,
            "batch": 32,
        }
    for key in ("steps", "batch", "hidden", "layers", "intermediate", "task", "symbols"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    return base


# ----------------------------------------------------------------------------- the task


def rule_tables(s):
    """The next-token table of each rule: `table[r, d]` is the data token after data token
    `d` under rule `r` (indices into the data tokens). `permute`: a fixed random cyclic
    permutation per rule (one cycle through every data token, so no token comes back
    within a sequence shorter than the data tokens and nothing can be copied from earlier
    in the sequence: the model has to learn each rule's table); `shift`: d + r + 1 modulo
    the number of data tokens. Seed 1234, the same tables for every seed and split."""
    rules = s["symbols"] ** s["rule_tokens"]
    data = s["vocabulary"] - s["symbols"]
    if s["task"] == "shift":
        return (np.arange(data)[None, :] + np.arange(1, rules + 1)[:, None]) % data
    rng = np.random.default_rng(1234)
    tables = np.empty((rules, data), "int64")
    for r in range(rules):
        order = rng.permutation(data)
        tables[r, order] = np.roll(order, -1)
    return tables


def rule_task(n, s, seed):
    """`n` sequences of the rule task (module docstring): inputs `{token_ids,
    padding_mask}` of `length` tokens, next-token targets, and per-position weights (0 for
    the targets no rule predicts: the rule's later symbols and the random first data
    token)."""
    rng = np.random.default_rng(seed)
    symbols, count, length = s["symbols"], s["rule_tokens"], s["length"]
    table = rule_tables(s)
    spelled = rng.integers(0, symbols, (n, count))
    rule = (spelled * symbols ** np.arange(count)[::-1]).sum(axis=1)
    data = np.empty((n, length + 1 - count), "int64")
    data[:, 0] = rng.integers(0, table.shape[1], n)
    for t in range(1, data.shape[1]):
        data[:, t] = table[rule, data[:, t - 1]]
    seq = np.concatenate([spelled, symbols + data], axis=1).astype("int32")
    weights = np.ones((n, length), "float32")
    weights[:, :count] = 0.0
    x = {"token_ids": seq[:, :-1], "padding_mask": np.ones((n, length), "int32")}
    return x, seq[:, 1:], weights


def accuracy(model, x, y, s):
    """Next-token accuracy over the predictable positions."""
    logits = model.predict(x, batch_size=256, verbose=0)
    count = s["rule_tokens"]
    return float((np.argmax(logits, -1)[:, count:] == y[:, count:]).mean())


# ----------------------------------------------------------------------------- models


def build(s):
    import keras_hub

    return keras_hub.models.LlamaCausalLM(build_llama(s))


def first_units(weight, layer):
    """A criterion ranking every layer's units by index: the first ones score highest."""
    axis = registry.spec_for(layer).filter_axes[0] % weight.ndim
    n = weight.shape[axis]
    shape = [1] * weight.ndim
    shape[axis] = n
    scores = np.arange(n, 0, -1, dtype=np.float32).reshape(shape)
    return np.broadcast_to(scores, weight.shape).copy()


def half_size(s):
    """A freshly initialized model with the first half of every block's query heads,
    key-value heads and feed-forward units (see the module docstring)."""
    fresh = build(s)
    half = tfprune.prune(
        fresh,
        criterion=first_units,
        schedule=tfprune.OneShot(0.5),
        ranking="local",
        round_to=1,
    )
    tfprune.apply_target(half, 0.5)
    return tfprune.shrink(tfprune.strip(half))


def block_widths(model, s):
    """(query heads, key-value heads, feed-forward units) of each block of an unfolded or
    shrunk model (layers named as tfprune writes Llama's blocks out)."""
    layers = {layer.name: layer for layer in all_layers(model)}
    widths = []
    for i in range(s["layers"]):
        prefix = f"transformer_layer_{i}_"
        widths.append(
            (
                int(layers[prefix + "self_attention_query"].kernel.shape[1]),
                int(layers[prefix + "self_attention_key"].kernel.shape[1]),
                int(layers[prefix + "feedforward_intermediate_dense"].kernel.shape[1]),
            )
        )
    return widths


def hand_flops(widths, s):
    """FLOPs per sequence from the blocks' widths (see the module docstring)."""
    n, h = s["length"], s["hidden"]
    head = h // s["heads"]
    macs = n * h * s["vocabulary"]  # output layer (the reverse embedding)
    for heads, kv_heads, units in widths:
        macs += n * h * heads * head + 2 * n * h * kv_heads * head + n * heads * head * h
        macs += 2 * heads * n * n * head
        macs += 3 * n * h * units
    return 2 * macs


def params(model):
    """Parameters, each variable counted once by its path: `shrink` writes the
    `ReversibleEmbedding` that `LlamaCausalLM` calls twice (lookup and logits) out as two
    copies, which `count_params` would count twice."""
    sizes = {variable.path: int(np.prod(variable.shape)) for variable in model.weights}
    return sum(sizes.values())


def compiled(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


# ----------------------------------------------------------------------------- one seed


def run_seed(seed, s, args, workdir):
    x, y, w = rule_task(s["batch"] * s["steps"], s, seed=100 + seed)
    x_test, y_test, _ = rule_task(1000, s, seed=10_000 + seed)
    fit = dict(batch_size=s["batch"], epochs=1, shuffle=False, verbose=0, sample_weight=w)
    steps = s["steps"]
    models, seconds = {}, {}

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    dense = compiled(build(s), args.learning_rate)
    dense.fit(x, y, **fit)
    models["dense"], seconds["dense"] = dense, time.perf_counter() - start

    keras.utils.set_random_seed(seed)  # the same initialization as dense
    start = time.perf_counter()
    schedule = tfprune.PolynomialDecay(
        0.0,
        TARGET,
        begin_step=int(0.2 * steps),
        end_step=int(0.6 * steps),
        frequency=max(1, steps // 20),
    )
    pruned = tfprune.prune(build(s), schedule=schedule, target="flops", ranking="global")
    compiled(pruned, args.learning_rate)
    pruned.fit(x, y, callbacks=[tfprune.PruningCallback(log_layers=False)], **fit)
    masked = tfprune.strip(pruned)
    models["pruned"] = tfprune.shrink(masked)
    seconds["pruned"] = time.perf_counter() - start
    shrink_diff = float(
        np.abs(
            models["pruned"].predict(x_test, batch_size=256, verbose=0)
            - masked.predict(x_test, batch_size=256, verbose=0)
        ).max()
    )

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    half = compiled(half_size(s), args.learning_rate)
    half.fit(x, y, **fit)
    models["half_scratch"], seconds["half_scratch"] = half, time.perf_counter() - start

    shapes = {"token_ids": (s["length"],), "padding_mask": (s["length"],)}
    probe = {key: value[:4] for key, value in x_test.items()}
    paths = {
        name: tfprune.export_tflite(
            model, workdir / f"seed{seed}_{name}.tflite", input_shapes=shapes
        )
        for name, model in models.items()
    }
    latency = tfprune.compare_latency(
        list(paths.values()), args.rounds, args.runs, input_shapes=shapes
    )

    dense_flops = tfprune.count_flops(dense, warn=False)
    dense_widths = block_widths(tfprune.unfold(dense), s)
    dense_hand = hand_flops(dense_widths, s)
    results = {}
    for name, model in models.items():
        widths = dense_widths if name == "dense" else block_widths(model, s)
        results[name] = {
            "accuracy": accuracy(model, x_test, y_test, s),
            "flops_ratio": tfprune.count_flops(model, warn=False) / dense_flops,
            "flops_ratio_hand": hand_flops(widths, s) / dense_hand,
            "params": params(model),
            "query_heads": sum(q for q, _, _ in widths),
            "kv_heads": sum(kv for _, kv, _ in widths),
            "ffn_units": sum(u for _, _, u in widths),
            "latency_ms": latency[paths[name]] * 1e3,
            "latency_ratio": latency[paths[name]] / latency[paths["dense"]],
            "file_kb": paths[name].stat().st_size / 1024,
            "tflite_vs_keras": tfprune.verify_tflite(paths[name], model, probe),
            "train_seconds": seconds[name],
        }
        results[name]["widths_per_block"] = widths
    results["pruned"]["max_abs_diff_shrunk_vs_masked"] = shrink_diff
    results["dense"]["flops_tfprune"] = dense_flops
    results["dense"]["flops_hand"] = dense_hand
    for name, row in results.items():
        print(
            f"  seed {seed} {name:13s} accuracy {100 * row['accuracy']:5.1f} %  FLOPs "
            f"{row['flops_ratio']:.3f}x (hand {row['flops_ratio_hand']:.3f}x)  widths "
            f"{row['widths_per_block']}  LiteRT {row['latency_ms']:.3f} ms "
            f"({row['latency_ratio']:.3f}x)  |LiteRT-Keras| {row['tflite_vs_keras']:.1e}  "
            f"train {row['train_seconds']:.0f} s",
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--steps", type=int, default=None, help="training steps (400)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (32)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden width (128)")
    parser.add_argument("--layers", type=int, default=None, help="decoder blocks (2)")
    parser.add_argument("--intermediate", type=int, default=None, help="feed-forward (512)")
    parser.add_argument("--task", choices=["permute", "shift"], default=None, help="permute")
    parser.add_argument("--symbols", type=int, default=None, help="rule symbols (8)")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--runs", type=int, default=50, help="invokes per file per round")
    parser.add_argument("--small", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", default="out/bench_llm.json", help="JSON to write")
    args = parser.parse_args()
    if args.seeds is None:
        args.seeds = [0] if args.small else [0, 1, 2]
    s = sizes_for(args)
    tfprune.set_reference_size(s["length"])
    per_seed = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            print(f"seed {seed} ...", flush=True)
            per_seed.append(run_seed(seed, s, args, pathlib.Path(tmp)))
    keys = (
        "accuracy",
        "flops_ratio",
        "flops_ratio_hand",
        "params",
        "query_heads",
        "kv_heads",
        "ffn_units",
        "latency_ms",
        "latency_ratio",
        "file_kb",
        "tflite_vs_keras",
    )
    summary = over_seeds(per_seed, VARIANTS, keys)
    header = (
        f"\n{'variant':13s} {'accuracy %':>12s} {'FLOPs x':>8s} {'hand x':>7s} {'params':>8s} "
        f"{'q/kv heads':>10s} {'ffn':>6s} {'LiteRT ms':>10s} {'lat x':>6s} {'KB':>6s}"
    )
    print(header)
    print("-" * len(header))
    for name, row in summary.items():
        print(
            f"{name:13s} {100 * row['accuracy']['mean']:6.1f} "
            f"± {100 * row['accuracy']['std']:3.1f} "
            f"{row['flops_ratio']['mean']:8.3f} {row['flops_ratio_hand']['mean']:7.3f} "
            f"{row['params']['mean']:8.0f} "
            f"{row['query_heads']['mean']:4.1f}/{row['kv_heads']['mean']:<4.1f} "
            f"{row['ffn_units']['mean']:6.0f} {row['latency_ms']['mean']:10.3f} "
            f"{row['latency_ratio']['mean']:6.3f} {row['file_kb']['mean']:6.0f}"
        )
    dense = per_seed[0]["dense"]
    print(
        f"(FLOPs x: tfprune's count / dense; hand x: the hand count's; means over seeds "
        f"{args.seeds}; {s['steps']} steps each. Dense FLOPs per sequence: tfprune "
        f"{dense['flops_tfprune']:,}, hand {dense['flops_hand']:,})"
    )
    write_report(
        args.out,
        {"summary": summary, "per_seed": per_seed, "sizes": s, "settings": vars(args)},
    )


if __name__ == "__main__":
    main()
