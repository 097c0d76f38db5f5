"""Functional subclasses (KerasHub backbones and tasks, a user's own) through the data path.

KerasHub models are built from constructor arguments: presets download weights at run time.
"""

import keras
import keras_hub
import numpy as np
import pytest
from helpers import keras_hub_text_backbone, tiny_efficientnet

import tfprune
from tfprune.graph import flops
from tfprune.inspection.explain import UNFOLD_HINT

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_functional_subclasses")


@keras.saving.register_keras_serializable(package="tfprune_tests")
class Tower(keras.Model):
    """A user's functional subclass: its graph is built in __init__, outputs are a dict."""

    def __init__(self, width=8, **kwargs):
        inputs = keras.Input((10, 10, 3), name="image")
        x = keras.layers.Conv2D(width, 3, activation="relu", name="conv1")(inputs)
        x = keras.layers.BatchNormalization(name="bn1")(x)
        x = keras.layers.Conv2D(width, 3, activation="relu", name="conv2")(x)
        features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        hidden = keras.layers.Dense(16, activation="relu", name="hidden")(features)
        outputs = {
            "logits": keras.layers.Dense(3, name="logits")(hidden),
            "embedding": keras.layers.Dense(4, name="embedding")(hidden),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name}


def assert_same_outputs(a, b, x, atol):
    out_a, out_b = a(x), b(x)
    if isinstance(out_a, dict):
        assert set(out_a) == set(out_b)
        for key in out_a:
            assert np.abs(np.asarray(out_a[key]) - np.asarray(out_b[key])).max() <= atol, key
    else:
        assert np.abs(np.asarray(out_a) - np.asarray(out_b)).max() <= atol


def through_the_data_path(model, x, y, tmp_path, **prune_args):
    """prune -> fit (two steps) -> strip -> shrink -> export -> verify; returns the models."""
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), **prune_args)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(pruned.output, dict):
        loss = {"logits": loss, "embedding": "mse"}
        y = {"logits": y, "embedding": np.zeros((len(y), 4), np.float32)}
    pruned.compile("adam", loss=loss)
    pruned.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    plain = tfprune.strip(pruned)
    assert_same_outputs(plain, pruned, x, 1e-5)
    small = tfprune.shrink(pruned)
    assert_same_outputs(small, pruned, x, 1e-5)
    path = tfprune.export_tflite(small, tmp_path / "model.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    return pruned, small


def test_a_users_functional_subclass_prunes_shrinks_exports_and_saves(tmp_path):
    model = Tower()
    x = np.random.default_rng(0).random((4, 10, 10, 3), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    pruned, small = through_the_data_path(model, x, np.array([0, 1, 2, 0]), tmp_path)
    # The returned models are plain functional models with the same names and structure.
    assert type(small).__name__ == "Functional"
    assert [layer.name for layer in small.layers] == [layer.name for layer in model.layers]
    assert set(small.output) == {"logits", "embedding"}
    assert small.get_layer("conv2").filters < 8 and small.get_layer("hidden").units < 16
    assert tfprune.count_flops(small) < tfprune.count_flops(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    for saved in (pruned, small):
        tfprune.save_model(saved, tmp_path / "m.keras")
        assert_same_outputs(keras.saving.load_model(tmp_path / "m.keras"), saved, x, 1e-6)
    assert tfprune.summary(model).total["flops"] == tfprune.count_flops(model)
    assert {row["layer"] for row in tfprune.explain(model)} >= {"conv1", "conv2", "hidden"}


def tiny_resnet():
    # KerasHub requires 64 filters in the first stack; two one-block stacks keep it small.
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
    )


def test_keras_hub_backbone_with_unknown_image_size(tmp_path):
    backbone = tiny_resnet()
    assert backbone.input.shape[1:3] == (None, None)
    x = np.random.default_rng(1).random((2, 24, 24, 3), dtype=np.float32)
    pruned = tfprune.prune(backbone, schedule=tfprune.OneShot(0.5), target="flops")
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    assert_same_outputs(small, pruned, x, 1e-5)
    # FLOPs count at the reference size (128 x 128); half of them are removed, within 2 %.
    ratio = tfprune.count_flops(small) / tfprune.count_flops(backbone)
    assert 0.48 <= ratio <= 0.52
    # The shrunk model still takes any image size.
    bigger = np.random.default_rng(2).random((1, 40, 32, 3), dtype=np.float32)
    assert_same_outputs(small, pruned, bigger, 1e-5)
    path = tfprune.export_tflite(small, tmp_path / "backbone.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


@pytest.fixture(scope="module")
def classifier():
    converter = keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255.0)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter)
    return keras_hub.models.ResNetImageClassifier(
        backbone=tiny_resnet(), num_classes=3, preprocessor=preprocessor
    )


def test_keras_hub_task_prunes_through_backbone_and_head_and_keeps_its_preprocessor(
    classifier, tmp_path
):
    images = np.random.default_rng(3).integers(0, 255, (4, 40, 40, 3)).astype(np.float32)
    x = np.asarray(classifier.preprocessor(images))
    predictions = classifier.predict(images, verbose=0)
    pruned, small = through_the_data_path(
        classifier, x, np.array([0, 1, 2, 0]), tmp_path, target="flops"
    )
    wrapped = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    assert "stack1_block0_1_conv" in wrapped  # inside the nested backbone
    assert tfprune.count_flops(small) <= 0.52 * tfprune.count_flops(classifier)
    # The task, its preprocessor included, is untouched and still predicts as before.
    np.testing.assert_array_equal(classifier.predict(images, verbose=0), predictions)
    assert np.asarray(small(classifier.preprocessor(images))).shape == (4, 3)


def test_a_keras_hub_efficientnet_classifier_goes_through_the_data_path(tmp_path):
    task = keras_hub.models.EfficientNetImageClassifier(
        backbone=tiny_efficientnet(["v1"] * 3), num_classes=3
    )
    x = np.random.default_rng(4).random((4, 16, 16, 3), dtype=np.float32)
    pruned, small = through_the_data_path(task, x, np.array([0, 1, 2, 0]), tmp_path)
    assert tfprune.count_flops(small) < tfprune.count_flops(task)


def test_efficientnet_v2_blocks_are_written_out_by_prune_and_named_without_it():
    backbone = tiny_efficientnet(["fused", "fused", "unfused"])
    pruned = tfprune.prune(backbone, schedule=tfprune.OneShot(0.5))
    wrapped = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    assert {"block2a__conv1", "block3a__depthwise", "block3a__se_conv1"} <= wrapped
    with pytest.raises(
        ValueError, match=r"inside custom layers .*FusedMBConvBlock.*MBConvBlock.*tfprune.unfold"
    ):
        tfprune.prune(backbone, schedule=tfprune.OneShot(0.5), trace=False)


def bert_backbone(**overrides):
    return keras_hub_text_backbone("bert", **overrides)


def bert_case():
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, 50, (4, 8)),
        "segment_ids": np.zeros((4, 8), np.int64),
        "padding_mask": np.ones((4, 8), bool),
    }
    y = {"sequence_output": np.zeros((4, 8, 16)), "pooled_output": np.zeros((4, 16))}
    return bert_backbone(), "transformer_layer_{}", x, y


