"""PruningCallback: masks on schedule, logs, resuming, and instability per event."""

import csv
import warnings

import keras
import numpy as np
import pytest
from helpers import small_cnn, weights_of

import tfprune
from tfprune.zoo import digits_cnn, load_digits

SCHEDULE = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=12, frequency=2)


def fresh_pruned(schedule=SCHEDULE, **kwargs):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(small_cnn(), schedule=schedule, **kwargs)
    pruned.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    return pruned


class ZeroChecker(keras.callbacks.Callback):
    """After every optimizer step, masked weights must be exactly zero."""

    def __init__(self):
        super().__init__()
        self.checked = 0

    def on_train_batch_end(self, batch, logs=None):
        for wrapper in tfprune.wrappers_of(self.model):
            pruned = wrapper.weight_array()[wrapper.mask_array() == 0]
            assert np.all(pruned == 0), f"{wrapper.layer.name} has nonzero pruned weights"
            self.checked += int(wrapper.mask_array().min() == 0)


def test_masks_follow_the_schedule_and_stay_zero_every_step(data):
    pruned = fresh_pruned()
    callback, checker = tfprune.PruningCallback(), ZeroChecker()
    pruned.fit(
        *data, batch_size=16, epochs=4, verbose=0, shuffle=False, callbacks=[callback, checker]
    )
    assert [e["step"] for e in callback.events] == [0, 2, 4, 6, 8, 10, 12]
    assert [e["target"] for e in callback.events] == [
        pytest.approx(SCHEDULE(s)) for s in (0, 2, 4, 6, 8, 10, 12)
    ]
    assert callback.events[-1]["sparsity"] == pytest.approx(0.5)
    assert checker.checked > 0
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))


def test_sparsity_goes_into_logs_csvlogger_and_history(data, tmp_path):
    pruned = fresh_pruned()
    log = tmp_path / "log.csv"
    history = pruned.fit(
        *data,
        batch_size=16,
        epochs=4,
        verbose=0,
        callbacks=[tfprune.PruningCallback(), keras.callbacks.CSVLogger(str(log))],
    )
    assert history.history["sparsity"][-1] == pytest.approx(0.5)
    assert history.history["sparsity/conv2"][0] < history.history["sparsity/conv2"][-1]
    rows = list(csv.DictReader(log.open()))
    assert {"sparsity", "sparsity/conv2", "sparsity/conv3"} <= set(rows[0])
    assert float(rows[-1]["sparsity"]) == pytest.approx(0.5)


def test_flops_target_is_logged(data):
    pruned = fresh_pruned(schedule=tfprune.OneShot(0.3), target="flops")
    history = pruned.fit(
        *data, batch_size=16, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    assert history.history["flops_removed"][-1] == pytest.approx(0.3, abs=0.05)


def test_steps_per_execution_does_not_skip_updates(data):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(small_cnn(), schedule=tfprune.OneShot(0.5, step=3))
    pruned.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=2)
    callback = tfprune.PruningCallback()
    pruned.fit(*data, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    assert len(callback.events) == 1 and callback.events[0]["target"] == 0.5
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))


def test_iterative_schedule_steps_at_epoch_starts(data):
    pruned = fresh_pruned(schedule=tfprune.Iterative([0.25, 0.5], epochs=[1, 2]))
    callback = tfprune.PruningCallback()
    history = pruned.fit(*data, batch_size=16, epochs=3, verbose=0, callbacks=[callback])
    assert [(e["epoch"], e["step"]) for e in callback.events] == [(1, 4), (2, 8)]
    assert history.history["sparsity"] == [0.0, 0.25, 0.5]


class StopAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_the_same_step_masks_and_recalibrated_statistics(data, tmp_path):
    fit = dict(batch_size=16, epochs=4, verbose=0, shuffle=False)
    calibration = data[0][:32]
    straight = fresh_pruned()
    straight.fit(*data, callbacks=[tfprune.PruningCallback(recalibrate=calibration)], **fit)

    resumed = fresh_pruned()
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        resumed.fit(
            *data,
            callbacks=[
                tfprune.PruningCallback(recalibrate=calibration),
                keras.callbacks.BackupAndRestore(backup),
                StopAtEpoch(2),
            ],
            **fit,
        )
    # A new process would rebuild the model; a fresh copy with untrained weights stands in.
    restarted = fresh_pruned()
    callback = tfprune.PruningCallback(recalibrate=calibration)
    restarted.fit(*data, callbacks=[callback, keras.callbacks.BackupAndRestore(backup)], **fit)
    assert callback.events[0]["step"] == 8  # resumed at epoch 2, not from step 0
    assert callback.recalibrations == len(callback.events) > 0
    assert int(restarted.optimizer.iterations) == int(straight.optimizer.iterations) == 16
    for a, b in zip(tfprune.wrappers_of(straight), tfprune.wrappers_of(restarted)):
        np.testing.assert_array_equal(a.mask_array(), b.mask_array())
    # BatchNormalization's moving statistics included: recalibrated at the same updates.
    for a, b in zip(weights_of(straight), weights_of(restarted)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_keras_file_round_trip_in_the_middle_of_pruning(data, tmp_path):
    fit = dict(batch_size=16, verbose=0, shuffle=False)
    model = fresh_pruned()
    model.fit(*data, epochs=2, callbacks=[tfprune.PruningCallback()], **fit)
    path = tmp_path / "mid.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert int(loaded.optimizer.iterations) == 8
    for a, b in zip(tfprune.wrappers_of(model), tfprune.wrappers_of(loaded)):
        np.testing.assert_array_equal(a.mask_array(), b.mask_array())
        assert (
            b.schedule == SCHEDULE
            and str(b.granularity) == "filter"
            and b.criterion is tfprune.criteria.l1
        )
        assert 0 < b.sparsity() < 0.5
    np.testing.assert_allclose(loaded(data[0]), model(data[0]), atol=1e-6)

    callbacks = [tfprune.PruningCallback()]
    model.fit(*data, epochs=2, callbacks=[tfprune.PruningCallback()], **fit)
    loaded.fit(*data, epochs=2, callbacks=callbacks, **fit)
    assert callbacks[0].events[0]["step"] == 8
    for a, b in zip(tfprune.wrappers_of(model), tfprune.wrappers_of(loaded)):
        np.testing.assert_array_equal(a.mask_array(), b.mask_array())
        assert b.sparsity() == pytest.approx(0.5)


def test_callback_on_a_model_that_was_never_pruned(cnn, data):
    cnn.compile("sgd", "sparse_categorical_crossentropy")
    before = weights_of(cnn)
    with pytest.raises(ValueError, match="no PruneWrapper layers.*tfprune.prune"):
        cnn.fit(*data, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    for a, b in zip(before, weights_of(cnn)):
        np.testing.assert_array_equal(a, b)


def test_fresh_optimizer_for_fine_tuning_never_regrows_masks(data):
    model = fresh_pruned()
    model.fit(*data, batch_size=16, epochs=4, verbose=0, callbacks=[tfprune.PruningCallback()])
    masks = [w.mask_array() for w in tfprune.wrappers_of(model)]
    model.compile(
        keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy"
    )  # iterations restart at 0
    model.fit(
        *data,
        batch_size=16,
        epochs=1,
        verbose=0,
        callbacks=[tfprune.PruningCallback(), ZeroChecker()],
    )
    for mask, wrapper in zip(masks, tfprune.wrappers_of(model)):
        np.testing.assert_array_equal(mask, wrapper.mask_array())


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


def test_schedule_goes_on_after_load_without_compile_and_a_fresh_optimizer(data, tmp_path):
    fit = dict(batch_size=16, verbose=0, shuffle=False)
    model = fresh_pruned()
    model.fit(*data, epochs=2, callbacks=[tfprune.PruningCallback()], **fit)  # steps 0-7
    assert [w.steps_seen() for w in tfprune.wrappers_of(model)] == [8, 8, 8]
    model.save(tmp_path / "mid.keras")
    loaded = keras.saving.load_model(tmp_path / "mid.keras", compile=False)
    loaded.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")  # iterations 0
    callback = tfprune.PruningCallback()
    loaded.fit(*data, epochs=2, callbacks=[callback], **fit)
    assert [e["step"] for e in callback.events] == [8, 10, 12]  # where the schedule stopped
    assert [e["target"] for e in callback.events] == [
        pytest.approx(SCHEDULE(s)) for s in (8, 10, 12)
    ]
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(loaded))
    assert tfprune.wrappers_of(loaded)[0].steps_seen() == 16


def test_restart_schedule_starts_over_and_masks_still_never_regrow(data):
    model = fresh_pruned(schedule=tfprune.OneShot(0.25, step=1))
    model.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    masks = [w.mask_array() for w in tfprune.wrappers_of(model)]
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    kept_going, restarted = (
        tfprune.PruningCallback(),
        tfprune.PruningCallback(restart_schedule=True),
    )
    model.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[kept_going])
    assert kept_going.events == []  # step 1 is long past
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    model.fit(*data, batch_size=16, epochs=1, verbose=0, callbacks=[restarted])
    assert [e["step"] for e in restarted.events] == [1]
    for mask, wrapper in zip(masks, tfprune.wrappers_of(model)):
        np.testing.assert_array_equal(mask, wrapper.mask_array())  # the same target: no change


