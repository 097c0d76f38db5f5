"""GroupNormalization: channels go in whole groups, and shrink lowers `groups`."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.masking.ranking import apply_target


def grouped_cnn(groups, scale=True, axis=-1):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", name="c2")(x)
    x = keras.layers.GroupNormalization(groups, axis=axis, scale=scale, name="gn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 1, name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    gn = model.get_layer("gn")
    rng = np.random.default_rng(groups)
    gn.set_weights([rng.random(w.shape).astype("float32") + 0.5 for w in gn.weights])
    return model


@pytest.mark.parametrize("groups", [2, 4, 16])
def test_whole_groups_are_removed_and_the_function_stays(groups):
    keras.utils.set_random_seed(groups)
    model = grouped_cnn(groups)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    c2 = next(w for w in tfprune.wrappers_of(pruned) if w.layer.name == "c2")
    kept = c2.mask_array().reshape(-1, 16).any(axis=0).reshape(groups, 16 // groups)
    assert (kept.all(axis=1) | ~kept.any(axis=1)).all()  # each group kept or removed whole
    small = tfprune.shrink(pruned)
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    kept_channels = small.get_layer("c2").filters
    assert kept_channels < 16
    assert small.get_layer("gn").groups == kept_channels // (16 // groups)


def test_a_grouped_cnn_trains_shrinks_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(grouped_cnn(4), schedule=tfprune.OneShot(0.5))
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)
    pruned.fit(x, np.arange(16) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(tfprune.strip(pruned))
    assert small.get_layer("gn").groups == 2
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "grouped.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_group_normalization_without_a_scale_is_a_barrier_that_explain_names():
    rows = {row["layer"]: row for row in tfprune.explain(grouped_cnn(4, scale=False))}
    assert rows["c2"]["removable"] == 0
    assert any("no per-channel scale" in reason for reason in rows["c2"]["reasons"])