def gpt2_case():
    backbone = keras_hub_text_backbone("gpt2")
    rng = np.random.default_rng(1)
    x = {"token_ids": rng.integers(0, 50, (4, 8)), "padding_mask": np.ones((4, 8), bool)}
    return backbone, "transformer_layer_{}", x, np.zeros((4, 8, 16))


# BERT's encoder blocks also go through the data path in the BertTextClassifier test.
@pytest.mark.parametrize(
    "case",
    [pytest.param(bert_case, marks=pytest.mark.slow), gpt2_case],
    ids=["bert", "gpt2"],
)
def test_keras_hub_transformer_blocks_prune_their_feedforward_units_folded(case, tmp_path):
    # With trace=False, prune leaves KerasHub's blocks whole: their feed-forward units
    # prune inside them (by default, prune writes them out and their heads prune too).
    backbone, block_name, x, y = case()
    names = [block_name.format(i) for i in (0, 1)]
    rows = {row["layer"]: row for row in tfprune.explain(backbone, trace=False)}
    assert rows[names[0]]["filters"] == 32 == rows[names[0]]["removable"]
    assert rows[names[0]]["reasons"] == [UNFOLD_HINT]  # its heads prune once unfolded
    pruned = tfprune.prune(backbone, schedule=tfprune.OneShot(0.5), trace=False)
    assert set(names) <= {w.layer.name for w in tfprune.wrappers_of(pruned)}
    pruned.compile("adam", loss="mse")
    pruned.fit(x, y, batch_size=2, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    assert_same_outputs(tfprune.strip(pruned), pruned, x, 1e-5)
    small = tfprune.shrink(pruned)
    assert_same_outputs(small, pruned, x, 1e-5)
    blocks = [small.get_layer(name) for name in names]
    assert [b.intermediate_dim for b in blocks] == [16, 16]
    assert [b.num_heads for b in blocks] == [2, 2]  # heads stay (see keras_hub_rules)
    # FLOPs count the attention as well; exactly the removed units' FLOPs go.
    block = backbone.get_layer(names[0])
    per_unit, fixed = flops.unit_flops(block), flops.fixed_flops(block)
    assert fixed > 0 and flops.layer_flops(block) == 32 * per_unit + fixed
    assert tfprune.count_flops(backbone) - tfprune.count_flops(small) == 2 * 16 * per_unit
    path = tfprune.export_tflite(small, tmp_path / "block.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    tfprune.save_model(pruned, tmp_path / "block.keras")
    assert_same_outputs(keras.saving.load_model(tmp_path / "block.keras"), pruned, x, 1e-6)


def test_a_text_backbone_nested_at_a_fixed_length_shrinks_to_the_same_function():
    # The backbone's own inputs take any length ((batch, None) token ids, no channels); the
    # user's model feeds it 8 tokens. Both the constant analysis and the rebuilt backbone
    # must keep the two apart.
    backbone = bert_backbone()
    inputs = {name: keras.Input((8,), dtype="int32", name=name) for name in backbone.input}
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs)["sequence_output"])
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.1), target="flops", ranking="global")
    tfprune.apply_target(pruned, 0.1)
    x = bert_case()[2]
    small = tfprune.shrink(pruned)
    assert_same_outputs(small, pruned, x, 1e-5)
    inner = small.get_layer(backbone.name)
    assert inner.input["token_ids"].shape == (None, None)
    assert inner.get_layer("transformer_layer_0_intermediate").units < 32


