"""The adversarial-aware schedule: advance, hold, roll back, forced end, resume, trace."""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune.zoo import digits_cnn


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
        (x_test, y_test),
        tfprune.FGSM(0.05),
        tolerance=0.02,
        hard_limit=0.05,
        trace_path=trace,
        measure=Scripted(values),
        **{"noise_z": 0.0, **kwargs},
    )
    history = pruned.fit(
        x[:320], y[:320], batch_size=32, epochs=epochs, verbose=0, callbacks=[callback]
    )
    return pruned, callback, history


def test_schedule_advances_holds_rolls_back_and_is_forced_at_the_end(digits, tmp_path):
    # planned updates at steps 2, 4, 6, 8; each decision probes once, and once more after a
    # mask change (or a rollback).
    values = [
        (0.9, 0.60),
        (0.85, 0.55),  # step 2: first probe is the reference -> advance; after: robust 0.55
        (0.9, 0.57),  # step 4: drop 0.60 - 0.57 = 0.03 > tolerance -> hold
        (0.9, 0.50),
        (0.9, 0.59),  # step 6: drop 0.10 > hard limit -> rollback, re-probe
        (0.9, 0.45),
        (
            0.88,
            0.44,
        ),  # step 8: drop 0.15, rollback impossible (none left) -> hold, but final -> forced
    ]
    pruned, callback, history = run_schedule(
        values, digits, trace=tmp_path / "trace.csv", rollback=True
    )
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
    assert (
        history.history["pruning_holds"][-1] == 1.0
        and history.history["pruning_rollbacks"][-1] == 1.0
    )
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
    callback = tfprune.AdversarialAwarePruning(
        (x_test, y_test), tfprune.FGSM(0.05), measure=Scripted(values), rollback=True
    )
    with pytest.warns(UserWarning, match="short of the schedule's final"):
        pruned.fit(
            x[:160], y[:160], batch_size=32, epochs=1, verbose=0, callbacks=[callback, Capture()]
        )
    assert [e["decision"] for e in callback.events] == ["advance", "rollback", "incomplete"]
    assert any(m.min() == 0 for m in Capture.masks)
    for mask, wrapper in zip(before, tfprune.wrappers_of(pruned)):
        np.testing.assert_array_equal(mask, wrapper.mask_array())  # back to no pruning


def test_unfinished_budget_warns_and_records_it(digits, tmp_path):
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=2, end_step=1000, frequency=2)
    with pytest.warns(UserWarning, match="short of the schedule's final 0.500"):
        _, callback, _ = run_schedule(
            [(0.9, 0.6)] * 40, digits, schedule=schedule, trace=tmp_path / "t.json"
        )
    assert callback.events[-1]["decision"] == "incomplete"
    assert json.loads((tmp_path / "t.json").read_text())[-1]["decision"] == "incomplete"


def test_resume_restores_the_schedule_state(digits, tmp_path):
    x, y, x_test, y_test = digits
    schedule = tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=18, frequency=2)
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(digits_cnn(), schedule=schedule)
    pruned.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    first = tfprune.AdversarialAwarePruning(
        (x_test, y_test),
        tfprune.FGSM(0.05),
        measure=Scripted([(0.9, 0.7), (0.9, 0.65)]),
        noise_z=0.0,
    )
    with pytest.warns(UserWarning):  # each short fit ends before the schedule does
        pruned.fit(
            x[:96], y[:96], batch_size=32, epochs=1, verbose=0, callbacks=[first]
        )  # advance at step 2
    assert first.events[0]["decision"] == "advance"
    pruned.save(tmp_path / "mid.keras")
    loaded = keras.saving.load_model(tmp_path / "mid.keras")
    second = tfprune.AdversarialAwarePruning(
        (x_test, y_test), tfprune.FGSM(0.05), measure=Scripted([(0.9, 0.62)]), noise_z=0.0
    )
    with pytest.warns(UserWarning):
        loaded.fit(
            x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[second]
        )  # step 3: nothing planned
        loaded.fit(
            x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[second]
        )  # step 4: planned
    # The reference restored from the file is 0.65 (measured after the step-2 change), so
    # 0.62 is a drop of 0.03 > tolerance: hold. A fresh state would have taken 0.62 as the
    # reference and advanced.
    decisions = [(e["step"], e["decision"]) for e in second.events if e["decision"] != "incomplete"]
    assert decisions == [(4, "hold")]
    held = next(e for e in second.events if e["decision"] == "hold")
    assert held["accepted_target"] == pytest.approx(
        first.events[0]["accepted_target"], rel=1e-6
    )  # float32 state
    assert held["accepted_target"] > 0


