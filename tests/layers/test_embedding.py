"""Embedding: the table prunes unstructured or in blocks, and its dimensions as filters."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.masking.ranking import apply_target


def token_model(length=12):
    tokens = keras.Input((length,), dtype="int32")
    x = keras.layers.Embedding(48, 16, name="embed")(tokens)
    x = keras.layers.Conv1D(16, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="head")(x))


def tokens(n=4, length=12, seed=0):
    return np.random.default_rng(seed).integers(0, 48, (n, length)).astype("int32")


@pytest.mark.parametrize("length", [12, None])
def test_embedding_dimensions_are_filters_that_flow_into_the_graph(length, tmp_path):
    keras.utils.set_random_seed(0)
    model = token_model(length)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), target="flops", ranking="global")
    assert "embed" in {w.layer.name for w in tfprune.wrappers_of(pruned)}
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = tokens(16)
    pruned.fit(x, np.arange(16) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(tfprune.strip(pruned))
    assert small.get_layer("embed").output_dim < 16
    assert small.get_layer("conv").kernel.shape[1] == small.get_layer("embed").output_dim
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "tokens.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


@pytest.mark.parametrize("granularity", ["unstructured", "block"])
def test_the_table_prunes_and_saves(granularity, tmp_path):
    keras.utils.set_random_seed(1)
    pruned = tfprune.prune(token_model(), granularity=granularity, schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    (wrapper,) = [w for w in tfprune.wrappers_of(pruned) if w.layer.name == "embed"]
    assert wrapper.sparsity() == pytest.approx(0.5)
    table = tfprune.strip(pruned).get_layer("embed").get_weights()[0]
    assert np.mean(table == 0) == pytest.approx(0.5)
    tfprune.save_model(pruned, tmp_path / "pruned.keras")
    restored = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(restored(tokens()), pruned(tokens()), atol=1e-6)
