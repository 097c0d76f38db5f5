"""Kill and resume: a pruning run SIGKILLed mid-epoch (twice, each time while writing a file)
and restarted with BackupAndRestore ends as an uninterrupted run does, and the files being
written survive whole (tests/resume_worker.py runs each process)."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfprune

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_kill_resume")

WORKER = pathlib.Path(__file__).with_name("resume_worker.py")


def start(out, die):
    out.mkdir(exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), die],
        stdout=subprocess.DEVNULL, stderr=(out / f"{die}.err").open("w"), env=env,
    )  # fmt: skip


def finish(process, out, die):
    process.wait(timeout=300)
    return process.returncode, (out / f"{die}.err").read_text()[-3000:]


def leftovers(out, name):
    return [p.name for p in out.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill_resume")
    straight, killed = root / "uninterrupted", root / "killed"
    reference = start(straight, "none")
    seen = {}
    for die in ("keras", "tflite"):
        code, err = finish(start(killed, die), killed, die)
        assert code == -9, f"expected SIGKILL, got {code}:\n{err}"
        seen[die] = {
            "leftovers": leftovers(killed, f"model.{die}"),
            "keras_loads": keras.saving.load_model(killed / "model.keras") is not None,
            "tflite_signature": tfprune.inspect_tflite(killed / "model.tflite")["signatures"],
        }
    code, err = finish(start(killed, "none"), killed, "none")
    assert code == 0, err
    code, err = finish(reference, straight, "none")
    assert code == 0, err
    return {
        "seen": seen,
        "killed": json.loads((killed / "result.json").read_text()),
        "straight": json.loads((straight / "result.json").read_text()),
        "killed_log": list(csv.DictReader((killed / "log.csv").open())),
        "straight_log": list(csv.DictReader((straight / "log.csv").open())),
    }


def test_a_killed_and_resumed_run_ends_as_an_uninterrupted_one(runs):
    killed, straight = runs["killed"], runs["straight"]
    assert killed["masks"] == straight["masks"]
    assert killed["steps"] == straight["steps"] == [32] * len(killed["steps"])  # 4 x 8 steps
    assert 0 < np.mean([1 - np.mean(m) for m in killed["masks"].values()]) <= 0.6
    for name, kernel in killed["kernels"].items():
        # Resuming repeats epoch 2 from the backup taken at its start, on the same batches in
        # the same order (shuffle=False): the same sums, up to how TensorFlow's CPU kernels
        # split them across threads, which moves float32 results by a few ulps.
        np.testing.assert_allclose(kernel, straight["kernels"][name], atol=1e-5)


def test_the_sparsity_log_is_the_uninterrupted_one(runs):
    killed, straight = runs["killed_log"], runs["straight_log"]
    assert [row["epoch"] for row in killed] == [row["epoch"] for row in straight]
    assert [row["epoch"] for row in straight] == ["0", "1", "2", "3"]
    assert [row["sparsity"] for row in killed] == [row["sparsity"] for row in straight]
    np.testing.assert_allclose(
        [float(row["loss"]) for row in killed], [float(row["loss"]) for row in straight], rtol=1e-5
    )


@pytest.mark.parametrize("kind", ["keras", "tflite"])
def test_a_file_being_written_when_the_process_dies_is_the_old_one(runs, kind):
    seen = runs["seen"][kind]
    # The process died mid-write: its temporary file is left beside the target...
    assert len(seen["leftovers"]) == 1
    # ...and the target is the whole file written before.
    assert seen["keras_loads"]
    assert "serving_default" in seen["tflite_signature"]
