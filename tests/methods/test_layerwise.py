"""Layer-wise rates: BPPS's loss thresholds and PwC's accuracy floors."""

import keras
import numpy as np
import pytest

import tfprune


def test_bpps_meets_its_flops_target_and_feeds_the_callback(trained_digits):
    model, data = trained_digits
    found = tfprune.methods.layerwise_rates(model, data, target_flops=0.4, verbose=False)
    assert found.flops_removed == pytest.approx(0.4, abs=0.02)
    assert (
        set(found.rates) == {"conv1", "conv2", "conv3"} and len(set(found.rates.values())) > 1
    )  # not uniform
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=5)
    pruned = tfprune.prune(model, schedule=schedule, rates=found.rates)
    tfprune.apply_target(pruned, 0.5)  # the schedule's final target: every layer at its own rate
    for wrapper in tfprune.wrappers_of(pruned):
        assert wrapper.sparsity() == pytest.approx(found.rates[wrapper.layer.name], abs=1e-6)
    removed = 1 - tfprune.count_flops(tfprune.shrink(pruned)) / tfprune.count_flops(model)
    assert removed == pytest.approx(found.flops_removed, abs=1e-6)
    with pytest.raises(ValueError, match="target_flops"):
        tfprune.methods.layerwise_rates(model, data, target_flops=1.2)
    with pytest.raises(ValueError, match="rates: 'conv9'"):
        tfprune.prune(model, schedule=schedule, rates={"conv9": 0.5})


def test_bpps_rates_beat_uniform_rates_on_calibration_loss(trained_digits):
    model, data = trained_digits
    found = tfprune.methods.layerwise_rates(model, data, target_flops=0.4, verbose=False)
    x, y = data

    def loss(pruned):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, pruned(x))))

    bpps = tfprune.prune(model, schedule=tfprune.OneShot(0.5), rates=found.rates)
    tfprune.apply_target(bpps, 0.5)
    uniform = tfprune.prune(model, schedule=tfprune.OneShot(0.4), target="flops")
    tfprune.apply_target(uniform, 0.4)
    assert loss(bpps) <= loss(uniform) + 1e-6


@pytest.mark.slow  # 20 s; PwC itself is covered quickly by tests/methods/test_compensation.py
def test_compensated_rates_respect_the_accuracy_floor(trained_digits):
    model, data = trained_digits
    found = tfprune.methods.compensated_rates(model, data, floor=(0.98, 0.95), verbose=False)
    # The first convolution is guarded by protect="auto": at most half its filters go.
    assert set(found.rates) == {"conv1", "conv2", "conv3"} and found.flops_removed > 0.1
    assert found.rates["conv1"] <= 0.5
    x, y = data
    base = np.mean(np.argmax(model.predict(x, verbose=0), 1) == y)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), rates=found.rates)
    tfprune.apply_target(pruned, 0.5)
    compensated = tfprune.methods.compensate(model, pruned, x)
    accuracy = np.mean(np.argmax(compensated.predict(x, verbose=0), 1) == y)
    assert accuracy >= 0.95 * base - 1e-9  # the last layer's floor holds for the whole model
    assert found.loss_increase == pytest.approx(base - accuracy, abs=1e-6)
    with pytest.raises(ValueError, match="floor"):
        tfprune.methods.compensated_rates(model, data, floor=(0.9, 0.95))
