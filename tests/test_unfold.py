"""`tfprune.unfold`: KerasHub transformer blocks written out as Keras layers compute the same
function, and then prune their attention heads and each block's feed-forward units.

KerasHub models are built from constructor arguments: presets download weights at run time.
"""

import keras
import keras_hub
import numpy as np
import pytest
from helpers import keras_hub_text_backbone, tiny_efficientnet

import tfprune
from tfprune.masking.unfold import unfolded_layers


def text_inputs(segments=True, n=4, length=8, vocabulary=50):
    """Token ids with padding: the sequences hold 8, 6, 3 and 1 tokens."""
    rng = np.random.default_rng(0)
    lengths = np.array([8, 6, 3, 1])[:n, None]
    x = {
        "token_ids": rng.integers(0, vocabulary, (n, length)).astype("int32"),
        "padding_mask": (np.arange(length)[None] < lengths).astype("int32"),
    }
    if segments:
        x["segment_ids"] = np.zeros((n, length), "int32")
    return x


def bert():
    return keras_hub_text_backbone("bert", num_heads=4, hidden_dim=32, intermediate_dim=64)


def gpt2():
    return keras_hub_text_backbone("gpt2", num_heads=4, hidden_dim=32, intermediate_dim=64)


def vit():
    return keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=4,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        mlp_dim=64,
    )


def outputs(model, x):
    out = model(x)
    return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else np.asarray(out)


def max_diff(a, b, x):
    out_a, out_b = outputs(a, x), outputs(b, x)
    if isinstance(out_a, dict):
        assert set(out_a) == set(out_b)
        return max(float(np.abs(out_a[k] - out_b[k]).max()) for k in out_a)
    return float(np.abs(out_a - out_b).max())


