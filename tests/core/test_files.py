"""Files tfprune writes get the permissions the umask gives, and are never half-written."""

import os
import stat

import keras
import numpy as np
import pytest

import tfprune
from tfprune.callbacks.trace import write_trace
from tfprune.core.files import current_umask, write_atomically


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


def test_save_model_replaces_the_file_whole(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tfprune.save_model(model, tmp_path / "model.keras")
    x = np.ones((1, 4), "float32")
    np.testing.assert_allclose(keras.saving.load_model(path)(x), model(x))
    before = path.read_bytes()

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    model.layers[0].kernel.assign(np.zeros((4, 2), "float32"))
    with pytest.raises(KeyboardInterrupt):
        tfprune.save_model(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"save_model: '.*model.h5' must end in .keras"):
        tfprune.save_model(model, tmp_path / "model.h5")
    with pytest.raises(ValueError, match="save_model: directory .* does not exist"):
        tfprune.save_model(model, tmp_path / "missing" / "model.keras")
    with pytest.raises(TypeError, match="save_model: model must be a Keras 3 model, got str"):
        tfprune.save_model("model", path)
    assert mode(path) == 0o666 & ~current_umask()
