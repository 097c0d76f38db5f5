"""`make demo` runs examples/prune_digits.py; here it runs with few epochs, as a user would."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_script_writes_table_json_and_plot(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "prune_digits.py"), "--out", str(tmp_path), "--epochs", "2", "--prune-epochs", "3"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "latency us" in result.stdout and "pruned (masked)" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    dense, pruned = results["rows"]
    assert pruned["nonzero_params"] < dense["nonzero_params"]
    assert pruned["effective_flops"] < dense["effective_flops"]
    assert all(row["max_abs_diff_vs_keras"] <= 1e-4 for row in results["rows"])
    assert results["history"]["sparsity"][-1] > 0.4
    assert (tmp_path / "pruning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
