"""tfprune.strip: plain Keras layers with the masks baked in."""

import keras
import numpy as np
import pytest
from helpers import weights_of

import tfprune
from tfprune.masking.ranking import apply_target


def test_strip_gives_plain_layers_with_masks_baked_in(cnn, data):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    before = weights_of(pruned)
    plain = tfprune.strip(pruned)
    assert not tfprune.wrappers_of(plain)
    assert [layer.name for layer in plain.layers] == [layer.name for layer in cnn.layers][
        : len(plain.layers)
    ]
    assert type(plain.get_layer("conv2")) is keras.layers.Conv2D
    np.testing.assert_allclose(plain(data[0]), pruned(data[0]), atol=1e-6)
    assert plain.get_layer("conv2").kernel.numpy().reshape(-1, 16).any(axis=0).sum() == 8
    for a, b in zip(before, weights_of(pruned)):  # the pruned model is left as it was
        np.testing.assert_array_equal(a, b)


def test_strip_bakes_masks_even_over_hand_edited_weights(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    conv2 = pruned.get_layer("prune_conv2").layer
    conv2.kernel.assign(np.ones(conv2.kernel.shape, np.float32))  # bypasses the constraint
    plain = tfprune.strip(pruned)
    np.testing.assert_array_equal(
        plain.get_layer("conv2").kernel.numpy(), pruned.get_layer("prune_conv2").mask.numpy()
    )


def test_stripped_model_saves_loads_and_trains_without_tfprune_objects(cnn, data, tmp_path):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5))
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    pruned.fit(*data, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    plain = tfprune.strip(pruned)
    plain.save(tmp_path / "plain.keras")
    config = (tmp_path / "plain.keras").read_bytes()
    assert b"PruneWrapper" not in config
    loaded = keras.saving.load_model(tmp_path / "plain.keras")
    np.testing.assert_allclose(loaded(data[0]), plain(data[0]), atol=1e-6)


def test_strip_rejects_models_without_wrappers(cnn):
    with pytest.raises(ValueError, match="no PruneWrapper layers.*tfprune.prune"):
        tfprune.strip(cnn)
    with pytest.raises(TypeError, match="keras.Model"):
        tfprune.strip("model.keras")  # noqa: B005  (tfprune.strip, not str.strip)
