"""Attacks: budgets, strength, the cut-off-scale formula, and bad arguments."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.core.classifier import output_kind


def mean_loss(model, x, y):
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))))


def test_fgsm_raises_the_loss_and_stays_in_budget(trained_cnn, digits):
    _, _, x, y = digits
    x_adv = tfprune.FGSM(eps=0.05)(trained_cnn, x, y).numpy()
    assert mean_loss(trained_cnn, x_adv, y) > 2 * mean_loss(trained_cnn, x, y)
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_is_at_least_as_strong_as_fgsm_and_respects_its_ball(trained_cnn, digits, norm):
    _, _, x, y = digits
    eps = 0.05 if norm == "linf" else 1.0
    pgd = tfprune.PGD(eps=eps, steps=10, norm=norm)
    x_adv = pgd(trained_cnn, x, y).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-6
        fgsm = tfprune.robust_accuracy(trained_cnn, x, y, tfprune.FGSM(eps=eps))
        assert tfprune.robust_accuracy(trained_cnn, x, y, pgd) <= fgsm
    else:
        assert np.linalg.norm(delta, axis=1).max() <= eps + 1e-4
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert tfprune.robust_accuracy(trained_cnn, x, y, pgd) < tfprune.robust_accuracy(
        trained_cnn, x, y, None
    )


def test_deepfool_finds_small_perturbations_that_flip_predictions(trained_cnn, digits):
    _, _, x, y = digits
    x_adv = tfprune.robustness.DeepFool(steps=5, overshoot=0.02, clip=None)(
        trained_cnn, x, y
    ).numpy()
    flipped = np.argmax(trained_cnn(x_adv, training=False), axis=1) != y
    correct = np.argmax(trained_cnn(x, training=False), axis=1) == y
    assert flipped[correct].mean() > 0.8  # unclipped, DeepFool crosses the boundary
    rms = np.sqrt(np.mean((x_adv - x) ** 2, axis=(1, 2, 3)))
    assert np.median(rms[correct]) < 0.1  # minimal: far smaller than the pixel range


def test_cutoff_scale_caps_each_example_by_the_formula():
    rng = np.random.default_rng(0)
    eta = rng.normal(size=(6, 4, 4, 1)).astype(np.float32) * np.array(
        [0.01, 0.1, 1, 2, 3, 0.5]
    ).reshape(6, 1, 1, 1)
    rms = np.sqrt(np.mean(eta**2, axis=(1, 2, 3)))
    fixed = tfprune.robustness.cutoff_scale(eta, rho=0.9, delta=0.2).numpy()
    expected = 0.9 * eta * np.minimum(1.0, 0.2 / rms).reshape(6, 1, 1, 1)
    np.testing.assert_allclose(fixed, expected, rtol=1e-5)
    assert np.sqrt(np.mean(fixed**2, axis=(1, 2, 3))).max() <= 0.9 * 0.2 + 1e-6
    adaptive = tfprune.robustness.cutoff_scale(eta, rho=0.9).numpy()
    np.testing.assert_allclose(
        adaptive, 0.9 * eta * np.minimum(1.0, rms.mean() / rms).reshape(6, 1, 1, 1), rtol=1e-5
    )


def test_cutoff_scale_attack_clips_to_the_input_range(trained_cnn, digits):
    _, _, x, y = digits
    attack = tfprune.robustness.CutoffScale(rho=0.9, delta=0.05)
    x_adv = attack(trained_cnn, x, y).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert restored.get_config() == attack.get_config()


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: tfprune.FGSM(eps=-0.1), ValueError, "eps must be >= 0"),
        (lambda: tfprune.PGD(eps=0.1, steps=0), ValueError, "steps must be an integer >= 1"),
        (lambda: tfprune.PGD(eps=0.1, norm="l1"), ValueError, "norm"),
        (lambda: tfprune.FGSM(eps=0.1, clip=(1.0, 0.0)), ValueError, "min < max"),
        (lambda: tfprune.robustness.DeepFool(steps=0), ValueError, "steps"),
        (lambda: tfprune.robustness.cutoff_scale(np.zeros((1, 2)), rho=1.5), ValueError, "rho"),
        (lambda: tfprune.FGSM(eps="big"), TypeError, "eps must be a number"),
    ],
)
def test_bad_attack_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_logits_and_probabilities_give_the_same_attack(trained_cnn, digits):
    _, _, x, y = digits
    logits_model = keras.Model(trained_cnn.inputs, trained_cnn.get_layer("gap").output)
    logits_model = keras.Model(
        trained_cnn.inputs, keras.layers.Dense(10, name="logits")(logits_model.output)
    )
    classifier = trained_cnn.get_layer("classifier")
    logits_model.get_layer("logits").set_weights(classifier.get_weights())
    assert output_kind(trained_cnn) == "probabilities"
    assert output_kind(logits_model) == "logits"
    a = tfprune.FGSM(0.05)(trained_cnn, x, y).numpy()
    b = tfprune.FGSM(0.05)(logits_model, x, y).numpy()
    assert np.mean(a == b) > 0.99  # same loss up to float rounding
