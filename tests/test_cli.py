"""The `tfprune` command on real files: in-process for speed, and once through the installed
console script."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from helpers import small_cnn

import tfprune
from tfprune import cli

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_cli")

SCRIPT = pathlib.Path(sys.executable).parent / "tfprune"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = tfprune.prune(small_cnn(), schedule=tfprune.OneShot(0.5))
    tfprune.apply_target(model, 0.5)
    model.save(folder / "pruned.keras")
    tfprune.export_tflite(model, folder / "m.tflite")
    np.savez(
        folder / "calibration.npz",
        np.random.default_rng(0).random((40, 12, 12, 1), dtype=np.float32),
    )
    (folder / "notes.tflite").write_text("not a model")
    (folder / "broken.keras").write_bytes((folder / "pruned.keras").read_bytes()[:300])
    return folder


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_convert_inspect_bench_and_summary(files, capsys):
    status, out, _ = run(
        capsys, "convert", files / "pruned.keras", files / "auto.tflite", "--sparse", "auto"
    )
    assert status == 0 and "sparse storage (auto)" in out and (files / "auto.tflite").exists()
    status, out, _ = run(
        capsys,
        "convert",
        files / "pruned.keras",
        files / "q.tflite",
        "--int8",
        "--calibration",
        files / "calibration.npz",
    )
    assert status == 0 and "INT8" in {
        t["type"] for t in tfprune.inspect_tflite(files / "q.tflite")["tensors"]
    }

    status, out, _ = run(capsys, "inspect", files / "m.tflite")
    assert status == 0
    assert "signature 'serving_default'" in out and "input  image: float32 [-1, 12, 12, 1]" in out
    assert "CONV_2D" in out and "% zeros" in out and "MFLOPs" in out
    status, out, _ = run(capsys, "inspect", files / "m.tflite", "--json")
    assert json.loads(out)["flops"] == tfprune.inspect_tflite(files / "m.tflite")["flops"]

    status, out, _ = run(
        capsys, "bench", files / "m.tflite", files / "q.tflite", "--runs", "20", "--warmup", "2"
    )
    assert (
        status == 0
        and out.count("median") == 2
        and "side by side" in out
        and "x (1 thread(s))" in out
    )

    status, out, _ = run(capsys, "summary", files / "pruned.keras")
    assert status == 0 and "conv2" in out and "sparsity" in out


@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["inspect", "{d}/missing.tflite"], 1, "no such file"),
        (["inspect", "{d}/notes.tflite"], 1, "not a TFLite flatbuffer"),
        (["bench", "{d}/notes.tflite"], 1, "not a TFLite flatbuffer"),
        (["summary", "{d}/broken.keras"], 1, "corrupt or truncated"),
        (["summary", "{d}/notes.tflite"], 1, "expected a Keras 3 '.keras' file"),
        (["convert", "{d}/pruned.keras", "{d}/x.tflite", "--int8"], 1, "--calibration"),
        (
            [
                "convert",
                "{d}/pruned.keras",
                "{d}/x.tflite",
                "--int8",
                "--calibration",
                "{d}/notes.tflite",
            ],
            1,
            "npz",
        ),
        (["convert", "{d}/pruned.keras", "{d}/x.txt"], 1, "should end in .tflite"),
        (
            ["convert", "{d}/pruned.keras", "{d}/x.tflite", "--sparse", "sometimes"],
            2,
            "invalid choice",
        ),
        (["bench", "{d}/m.tflite", "--runs", "0"], 2, ">= 1"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(files, capsys, argv, status, message):
    argv = [a.format(d=files) for a in argv]
    try:
        got = cli.main(argv)
    except SystemExit as exit_:  # argparse exits for bad flags
        got = exit_.code
    err = capsys.readouterr().err
    assert got == status
    assert len(err.strip().splitlines()) == 1 and message in err and "error" in err
    assert not (files / "x.tflite").exists() and not (files / "x.txt").exists()


def test_console_script_runs_and_fails_cleanly(files):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    good = subprocess.run(
        [SCRIPT, "inspect", files / "m.tflite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert good.returncode == 0 and "FULLY_CONNECTED" in good.stdout
    bad = subprocess.run(
        [SCRIPT, "inspect", files / "missing.tflite"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    # TensorFlow's start-up notices are silenced by the entry point: the error is all there is.
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        f"tfprune inspect: error: no such file: {files / 'missing.tflite'}"
    ]
