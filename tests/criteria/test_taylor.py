"""First-order Taylor importance against finite differences, in fit and in nested models."""

import keras
import numpy as np
import pytest
from helpers import pruned_in_adversarial_training

import tfprune
from tfprune.criteria import RobustTaylor, ScoringContext, Taylor


def test_taylor_matches_a_finite_difference_estimate():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    hidden = model.get_layer("hidden")
    hidden.kernel.assign(hidden.kernel * 0.05)  # small weights: first order is accurate
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    pruned = tfprune.prune(
        model, granularity="unstructured", criterion="taylor", layers=["hidden"], schedule=0.5
    )
    layer = pruned.get_layer("prune_hidden").layer
    weight = layer.kernel.numpy()
    scores = Taylor()(weight, layer, ScoringContext(pruned, data=(x, y)))

    def loss():
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, pruned(x))))

    base = loss()
    for i, j in [(0, 0), (2, 3), (5, 1), (4, 4)]:
        layer.kernel.assign(
            np.where(np.arange(weight.size).reshape(weight.shape) == i * 5 + j, 0, weight)
        )
        assert abs(base - loss()) == pytest.approx(scores[i, j], rel=0.05, abs=1e-6)
        layer.kernel.assign(weight)
    with pytest.raises(ValueError, match="calibration data"):
        Taylor()(weight, layer, ScoringContext(pruned))


def test_taylor_runs_inside_fit_with_callback_data():
    keras.utils.set_random_seed(4)
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    pruned = tfprune.prune(digits_cnn(), criterion="taylor", schedule=tfprune.OneShot(0.5, step=2))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(
        x[:128],
        y[:128],
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[tfprune.PruningCallback(data=(x[:128], y[:128]))],
    )
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))


def test_taylor_scores_layers_inside_nested_models():
    keras.utils.set_random_seed(10)
    inner_in = keras.Input((6,))
    inner = keras.Model(
        inner_in, keras.layers.Dense(5, activation="tanh", name="inner_fc")(inner_in), name="inner"
    )
    inputs = keras.Input((6,))
    model = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax", name="out")(inner(inputs))
    )
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, 32))
    pruned = tfprune.prune(
        model, granularity="unstructured", criterion="taylor", layers=["inner_fc"], schedule=0.5
    )
    tfprune.apply_target(pruned, 0.5, data=data)
    wrapper = tfprune.wrappers_of(pruned)[0]
    assert wrapper.layer.name == "inner_fc" and wrapper.sparsity() == pytest.approx(0.5)


def tiny_classifier(seed=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))


def test_robust_taylor_is_taylor_on_adversarial_examples_of_the_current_weights():
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 6), dtype=np.float32), rng.integers(0, 3, 64)
    pruned = tfprune.prune(tiny_classifier(), criterion="robust_taylor", layers=["hidden"])
    (wrapper,) = tfprune.wrappers_of(pruned)
    layer, weight = wrapper.layer, wrapper.weight_array()
    attack = tfprune.FGSM(eps=0.2)
    robust = RobustTaylor(attack)(weight, layer, ScoringContext(pruned, data=(x, y)))
    x_adv = np.asarray(attack(pruned, x, y))
    on_adversarial = Taylor()(weight, layer, ScoringContext(pruned, data=(x_adv, y)))
    np.testing.assert_allclose(robust, on_adversarial, rtol=1e-6)
    clean = Taylor()(weight, layer, ScoringContext(pruned, data=(x, y)))
    assert np.abs(robust - clean).max() > 1e-3 * np.abs(clean).max()  # the attack matters
    with pytest.raises(ValueError, match="calibration data"):
        RobustTaylor(attack)(weight, layer, ScoringContext(pruned))
    with pytest.raises(TypeError, match="attack"):
        RobustTaylor("fgsm")


def test_robust_taylor_prunes_filter_groups_under_adversarial_training_and_saves(tmp_path):
    from tfprune.zoo import load_digits

    keras.utils.set_random_seed(4)
    (x, y), _ = load_digits()
    criterion = RobustTaylor(tfprune.PGD(eps=0.1, steps=2))
    pruned = pruned_in_adversarial_training(criterion, x[:128], y[:128])
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))
    tfprune.save_model(pruned, tmp_path / "robust.keras")
    restored = keras.saving.load_model(tmp_path / "robust.keras")
    (first, *_) = tfprune.wrappers_of(restored)
    assert isinstance(first.criterion, RobustTaylor)
    assert first.criterion.attack.get_config() == criterion.attack.get_config()
