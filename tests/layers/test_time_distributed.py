"""TimeDistributed: its layer is pruned and shrunk as if applied to each step."""

import keras
import numpy as np

import tfprune
from tfprune.masking.ranking import apply_target


def per_frame_cnn(steps=3):
    inputs = keras.Input((steps, 8, 8, 2))
    conv = keras.layers.Conv2D(8, 3, activation="relu", name="c1")
    x = keras.layers.TimeDistributed(conv, name="td1")(inputs)
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3, name="c2"), name="td2")(x)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="pool")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_flops_count_every_step():
    one, three = per_frame_cnn(1), per_frame_cnn(3)
    head = 2 * 8 * 3
    assert tfprune.count_flops(three) - head == 3 * (tfprune.count_flops(one) - head)


def test_the_inner_layers_prune_shrink_export_and_save(tmp_path):
    keras.utils.set_random_seed(0)
    model = per_frame_cnn()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    assert {w.layer.name for w in tfprune.wrappers_of(pruned)} == {"td1", "td2"}
    apply_target(pruned, 0.5)
    tfprune.save_model(pruned, tmp_path / "pruned.keras")
    x = np.random.default_rng(0).random((2, 3, 8, 8, 2), dtype=np.float32)
    restored = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(restored(x), pruned(x), atol=1e-6)
    small = tfprune.shrink(pruned)
    assert isinstance(small.get_layer("td1"), keras.layers.TimeDistributed)
    assert small.get_layer("td1").layer.filters == 4
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    assert tfprune.count_flops(small) < 0.6 * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "frames.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