def test_schedule_bad_input(digits):
    _, _, x_test, y_test = digits
    with pytest.raises(ValueError, match="probe_data"):
        tfprune.AdversarialAwarePruning(None, tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="probe_data"):
        tfprune.AdversarialAwarePruning((x_test[:0], y_test[:0]), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="hard_limit"):
        tfprune.AdversarialAwarePruning(
            (x_test, y_test), tfprune.FGSM(0.1), tolerance=0.1, hard_limit=0.05
        )
    with pytest.raises(TypeError, match="attack"):
        tfprune.AdversarialAwarePruning((x_test, y_test), "pgd")
    pruned = tfprune.prune(digits_cnn(), schedule=0.5)
    pruned.compile("sgd", "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning((x_test, y_test + 10), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="labels must lie"):
        pruned.fit(x_test, y_test, epochs=1, verbose=0, callbacks=[callback])


def test_a_drop_within_the_probes_noise_advances_and_a_larger_one_holds(digits):
    x_test = digits[2]
    # At a 0.60 reference, 2 standard errors of a difference of two probes on these examples:
    noise = 2 * np.sqrt(2 * 0.6 * 0.4 / len(x_test))
    assert 0.05 < noise < 0.2  # larger than the tolerance (0.02) and the hard limit (0.05)
    lower = 0.60 - 0.9 * noise  # the reference once step 4 advanced
    noise_lower = 2 * np.sqrt(2 * lower * (1 - lower) / len(x_test))
    values = [
        (0.9, 0.60),
        (0.9, 0.60),  # step 2: the reference -> advance
        (0.9, 0.60 - 0.9 * noise),  # step 4: beyond the hard limit, within noise -> advance
        (0.9, 0.60),
        (0.9, lower - 1.2 * noise_lower),  # step 6: beyond noise of the new reference -> rollback
        (0.9, 0.60),
        (0.9, 0.60),  # step 8: advance
        (0.9, 0.60),
    ]
    _, callback, _ = run_schedule(values, digits, noise_z=2.0, rollback=True)
    decisions = [e["decision"] for e in callback.events]
    assert decisions == ["advance", "advance", "rollback", "advance"]
    assert callback.events[0]["noise"] == pytest.approx(noise)  # at the 0.60 reference
    assert callback.probe_budget["probes"] == 8


def test_hold_only_is_the_default_and_a_smoothed_reference(digits):
    values = [
        (0.9, 0.60),
        (0.9, 0.60),  # step 2: reference 0.60 -> advance
        (0.9, 0.70),  # step 4: better -> advance; reference 0.5 * 0.60 + 0.5 * 0.70 = 0.65
        (0.9, 0.70),
        (0.9, 0.55),  # step 6: drop 0.10 from the smoothed 0.65 -> hold, not rollback
        (0.9, 0.62),  # step 8: drop 0.03 > tolerance -> hold; final -> forced
        (0.9, 0.62),
    ]
    _, callback, history = run_schedule(values, digits, smoothing=0.5)
    decisions = [e["decision"] for e in callback.events]
    assert decisions[:3] == ["advance", "advance", "hold"]
    assert decisions[3].startswith("hold, then advance (forced")
    assert callback.events[1]["reference"] == pytest.approx(0.65)
    assert history.history["probe_seconds"][-1] >= 0.0


def test_resume_keeps_the_smoothed_reference(digits, tmp_path):
    values = [(0.9, 0.60), (0.9, 0.60)] + [(0.9, 0.70)] * 6
    schedule = tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=12, frequency=2)
    with pytest.warns(UserWarning):  # the fit ends before the schedule does
        pruned, callback, _ = run_schedule(values, digits, smoothing=0.5, schedule=schedule)
    references = [e["reference"] for e in callback.events if e["decision"] == "advance"]
    assert references == pytest.approx([0.6, 0.65, 0.675, 0.6875])
    tfprune.save_model(pruned, tmp_path / "paused.keras")
    restored = keras.saving.load_model(tmp_path / "paused.keras")
    state = tfprune.wrappers_of(restored)[0].schedule_values()
    assert state["paced"] == 1.0 and state["reference"] == pytest.approx(0.6875)


def survivals(n, robust, lost=(), gained=()):
    """0/1 per-example survivals: the first `robust` examples survive, then `lost` of those
    fail and the examples in `gained` survive too."""
    flags = np.zeros(n)
    flags[:robust] = 1
    flags[list(lost)] = 0
    flags[list(gained)] = 1
    return flags


