"""`make demo` runs `tfprune demo`; here it runs with few epochs, as a user would, through the
example script (the same code)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


# About a minute: `make demo` runs the same job in full, and the fresh-clone check runs both.
@pytest.mark.slow
def test_demo_script_writes_table_json_and_plot(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "prune_digits.py"),
            "--out",
            str(tmp_path),
            "--epochs",
            "2",
            "--prune-epochs",
            "3",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "latency us" in result.stdout and "pruned + shrunk" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    dense, masked, shrunk, robust, half, quantized = results["rows"]
    assert robust["flops"] < dense["flops"] and 0 <= robust["pgd_accuracy"] <= 1
    assert results["robust_schedule"] and (tmp_path / "robust_trace.csv").exists()
    assert (tmp_path / "robust_schedule.png").read_bytes()[:4] == b"\x89PNG"
    assert masked["nonzero_params"] < dense["nonzero_params"]
    assert shrunk["params"] < dense["params"] / 2 and shrunk["flops"] < dense["flops"] / 2
    assert shrunk["file_bytes"] < dense["file_bytes"]
    assert shrunk["keras_accuracy"] == masked["keras_accuracy"]
    assert results["shrink_max_abs_diff"] <= 1e-5
    assert all(row["max_abs_diff_vs_keras"] <= 1e-4 for row in results["rows"][:-1])
    # int8 of the shrunk model: a quarter of the float file, accuracy within 3 points.
    assert quantized["file_bytes"] < shrunk["file_bytes"] / 2
    assert abs(quantized["tflite_accuracy"] - shrunk["tflite_accuracy"]) <= 0.03
    assert results["history"]["sparsity"][-1] > 0.4
    assert (tmp_path / "pruning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
