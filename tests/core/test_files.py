"""Files tfprune writes get the permissions the umask gives, and are never half-written."""

import os
import stat

import keras
import numpy as np
import pytest

import tfprune
from tfprune.callbacks.trace import write_trace
from tfprune.core.files import write_atomically


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_exports_traces_and_plain_writes_follow_the_umask(umask, tmp_path):
    expected = 0o666 & ~umask  # 0o644 or 0o600, what open() would give
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    written = [
        tfprune.export_tflite(model, tmp_path / "model.tflite"),
        write_atomically(tmp_path / "notes.txt", "text"),
    ]
    for name in ("trace.csv", "trace.json"):
        write_trace(tmp_path / name, [{"step": 0, "decision": "advance"}])
        written.append(tmp_path / name)
    assert {path.name: oct(mode(path)) for path in written} == {
        path.name: oct(expected) for path in written
    }
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = write_atomically(tmp_path / "model.bin", b"old")

    def interrupted(source, target):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "x.bin", np.zeros(2).tobytes())
