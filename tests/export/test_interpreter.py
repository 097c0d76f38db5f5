"""Loading, running and timing files in LiteRT: missing and corrupt files give clear errors."""

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
