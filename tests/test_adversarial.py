"""Attacks, robust accuracy, adversarial training in fit, and the adversarial-aware schedule."""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune.zoo import digits_cnn, load_digits


@pytest.fixture(scope="module")
def digits():
    (x, y), (x_test, y_test) = load_digits()
    return x, y, x_test[:120], y_test[:120]


@pytest.fixture(scope="module")
def trained(digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    return model


def mean_loss(model, x, y):
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=False))))


def test_fgsm_raises_the_loss_and_stays_in_budget(trained, digits):
    _, _, x, y = digits
    x_adv = tfprune.FGSM(eps=0.05)(trained, x, y).numpy()
    assert mean_loss(trained, x_adv, y) > 2 * mean_loss(trained, x, y)
    assert np.abs(x_adv - x).max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_is_at_least_as_strong_as_fgsm_and_respects_its_ball(trained, digits, norm):
    _, _, x, y = digits
    eps = 0.05 if norm == "linf" else 1.0
    pgd = tfprune.PGD(eps=eps, steps=10, norm=norm)
    x_adv = pgd(trained, x, y).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-6
        fgsm = tfprune.robust_accuracy(trained, x, y, tfprune.FGSM(eps=eps))
        assert tfprune.robust_accuracy(trained, x, y, pgd) <= fgsm
    else:
        assert np.linalg.norm(delta, axis=1).max() <= eps + 1e-4
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert tfprune.robust_accuracy(trained, x, y, pgd) < tfprune.robust_accuracy(trained, x, y, None)


def test_deepfool_finds_small_perturbations_that_flip_predictions(trained, digits):
    _, _, x, y = digits
    x_adv = tfprune.DeepFool(steps=5, overshoot=0.02, clip=None)(trained, x, y).numpy()
    flipped = np.argmax(trained(x_adv, training=False), axis=1) != y
    correct = np.argmax(trained(x, training=False), axis=1) == y
    assert flipped[correct].mean() > 0.8  # unclipped, DeepFool crosses the boundary
    rms = np.sqrt(np.mean((x_adv - x) ** 2, axis=(1, 2, 3)))
    assert np.median(rms[correct]) < 0.1  # minimal: far smaller than the pixel range


def test_cutoff_scale_caps_each_example_by_the_formula():
    rng = np.random.default_rng(0)
    eta = rng.normal(size=(6, 4, 4, 1)).astype(np.float32) * np.array([0.01, 0.1, 1, 2, 3, 0.5]).reshape(6, 1, 1, 1)
    rms = np.sqrt(np.mean(eta**2, axis=(1, 2, 3)))
    fixed = tfprune.cutoff_scale(eta, rho=0.9, delta=0.2).numpy()
    expected = 0.9 * eta * np.minimum(1.0, 0.2 / rms).reshape(6, 1, 1, 1)
    np.testing.assert_allclose(fixed, expected, rtol=1e-5)
    assert np.sqrt(np.mean(fixed**2, axis=(1, 2, 3))).max() <= 0.9 * 0.2 + 1e-6
    adaptive = tfprune.cutoff_scale(eta, rho=0.9).numpy()
    np.testing.assert_allclose(adaptive, 0.9 * eta * np.minimum(1.0, rms.mean() / rms).reshape(6, 1, 1, 1), rtol=1e-5)


def test_cutoff_scale_attack_clips_to_the_input_range(trained, digits):
    _, _, x, y = digits
    attack = tfprune.CutoffScale(rho=0.9, delta=0.05)
    x_adv = attack(trained, x, y).numpy()
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
        (lambda: tfprune.DeepFool(steps=0), ValueError, "steps"),
        (lambda: tfprune.cutoff_scale(np.zeros((1, 2)), rho=1.5), ValueError, "rho"),
        (lambda: tfprune.FGSM(eps="big"), TypeError, "eps must be a number"),
    ],
)
def test_bad_attack_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_data_and_models_are_rejected(trained, digits):
    _, _, x, y = digits
    with pytest.raises(ValueError, match="at least one example"):
        tfprune.robust_accuracy(trained, x[:0], y[:0], tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        tfprune.robust_accuracy(trained, x, y + 10, tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="120 examples but y has 3"):
        tfprune.robust_accuracy(trained, x, y[:3], tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="integer class ids"):
        tfprune.robust_accuracy(trained, x, np.eye(10)[y], tfprune.FGSM(0.1))
    inputs = keras.Input((4,))
    regression = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="class scores"):
        tfprune.robust_accuracy(regression, np.zeros((2, 4)), np.zeros(2, int), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="output must be"):
        tfprune.FGSM(0.1, output="scores")


