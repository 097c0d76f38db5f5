"""Training procedures from the literature: pruning instability (§8), IMP with rewinding and
mask similarity (§2), and the IPLT / PFWT schedule presets (§9, §5)."""

import keras
import numpy as np
import pytest
from conftest import small_cnn

import tfprune


def scripted_model():
    """Two inputs -> four ReLU units -> two classes, with weights set by hand.

    Unit L1 norms are 3, 3, 0.2, 0.1, so pruning half of the units (L1) removes units 2 and 3.
    Unit 3 feeds nothing; unit 2 is what makes example A class 0 (7 vs 3.6, and 3 vs 3.6
    without it). So on the four examples accuracy goes from 4/4 to 3/4: instability 0.25.
    """
    inputs = keras.Input((2,))
    hidden = keras.layers.Dense(4, activation="relu", use_bias=False, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, use_bias=False, name="out")(hidden))
    model.get_layer("hidden").set_weights([np.array([[3, 0, 0.2, 0], [0, 3, 0, 0.1]], np.float32)])
    model.get_layer("out").set_weights([np.array([[1, 0], [0, 1], [20, 0], [0, 0]], np.float32)])
    x = np.array([[1, 1.2], [2, 0], [0, 2], [1, 0.5]], np.float32)
    y = np.array([0, 0, 1, 0])
    return model, x, y


def fit_frozen(pruned, x, y, callback):
    # A learning rate of 0 keeps the hand-set weights: only the masks change.
    pruned.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    return pruned.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback]).history


def test_instability_equals_the_hand_computed_value():
    model, x, y = scripted_model()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["hidden"], protect=None)
    callback = tfprune.PruningCallback(validation_data=(x, y))
    logs = fit_frozen(pruned, x, y, callback)
    (event,) = callback.events
    assert event["accuracy_before"] == 1.0 and event["accuracy_after"] == 0.75
    assert event["instability"] == pytest.approx((1.0 - 0.75) / 1.0)
    assert logs["instability"] == [pytest.approx(0.25)]
    text = str(tfprune.summary(pruned, events=callback.events))
    assert "instability" in text and "0.2500" in text and "75.0" in text


def test_max_instability_prunes_only_what_stays_under_the_cap():
    model, x, y = scripted_model()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["hidden"], protect=None)
    callback = tfprune.PruningCallback(validation_data=(x, y), max_instability=0.1)
    with pytest.warns(UserWarning, match="max_instability"):
        fit_frozen(pruned, x, y, callback)
    (event,) = callback.events
    # Pruning unit 3 alone is harmless; unit 2 would cost example A.
    assert event["capped"] and event["instability"] == 0.0 and event["accuracy_after"] == 1.0
    kept = tfprune.wrappers_of(pruned)[0].mask_array().any(axis=0)
    assert kept.tolist() == [True, True, True, False]


def test_instability_arguments_are_checked():
    with pytest.raises(ValueError, match="needs validation_data"):
        tfprune.PruningCallback(max_instability=0.1)
    with pytest.raises(ValueError, match="max_instability"):
        tfprune.PruningCallback(validation_data=(np.zeros((2, 2)), [0, 1]), max_instability=2)
    with pytest.raises(ValueError, match="as many labels"):
        tfprune.PruningCallback(validation_data=(np.zeros((2, 2)), [0]))