def test_a_paired_drop_on_the_same_examples_counts_where_independent_accuracies_do_not(digits):
    n = len(digits[2])
    reference = survivals(n, int(0.6 * n))
    lost = 8
    consistent = survivals(n, int(0.6 * n), lost=range(lost))  # 8 robust examples now fail
    assert 0.05 < lost / n < 2 * np.sqrt(2 * 0.6 * 0.4 / n)  # past the hard limit, within noise
    values = [(0.9, reference)] * 2 + [(0.9, consistent)] + [(0.9, reference)] * 8
    _, paired, _ = run_schedule(values, digits, noise_z=2.0, rollback=True)
    _, independent, _ = run_schedule(
        values, digits, noise_z=2.0, comparison="independent", rollback=True
    )
    assert [e["decision"] for e in paired.events][:2] == ["advance", "rollback"]
    assert [e["decision"] for e in independent.events][:2] == ["advance", "advance"]
    differences = reference - consistent
    expected = 2 * np.std(differences, ddof=1) / np.sqrt(n)
    assert paired.events[1]["drop"] == pytest.approx(lost / n)
    assert paired.events[1]["noise"] == pytest.approx(expected)


def test_a_paired_drop_made_of_flips_both_ways_is_noise(digits):
    n = len(digits[2])
    robust = int(0.6 * n)
    reference = survivals(n, robust)
    # 30 robust examples fail and 22 others survive: the same net drop of 8 examples.
    flipped = survivals(n, robust, lost=range(30), gained=range(robust, robust + 22))
    values = [(0.9, reference)] * 2 + [(0.9, flipped)] * 2 + [(0.9, reference)] * 8
    _, callback, _ = run_schedule(values, digits, noise_z=2.0)
    assert [e["decision"] for e in callback.events][:2] == ["advance", "advance"]
    assert callback.events[1]["drop"] == pytest.approx(8 / n)
    assert callback.events[1]["noise"] > 8 / n > 0.05


def test_comparison_must_be_paired_or_independent(digits):
    x_test, y_test = digits[2], digits[3]
    with pytest.raises(ValueError, match="comparison must be 'paired' or 'independent'"):
        tfprune.AdversarialAwarePruning((x_test, y_test), tfprune.FGSM(0.1), comparison="mcnemar")


def test_a_data_dependent_criterion_gets_its_calibration_data(digits):
    x, y, x_test, y_test = digits
    schedule = tfprune.PolynomialDecay(0.1, 0.5, begin_step=2, end_step=4, frequency=2)

    def fit(**data):
        keras.utils.set_random_seed(0)
        pruned = tfprune.prune(digits_cnn(), schedule=schedule, criterion="robust_taylor")
        pruned.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
        callback = tfprune.AdversarialAwarePruning(
            (x_test, y_test), tfprune.FGSM(0.05), measure=Scripted([(0.9, 0.6)] * 4), **data
        )
        pruned.fit(x[:160], y[:160], batch_size=32, verbose=0, callbacks=[callback])
        return pruned

    with pytest.raises(ValueError, match="calibration data"):
        fit()
    pruned = fit(data=(x[:64], y[:64]))
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))


def test_every_probe_recalibrates_batchnorm_and_advances_record_both_instabilities(
    digits, trained_cnn, tmp_path
):
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=4, frequency=2)
    pruned = tfprune.prune(trained_cnn, schedule=schedule, protect=None)
    pruned.compile(keras.optimizers.SGD(0.001), "sparse_categorical_crossentropy")
    callback = tfprune.AdversarialAwarePruning(
        (x_test[:100], y_test[:100]),
        tfprune.FGSM(0.05),
        tolerance=1.0,  # always advance: the test is about what each probe measures
        hard_limit=1.0,
        recalibrate=x[:256],
        trace_path=tmp_path / "trace.csv",
    )
    pruned.fit(x[:320], y[:320], batch_size=64, epochs=1, verbose=0, callbacks=[callback])
    assert callback.recalibrations == callback.probe_budget["probes"] >= 4
    advanced = [e for e in callback.events if e["decision"] == "advance"]
    assert len(advanced) >= 2
    # Stale statistics made the last update look worse than it is.
    last = advanced[-1]
    assert last["instability_recalibrated"] < last["instability"]
    header = (tmp_path / "trace.csv").read_text().splitlines()[0]
    assert "instability_recalibrated" in header