def test_logits_and_probabilities_give_the_same_attack(trained, digits):
    _, _, x, y = digits
    logits_model = keras.Model(trained.inputs, trained.get_layer("gap").output)
    logits_model = keras.Model(
        trained.inputs, keras.layers.Dense(10, name="logits")(logits_model.output)
    )
    classifier = trained.get_layer("classifier")
    logits_model.get_layer("logits").set_weights(classifier.get_weights())
    assert tfprune.adversarial.output_kind(trained) == "probabilities"
    assert tfprune.adversarial.output_kind(logits_model) == "logits"
    a = tfprune.FGSM(0.05)(trained, x, y).numpy()
    b = tfprune.FGSM(0.05)(logits_model, x, y).numpy()
    assert np.mean(a == b) > 0.99  # same loss up to float rounding


def test_adversarial_training_composes_with_pruning_in_fit(digits, tmp_path):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(digits_cnn(), schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 36, frequency=9))
    trainer = tfprune.AdversarialTraining(pruned, tfprune.FGSM(eps=0.1), weight=0.5)
    trainer.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = trainer.fit(x[:640], y[:640], batch_size=32, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
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


# ----------------------------------------------------------------------------- the schedule


class Scripted:
    """A probe that returns a scripted (clean, robust) sequence, one pair per call."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, model):
        self.calls += 1
        return self.values.pop(0)


def run_schedule(values, digits, epochs=1, trace=None, schedule=None, **kwargs):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    schedule = schedule or tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=8, frequency=2)
    pruned = tfprune.prune(digits_cnn(), schedule=schedule)
    pruned.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning(
        (x_test, y_test), tfprune.FGSM(0.05), tolerance=0.02, hard_limit=0.05, trace_path=trace, measure=Scripted(values), **kwargs
    )
    history = pruned.fit(x[:320], y[:320], batch_size=32, epochs=epochs, verbose=0, callbacks=[callback])
    return pruned, callback, history


def test_schedule_advances_holds_rolls_back_and_is_forced_at_the_end(digits, tmp_path):
    # planned updates at steps 2, 4, 6, 8; each decision probes once, and once more after a
    # mask change (or a rollback).
    values = [
        (0.9, 0.60), (0.85, 0.55),  # step 2: first probe is the reference -> advance; after: robust 0.55
        (0.9, 0.57),                # step 4: drop 0.60 - 0.57 = 0.03 > tolerance -> hold
        (0.9, 0.50), (0.9, 0.59),   # step 6: drop 0.10 > hard limit -> rollback, re-probe
        (0.9, 0.45), (0.88, 0.44),  # step 8: drop 0.15, rollback impossible (none left) -> hold, but final -> forced
    ]
    pruned, callback, history = run_schedule(values, digits, trace=tmp_path / "trace.csv")
    decisions = [e["decision"] for e in callback.events]
    assert decisions[0] == "advance"
    assert decisions[1] == "hold"
    assert decisions[2] == "rollback"
    assert decisions[3].startswith("hold, then advance (forced")
    assert callback.events[0]["instability"] == pytest.approx((0.9 - 0.85) / 0.9)
    assert [e["step"] for e in callback.events] == [2, 4, 6, 8]
    assert callback.events[2]["accepted_target"] == 0.0  # rolled back to before step 2
    assert callback.events[-1]["accepted_target"] == 0.5
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))
    assert history.history["pruning_holds"][-1] == 1.0 and history.history["pruning_rollbacks"][-1] == 1.0
    assert history.history["robust_accuracy"][-1] == 0.44
    trace = (tmp_path / "trace.csv").read_text().splitlines()
    assert trace[0].startswith("step,epoch,planned_target") and len(trace) == 5


def test_rollback_restores_masks_and_weights(digits):
    values = [(0.9, 0.6), (0.9, 0.6), (0.9, 0.4), (0.9, 0.6), (0.9, 0.6), (0.9, 0.6)]
    schedule = tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=20, frequency=2)

    class Capture(keras.callbacks.Callback):
        masks = []

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 3:  # after the advance at step 2, before the rollback at step 4
                Capture.masks = [w.mask_array().copy() for w in tfprune.wrappers_of(self.model)]

    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(digits_cnn(), schedule=schedule)
    before = [w.mask_array().copy() for w in tfprune.wrappers_of(pruned)]
    pruned.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning((x_test, y_test), tfprune.FGSM(0.05), measure=Scripted(values))
    with pytest.warns(UserWarning, match="short of the schedule's final"):
        pruned.fit(x[:160], y[:160], batch_size=32, epochs=1, verbose=0, callbacks=[callback, Capture()])
    assert [e["decision"] for e in callback.events] == ["advance", "rollback", "incomplete"]
    assert any(m.min() == 0 for m in Capture.masks)
    for mask, wrapper in zip(before, tfprune.wrappers_of(pruned)):
        np.testing.assert_array_equal(mask, wrapper.mask_array())  # back to no pruning


def test_unfinished_budget_warns_and_records_it(digits, tmp_path):
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=2, end_step=1000, frequency=2)
    with pytest.warns(UserWarning, match="short of the schedule's final 0.500"):
        _, callback, _ = run_schedule([(0.9, 0.6)] * 40, digits, schedule=schedule, trace=tmp_path / "t.json")
    assert callback.events[-1]["decision"] == "incomplete"
    assert json.loads((tmp_path / "t.json").read_text())[-1]["decision"] == "incomplete"


def test_resume_restores_the_schedule_state(digits, tmp_path):
    x, y, x_test, y_test = digits
    schedule = tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=18, frequency=2)
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(digits_cnn(), schedule=schedule)
    pruned.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    first = tfprune.AdversarialAwarePruning((x_test, y_test), tfprune.FGSM(0.05), measure=Scripted([(0.9, 0.7), (0.9, 0.65)]))
    with pytest.warns(UserWarning):  # each short fit ends before the schedule does
        pruned.fit(x[:96], y[:96], batch_size=32, epochs=1, verbose=0, callbacks=[first])  # advance at step 2
    assert first.events[0]["decision"] == "advance"
    pruned.save(tmp_path / "mid.keras")
    loaded = keras.saving.load_model(tmp_path / "mid.keras")
    second = tfprune.AdversarialAwarePruning((x_test, y_test), tfprune.FGSM(0.05), measure=Scripted([(0.9, 0.62)]))
    with pytest.warns(UserWarning):
        loaded.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[second])  # step 3: nothing planned
        loaded.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[second])  # step 4: planned
    # The reference restored from the file is 0.65 (measured after the step-2 change), so
    # 0.62 is a drop of 0.03 > tolerance: hold. A fresh state would have taken 0.62 as the
    # reference and advanced.
    decisions = [(e["step"], e["decision"]) for e in second.events if e["decision"] != "incomplete"]
    assert decisions == [(4, "hold")]
    held = next(e for e in second.events if e["decision"] == "hold")
    assert held["accepted_target"] == pytest.approx(first.events[0]["accepted_target"], rel=1e-6)  # float32 state
    assert held["accepted_target"] > 0


def test_schedule_bad_input(digits):
    _, _, x_test, y_test = digits
    with pytest.raises(ValueError, match="probe_data"):
        tfprune.AdversarialAwarePruning(None, tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="probe_data"):
        tfprune.AdversarialAwarePruning((x_test[:0], y_test[:0]), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="hard_limit"):
        tfprune.AdversarialAwarePruning((x_test, y_test), tfprune.FGSM(0.1), tolerance=0.1, hard_limit=0.05)
    with pytest.raises(TypeError, match="attack"):
        tfprune.AdversarialAwarePruning((x_test, y_test), "pgd")
    pruned = tfprune.prune(digits_cnn(), schedule=0.5)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning((x_test, y_test + 10), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="labels must lie"):
        pruned.fit(x_test, y_test, epochs=1, verbose=0, callbacks=[callback])
