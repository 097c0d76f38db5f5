"""Schedules: the formulas, serialization and bad arguments."""

import keras
import pytest

import tfprune


def test_polynomial_decay_follows_the_cubic_formula():
    s = tfprune.PolynomialDecay(0.1, 0.6, begin_step=100, end_step=300, frequency=50)
    assert s(99) is None and s(301) is None and s(120) is None
    for step in (100, 150, 200, 250, 300):
        expected = 0.6 + (0.1 - 0.6) * (1 - (step - 100) / 200) ** 3
        assert s(step) == pytest.approx(expected)
    assert s(300) == pytest.approx(0.6)


def test_polynomial_decay_always_applies_its_end_step():
    s = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=4)
    assert [step for step in range(12) if s(step) is not None] == [0, 4, 8, 10]
    assert s(10) == 0.5


def test_constant_one_shot_and_iterative():
    c = tfprune.ConstantSparsity(0.4, begin_step=10, end_step=30, frequency=10)
    assert [step for step in range(40) if c(step) is not None] == [10, 20, 30]
    o = tfprune.OneShot(0.7, step=5)
    assert [step for step in range(10) if o(step) is not None] == [5]
    it = tfprune.Iterative([0.2, 0.5], epochs=[1, 3])
    assert it(0, epoch=1, epoch_start=True) == 0.2
    assert it(0, epoch=1, epoch_start=False) is None
    assert it(0, epoch=2, epoch_start=True) is None
    assert it(0, epoch=3, epoch_start=True) == 0.5
    assert (c.final_target, o.final_target, it.final_target) == (0.4, 0.7, 0.5)


@pytest.mark.parametrize(
    "schedule",
    [
        tfprune.PolynomialDecay(0.0, 0.5, 0, 300, frequency=25),
        tfprune.ConstantSparsity(0.3),
        tfprune.Iterative([0.1, 0.2], [0, 2]),
        tfprune.OneShot(0.5, step=7),
    ],
)
def test_schedules_round_trip_through_keras_serialization(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule) and restored == schedule


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: tfprune.PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity must be in"),
        (lambda: tfprune.PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity must be in"),
        (lambda: tfprune.PolynomialDecay(0.0, 0.5, 100, 50), "end_step .* begin_step"),
        (lambda: tfprune.ConstantSparsity(0.5, begin_step=10, end_step=5), "end_step"),
        (lambda: tfprune.ConstantSparsity(1.5), "target must be in"),
        (lambda: tfprune.PolynomialDecay(0.0, 0.5, 0, 10, frequency=0), "frequency"),
        (lambda: tfprune.Iterative([0.5, 0.2], [0, 1]), "must not decrease"),
        (lambda: tfprune.Iterative([0.1, 0.2], [2, 1]), "strictly increase"),
        (lambda: tfprune.Iterative([0.1], [0, 1]), "one epoch per target"),
    ],
)
def test_bad_schedules_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_types_raise_type_errors():
    with pytest.raises(TypeError, match="number"):
        tfprune.ConstantSparsity("half")
    with pytest.raises(TypeError, match="integer"):
        tfprune.OneShot(0.5, step=1.5)
