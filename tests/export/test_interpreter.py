"""Loading, running and timing files in LiteRT: missing and corrupt files give clear errors."""

import keras
import numpy as np
import pytest

import tfprune


def test_bad_tflite_paths_raise_clear_errors(tmp_path, cnn, data):
    with pytest.raises(ValueError, match="No such .tflite file"):
        tfprune.verify_tflite(tmp_path / "missing.tflite", cnn, data[0])
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, as Python code expects
        tfprune.benchmark_tflite(tmp_path / "missing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        tfprune.benchmark_tflite(text)
    good = tfprune.export_tflite(cnn, tmp_path / "good.tflite")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(tfprune.TFLiteFileError):
        tfprune.run_tflite(truncated, data[0])
    with pytest.raises(TypeError, match="path"):
        tfprune.inspect_tflite(42)


def test_signatures_are_checked_first_and_both_sides_named(tmp_path):
    inputs = keras.Input((10,), name="features")
    grid = keras.layers.Reshape((4, 5))(keras.layers.Dense(20)(inputs))
    path = tfprune.export_tflite(keras.Model(inputs, grid), tmp_path / "grid.tflite")
    flat = keras.Model(inputs, keras.layers.Dense(20)(inputs))  # same input, (None, 20) out
    x = np.random.default_rng(0).random((2, 10), dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"output 0 differs: .*\[-1, 4, 5\] \(float32\).*\(None, 20\)"
    ):
        tfprune.verify_tflite(path, flat, x)
    with pytest.raises(ValueError, match=r"input 0 \('features'\) of shape \[-1, 10\] .*\[2, 7\]"):
        tfprune.run_tflite(path, x[:, :7])
    tokens = keras.Input((10,), dtype="int32")
    embedded = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(8, 4)(tokens))
    ids = keras.Model(tokens, keras.layers.Dense(20)(embedded))
    with pytest.raises(ValueError, match=r"input 0 differs: .*\(float32\).*\(int32\)"):
        tfprune.verify_tflite(path, ids, x)
    assert tfprune.run_tflite(path, x)[0].shape == (2, 4, 5)  # the right shapes still run