def test_a_final_cost_target_missed_by_more_than_two_percent_warns():
    # fc's units go 8 at a time (half its FLOPs and its head's): 0.3 of the FLOPs is either
    # 0 or 0.5 away, and the callback says so when the schedule reaches it.
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, name="fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
    pruned = tfprune.prune(
        model, schedule=tfprune.OneShot(0.3), target="flops", round_to=8, ranking="global"
    )
    pruned.compile("sgd", "mse")
    x, y = np.ones((4, 8), np.float32), np.zeros((4, 2), np.float32)
    with pytest.warns(UserWarning, match="final flops target 0.300 was reached as 0.500.*local"):
        pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    exact = tfprune.prune(model, schedule=tfprune.OneShot(0.5), target="flops", round_to=8)
    exact.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exact.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    assert not [w for w in caught if "final flops target" in str(w.message)]


def test_batchnorm_is_recalibrated_after_every_mask_update_and_the_instability_too():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits(size=16)
    model = digits_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=5, batch_size=64, verbose=0)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)
    pruned = tfprune.prune(model, schedule=schedule, protect=None)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    callback = tfprune.PruningCallback(recalibrate=x_train[:256], validation_data=(x_test, y_test))
    pruned.fit(x_train[:320], y_train[:320], batch_size=64, epochs=1, verbose=0,
               callbacks=[callback])  # fmt: skip
    updates = [e for e in callback.events if e["target"] > 0]
    assert callback.recalibrations == len(callback.events) >= 2
    assert all(e["recalibrated"] for e in callback.events)
    # Stale statistics made the update look worse than it is.
    last = updates[-1]
    assert last["instability_recalibrated"] < last["instability"]
    table = str(tfprune.summary(pruned, events=callback.events))
    assert "recalibrated" in table


def test_recalibration_on_training_batches_equals_recalibration_on_their_inputs(data):
    import tensorflow as tf

    fit = dict(batch_size=16, epochs=2, verbose=0, shuffle=False)
    batches = tf.data.Dataset.from_tensor_slices(data).batch(16).take(2)  # (x, y) batches
    runs = []
    for recalibrate in (batches, data[0][:32]):
        pruned = fresh_pruned()
        callback = tfprune.PruningCallback(recalibrate=recalibrate)
        pruned.fit(*data, callbacks=[callback], **fit)
        assert callback.recalibrations == len(callback.events) > 0
        runs.append(weights_of(pruned))
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, atol=1e-6)
