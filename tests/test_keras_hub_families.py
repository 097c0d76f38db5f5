"""KerasHub families whose blocks are custom layers, through the whole data path: prune
(their blocks traced) -> fit -> strip -> shrink -> LiteRT at a fixed length -> verify.

Models are built from constructor arguments: presets download weights at run time."""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from keras_hub_zoo import FAMILIES

# Sequence lengths and image sides fixed for the LiteRT file.
LENGTH = 8
# DeBERTa's heads stay (its relative positions are broadcast to the head count inside the
# block): only its feed-forward units prune, a small share of a model this small.
TARGETS = {"deberta": 0.05}


def classifier(backbone, classes=3):
    """The backbone with a pooled linear head, so that `fit` has a loss."""
    features = backbone(backbone.input)
    if isinstance(features, dict):
        features = features.get("sequence_output", features.get("decoder_sequence_output"))
    if len(features.shape) == 4:  # images
        features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    else:
        features = keras.layers.GlobalAveragePooling1D(name="pool")(features)
    return keras.Model(backbone.input, keras.layers.Dense(classes, name="head")(features))


def fixed_shapes(x):
    """The sizes of the examples `x`, for the LiteRT file."""
    return (
        {name: array.shape[1:] for name, array in x.items()} if isinstance(x, dict) else x.shape[1:]
    )


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# In `make test-all` only, to keep `make test` under 8 minutes: Llama's whole path runs in the
# causal-LM test below, and Whisper's traced blocks are counted in tests/graph/test_flops.py.
SLOW = {"llama", "whisper"}


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in sorted(FAMILIES)],
)
def test_a_keras_hub_family_prunes_inside_its_blocks_shrinks_and_exports(family, tmp_path):
    build, inputs = FAMILIES[family]
    keras.utils.set_random_seed(0)
    model = classifier(build())
    x, y = inputs(4, LENGTH), np.array([0, 1, 2, 0])
    target = TARGETS.get(family, 0.3)
    schedule = tfprune.PolynomialDecay(0.0, target, begin_step=0, end_step=2, frequency=1)
    pruned = tfprune.prune(model, schedule=schedule, target="flops", ranking="global")
    inside = [w.layer.name for w in tfprune.wrappers_of(pruned) if w.layer.name not in ("head",)]
    assert inside, "nothing inside the blocks prunes"
    pruned.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(pruned)
    assert np.abs(outputs(small, x) - outputs(tfprune.strip(pruned), x)).max() <= 1e-5
    assert small.count_params() < model.count_params()
    assert tfprune.count_flops(small) < (1 - 0.5 * target) * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite", input_shapes=fixed_shapes(x))
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def word_tokenizer(sentences, vocabulary_size=16):
    """A SentencePiece word model trained here on `sentences` (presets download theirs)."""
    import io

    import sentencepiece

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=proto,
        vocab_size=vocabulary_size,
        model_type="word",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    return keras_hub.models.LlamaTokenizer(proto=proto.getvalue())


def test_a_llama_causal_lm_with_its_preprocessor_prunes_in_fit_and_exports_float_and_int8(
    tmp_path,
):
    keras.utils.set_random_seed(0)
    sentences = ["the quick brown fox jumps over the lazy dog", "a cat sat on the mat"] * 20
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        word_tokenizer(sentences), sequence_length=LENGTH
    )
    task = keras_hub.models.LlamaCausalLM(
        backbone=keras_hub.models.LlamaBackbone(
            vocabulary_size=preprocessor.tokenizer.vocabulary_size(),
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=32,
            intermediate_dim=64,
        ),
        preprocessor=preprocessor,
    )
    x, y, weights = (
        keras.tree.map_structure(np.asarray, part) for part in preprocessor(sentences[:8])
    )
    schedule = tfprune.PolynomialDecay(0.0, 0.3, begin_step=0, end_step=3, frequency=1)
    pruned = tfprune.prune(task, schedule=schedule, target="flops", ranking="global")
    names = {w.layer.name for w in tfprune.wrappers_of(pruned)}
    assert {
        "transformer_layer_0_self_attention_key",
        "transformer_layer_0_feedforward_gate_dense",
    } <= names
    pruned.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, sample_weight=weights, batch_size=4, epochs=2, verbose=0,
               callbacks=[tfprune.PruningCallback()])  # fmt: skip
    small = tfprune.shrink(pruned)
    assert np.abs(outputs(small, x) - outputs(tfprune.strip(pruned), x)).max() <= 1e-5
    assert tfprune.count_flops(small) <= 0.75 * tfprune.count_flops(task)
    shapes = fixed_shapes(x)
    path = tfprune.export_tflite(small, tmp_path / "llama.tflite", input_shapes=shapes)
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    # int8: TensorFlow's full-integer quantization of a random tiny Llama is coarse whether
    # pruned or not (its logits are about one quantization step); the shrunk file runs and
    # is no coarser than the unpruned one.
    errors = []
    for name, model in (("small", small), ("dense", task)):
        int8 = tfprune.export_tflite(
            model,
            tmp_path / f"{name}_int8.tflite",
            input_shapes=shapes,
            quantize="int8",
            representative_data=[x["token_ids"], x["padding_mask"]],
        )
        (quantized,) = tfprune.export.run_tflite(int8, [x["token_ids"], x["padding_mask"]])
        errors.append(np.abs(quantized - outputs(model, x)).mean())
    assert errors[0] <= 2 * errors[1]
    # The task and its preprocessor are untouched: it still generates.
    assert isinstance(task.generate(["the quick"], max_length=6)[0], str)
