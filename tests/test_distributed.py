"""Pruning under tf.distribute.MirroredStrategy on two logical CPUs matches one device.

The training runs in a fresh process (tests/mirrored_worker.py), because logical devices can
only be configured before TensorFlow initialises.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_distributed")

WORKER = pathlib.Path(__file__).with_name("mirrored_worker.py")


@pytest.fixture(scope="module")
def runs():
    result = subprocess.run(
        [sys.executable, str(WORKER), "plain", "adversarial", "aware"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        r["mode"]: r
        for r in map(
            json.loads, (line for line in result.stdout.splitlines() if line.startswith("{"))
        )
    }


@pytest.mark.parametrize("mode", ["plain", "adversarial", "aware"])
def test_mirrored_training_matches_one_device(runs, mode):
    run = runs[mode]
    assert run["replicas"] == 2
    assert run["pruned_fraction"] == pytest.approx(0.5)
    # The same filters are pruned, on both replicas, and the pruned weights are zero on each.
    assert run["masks_equal"] and run["replicas_equal"] and run["zeros_follow_masks"]
    # Same seed and global batch: the same weights and logged loss, up to summation order.
    assert run["kernel_diff"] < 1e-5
    assert run["loss_mirrored"] == pytest.approx(run["loss_single"], rel=1e-5)
