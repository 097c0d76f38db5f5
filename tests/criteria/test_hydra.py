"""HYDRA's filter scores learn on the adversarial loss, and its masks shrink like any other."""

import keras
import numpy as np
import pytest
from helpers import pruned_in_adversarial_training

import tfprune
from tfprune.criteria import Hydra, ScoringContext, spread_over_filters


def adversarial_loss_keeping(pruned, filter_scores, keep, x, y):
    """FGSM loss of a copy of `pruned` keeping each layer's `keep` best filters by the scores."""
    copy = keras.models.clone_model(pruned)
    copy.set_weights(pruned.get_weights())
    for wrapper in tfprune.wrappers_of(copy):
        weight = wrapper.weight_array()
        scores = spread_over_filters(wrapper.layer, weight, filter_scores[wrapper.layer.name])
        mask = wrapper.granularity.mask(scores, wrapper.mask_array(), 1 - keep, wrapper.spec)
        wrapper.assign_mask(mask)
    x_adv = tfprune.FGSM(eps=0.1)(copy, x, y)
    loss = keras.losses.sparse_categorical_crossentropy(y, copy(x_adv, training=False))
    return float(np.mean(keras.ops.convert_to_numpy(loss)))


def test_learned_scores_keep_filters_with_a_lower_adversarial_loss_than_magnitude(
    trained_cnn, digits
):
    x, y, _, _ = digits
    x, y = x[:256], y[:256]
    pruned = tfprune.prune(trained_cnn, criterion=Hydra(tfprune.FGSM(eps=0.1), steps=60))
    wrappers = tfprune.wrappers_of(pruned)
    magnitude = {
        w.layer.name: np.sqrt(np.square(w.spec.to_canonical(w.weight_array())).sum(axis=(1, 2)))
        for w in wrappers
    }
    before = pruned.get_weights()
    learned_by_id = Hydra(tfprune.FGSM(eps=0.1), steps=60).learn(
        ScoringContext(pruned, data=(x, y), keep=0.5)
    )
    learned = {w.layer.name: learned_by_id[id(w.layer)] for w in wrappers}
    # Learning moved the ranking: some layer keeps other filters than its largest.
    assert any(
        set(np.argsort(-learned[n])[: len(learned[n]) // 2])
        != set(np.argsort(-magnitude[n])[: len(magnitude[n]) // 2])
        for n in learned
    )
    by_magnitude = adversarial_loss_keeping(pruned, magnitude, 0.5, x, y)
    by_hydra = adversarial_loss_keeping(pruned, learned, 0.5, x, y)
    print(f"adversarial loss keeping half the filters: {by_magnitude=:.3f} {by_hydra=:.3f}")
    assert by_hydra < 0.8 * by_magnitude
    # Learning changes no weight of the model.
    assert all(np.array_equal(a, b) for a, b in zip(before, pruned.get_weights()))


def test_hydra_prunes_filter_groups_in_adversarial_training_shrinks_and_reloads(tmp_path, digits):
    x, y, _, _ = digits
    keras.utils.set_random_seed(5)
    criterion = Hydra(tfprune.FGSM(eps=0.1), steps=4)
    pruned = pruned_in_adversarial_training(criterion, x[:128], y[:128])
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))
    small = tfprune.shrink(tfprune.strip(pruned))
    assert small.count_params() < pruned.count_params() * 0.6
    difference = np.abs(keras.ops.convert_to_numpy(small(x[:32]) - pruned(x[:32])))
    assert difference.max() <= 1e-5
    tfprune.save_model(pruned, tmp_path / "hydra.keras")
    restored = keras.saving.load_model(tmp_path / "hydra.keras")
    first = tfprune.wrappers_of(restored)[0]
    assert first.criterion.get_config() == criterion.get_config()


def test_hydra_says_what_it_needs():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    pruned = tfprune.prune(model, criterion="hydra", layers=["hidden"])
    with pytest.raises(ValueError, match="calibration data"):
        Hydra().learn(ScoringContext(pruned))
    with pytest.raises(ValueError, match="steps"):
        Hydra(steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        Hydra(learning_rate=0)
    with pytest.raises(TypeError, match="attack"):
        Hydra("fgsm")