def imp_run(rewind, data, rounds=2, rewind_epoch=None):
    x, y = data
    keras.utils.set_random_seed(0)
    model = small_cnn()
    imp = tfprune.IterativePruning(rate=0.5, rounds=rounds, rewind=rewind, rewind_epoch=rewind_epoch)
    snapshots = []

    def fit(m, callbacks):
        snapshots.append([w.weight_array().copy() for w in tfprune.wrappers_of(m)])
        return m.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)

    pruned = imp.run(model, compile=lambda m: m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy"), fit=fit)
    return imp, pruned, snapshots, model


@pytest.mark.parametrize("rewind", ["init", "epoch"])
def test_rewinding_restores_exactly_the_stored_values_for_survivors(rewind, data):
    imp, pruned, snapshots, _ = imp_run(rewind, data, rewind_epoch=1 if rewind == "epoch" else None)
    assert [h["target"] for h in imp.history] == [0.0, 0.5, 0.75]
    assert imp.history[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    stored = {layer.name: layer.get_weights()[0] for layer in imp.rewind_point.layers if layer.weights}
    for round_index in (1, 2):
        # What each later round started from: the rewind point on survivors, zeros elsewhere.
        for wrapper, start in zip(tfprune.wrappers_of(pruned), snapshots[round_index]):
            survivors = start != 0
            assert np.array_equal(start[survivors], stored[wrapper.layer.name][survivors])
            assert survivors.mean() <= 1 - imp.target(round_index) + 0.01
    if rewind == "init":
        assert all(np.array_equal(a, b) for a, b in zip(snapshots[0], [stored[w.layer.name] for w in tfprune.wrappers_of(pruned)]))


def test_reinit_and_keep_differ_from_the_rewind_point(data):
    _, pruned_reinit, reinit_snapshots, model = imp_run("reinit", data, rounds=1)
    _, pruned_keep, keep_snapshots, _ = imp_run("keep", data, rounds=1)
    first = tfprune.wrappers_of(pruned_reinit)[0]
    initial = model.get_layer(first.layer.name).get_weights()[0]
    survivors = reinit_snapshots[1][0] != 0
    assert not np.allclose(reinit_snapshots[1][0][survivors], initial[survivors])
    # "keep" continues from the trained values: round 2 starts where round 1 ended, masked.
    assert not np.allclose(keep_snapshots[1][0][keep_snapshots[1][0] != 0], initial[keep_snapshots[1][0] != 0])
    similarity = tfprune.mask_similarity(pruned_reinit, pruned_keep)
    assert 0 < similarity["mean"]["jaccard"] <= 1


def test_mask_similarity_on_hand_made_masks(cnn):
    a = tfprune.prune(cnn, granularity="unstructured", schedule=tfprune.OneShot(0.5))
    b = tfprune.prune(cnn, granularity="unstructured", schedule=tfprune.OneShot(0.5))
    wrapper_a, wrapper_b = (tfprune.wrappers_of(m)[0] for m in (a, b))
    shape = wrapper_a.mask_array().shape  # conv2: (3, 3, 8, 16)
    mask_a, mask_b = np.ones(shape, np.float32), np.ones(shape, np.float32)
    mask_a[..., :4] = 0  # filters 0-3 empty in a
    mask_b[..., 2:8] = 0  # filters 2-7 empty in b
    wrapper_a.assign_mask(mask_a)
    wrapper_b.assign_mask(mask_b)
    result = tfprune.mask_similarity(a, b)[wrapper_a.layer.name]
    # kept: a = filters 4-15 (12), b = 0-1 and 8-15 (10); both = 8-15 (8); either = 0-1, 4-15 (14).
    assert result["jaccard"] == pytest.approx(8 / 14)
    assert result["empty_filters_a"] == pytest.approx(4 / 16) and result["empty_filters_b"] == pytest.approx(6 / 16)
    with pytest.raises(ValueError, match="tfprune.prune"):
        tfprune.mask_similarity(cnn, b)


def test_imp_arguments_are_checked():
    for kwargs, message in (({"rate": 1.5}, "rate"), ({"rounds": 0}, "rounds"), ({"rewind": "back"}, "rewind"), ({"rewind": "epoch"}, "rewind_epoch")):
        with pytest.raises(ValueError, match=message):
            tfprune.IterativePruning(**kwargs)


def test_presets_are_equal_steps_at_the_right_epochs():
    iplt = tfprune.iplt(0.6, pretrain_epochs=2, prune_epochs=3)
    assert iplt.epochs == [2, 3, 4] and iplt.targets == pytest.approx([0.2, 0.4, 0.6])
    assert iplt(step=0, epoch=1, epoch_start=True) is None and iplt(step=50, epoch=3, epoch_start=True) == pytest.approx(0.4)
    pfwt = tfprune.pfwt(0.5, every=3, events=2, first_epoch=1)
    assert pfwt.epochs == [1, 4] and pfwt.final_target == 0.5
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pfwt))
    assert restored.targets == pfwt.targets
    with pytest.raises(ValueError):
        tfprune.iplt(1.2)


def test_pfwt_rebuild_keeps_training_on_a_smaller_model():
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    x, y = x[:512], y[:512]
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    result = tfprune.fit_with_rebuilds(
        model,
        tfprune.pfwt(0.5, every=2, events=2, first_epoch=1),
        compile=lambda m: m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy"),
        x=x,
        y=y,
        epochs=5,
        batch_size=32,
        verbose=0,
    )
    losses = result.history["loss"]
    assert [r["epoch"] for r in result.rebuilds] == [1, 3]
    assert all(r["max_abs_diff"] <= 1e-5 for r in result.rebuilds)
    params = [r["params"] for r in result.rebuilds]
    assert params[0] < model.count_params() and params[1] < params[0]
    # Loss keeps falling after each rebuild: the epoch after a rebuild ends lower than it began.
    for rebuild in result.rebuilds:
        assert losses[rebuild["epoch"] + 1] < losses[rebuild["epoch"]]
    assert losses[-1] < losses[0]
    assert not tfprune.wrappers_of(result.model) and result.model.count_params() == params[-1]
    with pytest.raises(TypeError, match="epoch schedule"):
        tfprune.fit_with_rebuilds(model, tfprune.OneShot(0.5), compile=lambda m: None, x=x, y=y)


def test_pfwt_rebuild_carries_the_optimizer_so_training_goes_on_as_if_masked():
    """After a rebuild, Adam's step count and moments (cut like the weights) carry over, so
    the shrunk model trains exactly as the masked model would have; a fresh optimizer does not."""
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    x, y = x[:256], y[:256]

    def losses(**kwargs):
        keras.utils.set_random_seed(0)
        result = tfprune.fit_with_rebuilds(
            digits_cnn(),
            tfprune.pfwt(0.5, every=2, events=1, first_epoch=1),
            compile=lambda m: m.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy"),
            x=x, y=y, epochs=3, batch_size=32, verbose=0, shuffle=False, **kwargs,
        )  # fmt: skip
        return np.array(result.history["loss"]), result.rebuilds

    masked, _ = losses(rebuild=False)
    carried, rebuilds = losses(rebuild=True)
    fresh, _ = losses(rebuild=True, carry_optimizer=False)
    assert rebuilds[0]["slots_carried"] > 0
    np.testing.assert_allclose(carried, masked, atol=1e-4)
    assert np.abs(fresh[1:] - masked[1:]).max() > 1e-3
