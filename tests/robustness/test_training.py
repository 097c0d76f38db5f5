"""Adversarial training inside fit, composed with pruning."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.zoo import digits_cnn


def test_adversarial_training_composes_with_pruning_in_fit(digits, tmp_path):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(
        digits_cnn(), schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 36, frequency=9)
    )
    trainer = tfprune.AdversarialTraining(pruned, tfprune.FGSM(eps=0.1), weight=0.5)
    trainer.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = trainer.fit(
        x[:640], y[:640], batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    assert history.history["sparsity"][-1] == pytest.approx(0.5)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    plain = tfprune.shrink(pruned)
    np.testing.assert_allclose(plain(x_test), pruned(x_test), atol=1e-5)
    trainer.save(tmp_path / "trainer.keras")
    restored = keras.saving.load_model(tmp_path / "trainer.keras")
    assert isinstance(restored.attack, tfprune.FGSM) and restored.weight == 0.5
    np.testing.assert_allclose(restored(x_test), trainer(x_test), atol=1e-6)
    with pytest.raises(ValueError, match="weight"):
        tfprune.AdversarialTraining(pruned, tfprune.FGSM(0.1), weight=1.5)
    with pytest.raises(TypeError, match="attack"):
        tfprune.AdversarialTraining(pruned, "fgsm")