CASES = {
    "bert": (bert, lambda: text_inputs()),
    "gpt2": (gpt2, lambda: text_inputs(segments=False)),
    "vit": (vit, lambda: np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_unfolded_backbones_compute_the_same_function_with_attention_layers(name):
    build, inputs = CASES[name]
    keras.utils.set_random_seed(0)
    model, x = build(), inputs()
    before = outputs(model, x)
    unfolded = tfprune.unfold(model)
    # The blocks and the position embedding (a weight of its own, traced), or ViT's
    # encoder and its patching layer.
    assert len(unfolded_layers(model)) == (2 if name == "vit" else 3)
    attention = [
        layer for layer in unfolded.layers if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    assert len(attention) == 2 and all(
        type(a) is keras.layers.MultiHeadAttention for a in attention
    )
    # Padded positions included: the padding mask reaches every attention layer.
    assert max_diff(unfolded, model, x) <= 1e-6
    assert tfprune.count_flops(unfolded) == pytest.approx(tfprune.count_flops(model), rel=1e-3)
    assert unfolded_layers(unfolded) == []
    after = outputs(model, x)  # the original is untouched
    pairs = zip(keras.tree.flatten(before), keras.tree.flatten(after))
    assert all(np.array_equal(a, b) for a, b in pairs)


def test_heads_and_units_of_every_block_prune_shrink_export_and_save(tmp_path):
    keras.utils.set_random_seed(0)
    model, x = bert(), text_inputs()
    unfolded = tfprune.unfold(model)
    pruned = tfprune.prune(
        unfolded, schedule=tfprune.OneShot(0.5), target="flops", ranking="global"
    )
    wrapped = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    for block in ("transformer_layer_0", "transformer_layer_1"):
        assert {f"{block}_attention", f"{block}_intermediate"} <= wrapped
    tfprune.apply_target(pruned, 0.5)
    masked = tfprune.strip(pruned)
    small = tfprune.shrink(masked)
    assert max_diff(small, masked, x) <= 1e-5
    removed = 1 - tfprune.count_flops(small) / tfprune.count_flops(unfolded)
    assert removed == pytest.approx(0.5, abs=0.02)
    heads = [small.get_layer(f"transformer_layer_{i}_attention").num_heads for i in (0, 1)]
    assert min(heads) < 4  # heads went
    path = tfprune.export_tflite(small, tmp_path / "bert.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    # int8 too: the token ids and the padding mask stay integers through SelfAttentionMask.
    calibration = [np.repeat(x[t.name], 16, axis=0) for t in small.inputs]
    quantized = tfprune.export_tflite(
        small, tmp_path / "bert_int8.tflite", quantize="int8", representative_data=calibration
    )
    scale = max(float(np.abs(v).max()) for v in outputs(small, x).values())
    assert tfprune.verify_tflite(quantized, small, x) <= 0.1 * scale
    small.save(tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    assert max_diff(loaded, small, x) == 0


def test_a_gpt2_backbone_prunes_through_fit_causal_mask_and_all():
    keras.utils.set_random_seed(0)
    model, x = gpt2(), text_inputs(segments=False)
    pruned = tfprune.prune(
        tfprune.unfold(model), schedule=tfprune.OneShot(0.4), target="flops", ranking="global"
    )
    target = np.zeros((4, 8, 32), np.float32)
    pruned.compile("adam", "mse")
    pruned.fit(x, target, batch_size=2, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(pruned)
    assert max_diff(small, tfprune.strip(pruned), x) <= 1e-5
    assert any(
        small.get_layer(f"transformer_layer_{i}_attention").num_heads < 4
        or small.get_layer(f"transformer_layer_{i}_intermediate").units < 64
        for i in (0, 1)
    )


def test_vit_blocks_prune_their_heads_and_each_its_own_mlp_width(tmp_path):
    keras.utils.set_random_seed(0)
    model, x = vit(), CASES["vit"][1]()
    unfolded = tfprune.unfold(model)
    pruned = tfprune.prune(
        unfolded, schedule=tfprune.OneShot(0.5), target="flops", ranking="global", round_to=1
    )
    # Lower the second block's MLP scores so that the blocks end at different widths.
    (second,) = [w for w in tfprune.wrappers_of(pruned) if w.layer.name.endswith("block_2_mlp_in")]
    second.layer.kernel.assign(second.layer.kernel * 1e-3)
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    widths = [small.get_layer(f"vit_encoder_transformer_block_{i}_mlp_in").units for i in (1, 2)]
    assert widths[1] < widths[0]
    assert max_diff(small, tfprune.strip(pruned), x) <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "vit.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_a_text_classifier_task_unfolds_inside_and_its_preprocessor_feeds_it():
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    keras.utils.set_random_seed(0)
    task = keras_hub.models.BertTextClassifier(bert(), num_classes=2, preprocessor=preprocessor)
    sentences = ["the quick fox", "brown fox", "the fox", "quick brown the"]
    x = {k: np.asarray(v) for k, v in preprocessor(sentences).items()}
    unfolded = tfprune.unfold(task)
    assert max_diff(unfolded, task, x) <= 1e-6
    pruned = tfprune.prune(unfolded, schedule=tfprune.OneShot(0.3), target="flops")
    tfprune.apply_target(pruned, 0.3)
    small = tfprune.shrink(pruned)
    assert max_diff(small, tfprune.strip(pruned), x) <= 1e-5


def test_blocks_their_unfoldings_refuse_are_traced_instead():
    # A cross-attention decoder, a causal decoder without a padding mask and an encoder
    # given an explicit attention mask: the hand-written forms cannot reproduce them, the
    # trace of their `call` does.
    keras.utils.set_random_seed(0)
    decoder = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2)
    target, source = keras.Input((4, 8)), keras.Input((6, 8))
    crossing = keras.Model([target, source], decoder(target, source))
    causal = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2, name="dec")
    sequence = keras.Input((4, 8))
    encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2, name="enc")
    mask = keras.Input((4, 4), dtype="int32")
    rng = np.random.default_rng(0)
    x, y = rng.random((2, 4, 8), dtype=np.float32), rng.random((2, 6, 8), dtype=np.float32)
    lower = np.tril(np.ones((2, 4, 4), "int32"))
    for model, inputs in (
        (crossing, [x, y]),
        (keras.Model(sequence, causal(sequence)), x),
        (keras.Model([sequence, mask], encoder(sequence, attention_mask=mask)), [x, lower]),
    ):
        unfolded = tfprune.unfold(model)
        assert unfolded is not model and unfolded_layers(unfolded) == []
        assert float(np.abs(unfolded(inputs) - model(inputs)).max()) <= 1e-6
    with pytest.raises(TypeError, match="unfold"):
        tfprune.unfold("model.keras")


def test_explain_says_a_folded_block_s_heads_prune_once_unfolded():
    model = bert()
    rows = {row["layer"]: row for row in tfprune.explain(model, trace=False)}
    assert "tfprune.unfold" in rows["transformer_layer_0"]["reasons"][0]
    rows = {row["layer"]: row for row in tfprune.explain(tfprune.unfold(model))}
    attention = rows["transformer_layer_0_attention"]
    assert attention["filters"] == attention["removable"] == 4 and attention["reasons"] == []


def test_efficientnet_v2_blocks_unfold_prune_shrink_and_export(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = tiny_efficientnet(["fused", "fused", "unfused"])
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    unfolded = tfprune.unfold(backbone)
    assert len(unfolded_layers(backbone)) == 3
    assert max_diff(unfolded, backbone, x) <= 1e-6
    pruned = tfprune.prune(unfolded, schedule=tfprune.OneShot(0.5), target="flops")
    wrapped = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    assert any("depthwise" in name for name in wrapped) and any(
        "se_conv" in name for name in wrapped
    )
    tfprune.apply_target(pruned, 0.5)
    masked = tfprune.strip(pruned)
    small = tfprune.shrink(masked)
    assert max_diff(small, masked, x) <= 1e-5
    assert tfprune.count_flops(small) < 0.6 * tfprune.count_flops(unfolded)
    path = tfprune.export_tflite(small, tmp_path / "effnetv2.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_leap_learns_head_masks_of_unfolded_keras_hub_blocks():
    keras.utils.set_random_seed(0)
    unfolded = tfprune.unfold(bert())
    inputs = {name: keras.Input((8,), dtype="int32", name=name) for name in unfolded.input}
    pooled = keras.layers.GlobalAveragePooling1D()(unfolded(inputs)["sequence_output"])
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled))
    leap = tfprune.methods.LEAP(
        model,
        target_density=0.5,
        granularity="head",
        initial_threshold=0.0,
        score_learning_rate=0.1,
    )
    assert {"transformer_layer_0_attention", "transformer_layer_1_attention"} <= set(
        leap.layer_names
    )
    x = text_inputs(n=4)
    x = {k: np.repeat(v, 8, axis=0) for k, v in x.items()}
    y = np.arange(32) % 2
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    leap.compile(keras.optimizers.Adam(1e-3), loss)
    leap.fit(x, y, epochs=3, batch_size=8, verbose=0)
    masked = leap.pruned_model()
    small = tfprune.shrink(masked)
    heads = [
        layer.num_heads
        for layer in tfprune.core.modelwalk.all_layers(small)
        if isinstance(layer, keras.layers.MultiHeadAttention)
    ]
    assert len(heads) == 2 and min(heads) < 4
    assert max_diff(small, masked, x) <= 1e-5


def test_local_ranking_meets_a_flops_target_through_attention_layers():
    # Every attention layer loses heads at the same fractions (4 heads: 25 % steps), which
    # jumped over 0.4 of the FLOPs (0.312): single layers now take a step more or less.
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(
        tfprune.unfold(gpt2()), schedule=tfprune.OneShot(0.4), target="flops", ranking="local"
    )
    assert tfprune.apply_target(pruned, 0.4).removed() == pytest.approx(0.4, abs=0.02)