def test_a_bert_text_classifier_prunes_and_its_preprocessor_still_feeds_it(tmp_path):
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    task = keras_hub.models.BertTextClassifier(
        bert_backbone(), num_classes=2, preprocessor=preprocessor
    )
    sentences = ["the quick fox", "brown fox", "the fox", "quick brown the"]
    x = {k: np.asarray(v) for k, v in preprocessor(sentences).items()}
    predictions = task.predict(sentences, verbose=0)
    pruned, small = through_the_data_path(task, x, np.array([0, 1, 0, 1]), tmp_path)
    wrapped = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    # Inside the nested backbone, its blocks written out: heads and units prune.
    assert {"transformer_layer_0_attention", "transformer_layer_0_intermediate"} <= wrapped
    assert tfprune.count_flops(small) < tfprune.count_flops(task)
    # The task and its preprocessor are untouched; the preprocessor feeds the small model.
    np.testing.assert_array_equal(task.predict(sentences, verbose=0), predictions)
    assert np.asarray(small(preprocessor(sentences))).shape == (4, 2)


REFUSED = (
    "its feed-forward activation does not map 0 to 0 (a masked unit would not output zero), "
    "or it is a decoder with cross-attention (whose FLOPs tfprune does not count)"
)


def test_a_transformer_decoder_with_cross_attention_is_traced_or_refused_whole():
    decoder = keras_hub.layers.TransformerDecoder(intermediate_dim=8, num_heads=2)
    target, source = keras.Input((4, 8)), keras.Input((6, 8))
    model = keras.Model(
        [target, source], keras.layers.Dense(2, name="head")(decoder(target, source))
    )
    rows = {row["layer"]: row for row in tfprune.explain(model, trace=False)}
    assert rows[decoder.name]["reasons"] == [REFUSED]
    rows = {row["layer"]: row for row in tfprune.explain(model)}  # as prune sees it: traced
    assert rows[f"{decoder.name}_feedforward_intermediate_dense"]["removable"] == 8


def test_a_transformer_encoder_whose_activation_moves_zero_is_traced_or_refused_whole():
    layer = keras_hub.layers.TransformerEncoder(
        intermediate_dim=8, num_heads=2, activation="sigmoid"
    )
    inputs = keras.Input((4, 8))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(layer(inputs)))
    rows = {row["layer"]: row for row in tfprune.explain(model, trace=False)}
    assert rows[layer.name]["reasons"] == [REFUSED]
    # Written out, a masked unit outputs sigmoid(0) = 0.5, a constant the next layer folds.
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert rows[f"{layer.name}_intermediate"]["removable"] == 8


# 11 s, so in `make test-all`: ViT-style blocks prune in the fast suite as DeiT's
# (test_keras_hub_families.py).
@pytest.mark.slow
def test_a_keras_hub_vit_classifier_prunes_the_mlp_units_of_its_encoder(tmp_path):
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    task = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3)
    rows = {row["layer"]: row for row in tfprune.explain(task, trace=False)}
    assert rows["vit_encoder"]["filters"] == 32 == rows["vit_encoder"]["removable"]
    assert rows["vit_encoder"]["reasons"] == [UNFOLD_HINT]
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    pruned, small = through_the_data_path(task, x, np.array([0, 1, 2, 0]), tmp_path, trace=False)
    encoder = small.get_layer(backbone.name).get_layer("vit_encoder")
    assert (encoder.mlp_dim, encoder.num_heads) == (16, 2)
    # One unit is a column and a row of the MLP in both blocks; the attention is counted too.
    original = backbone.get_layer("vit_encoder")
    per_unit, fixed = flops.unit_flops(original), flops.fixed_flops(original)
    assert per_unit == 2 * (2 * 17 * 2 * 16) and fixed > 0
    assert tfprune.count_flops(task) - tfprune.count_flops(small) == 16 * per_unit
    # KerasHub's patch embedding reports entries its constructor refuses; both files load.
    for name, model in (("pruned", pruned), ("small", small)):
        tfprune.save_model(model, tmp_path / f"{name}.keras")
        assert_same_outputs(keras.saving.load_model(tmp_path / f"{name}.keras"), model, x, 1e-6)
