"""The public API: every name in tfprune.__all__ exists, and the result types are what
the functions return."""

import numpy as np
import pytest
from helpers import small_cnn

import tfprune


def test_every_public_name_exists():
    for name in tfprune.__all__:
        assert hasattr(tfprune, name), name


def test_result_and_base_types(tmp_path):
    model = small_cnn()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    assert isinstance(tfprune.apply_target(pruned, 0.5), tfprune.PruningPlan)
    assert isinstance(tfprune.summary(pruned), tfprune.Summary)
    assert isinstance(tfprune.OneShot(0.5), tfprune.PruningSchedule)
    assert isinstance(tfprune.granularity.get("2:4"), tfprune.Granularity)
    assert isinstance(tfprune.PGD(0.1), tfprune.Attack) and isinstance(
        tfprune.CutoffScale(), tfprune.Attack
    )
    path = tfprune.export_tflite(tfprune.strip(pruned), tmp_path / "m.tflite")
    assert isinstance(tfprune.benchmark_tflite(path, runs=3, warmup=1), tfprune.Latency)
    with pytest.raises(tfprune.TFLiteNotFoundError):
        tfprune.load_interpreter(tmp_path / "nope.tflite")
    x = np.random.default_rng(0).random((32, 12, 12, 1), dtype=np.float32)
    found = tfprune.layerwise_rates(model, (x, np.arange(32) % 4), target_flops=0.3, verbose=False)
    assert isinstance(found, tfprune.LayerwiseRates) and set(found.rates) == {
        "conv1",
        "conv2",
        "conv3",
    }
