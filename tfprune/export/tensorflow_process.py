"""Converting a model to LiteRT in a TensorFlow process, for `export_tflite` called on
another Keras backend.

TensorFlow's converter lowers TensorFlow graphs: a model whose backend is JAX or PyTorch
cannot be traced by it. `convert_elsewhere` saves the (stripped) model as a `.keras` file,
runs `tfprune.export.conversion_job` as a child process with `KERAS_BACKEND=tensorflow`,
which loads it and converts it as `export_tflite` does on TensorFlow, and reads the flatbuffer
back. The
weights are the same numbers in both processes; `verify_tflite` then compares the file
against the calling backend's outputs.

The job directory holds `model.keras`, `job.json` (quantize, split_depthwise, input_shapes)
and, for int8, `representative.npz`; the child writes `model.tflite`, or `error.json` with
the error's type and message.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

#: Errors the converter raises for the user (bad input shapes, an unconvertible model):
#: the child (`tfprune.export.conversion_job`) hands them back by name, to be raised in the
#: caller's process as they are.
USER_ERRORS = (ValueError, TypeError)


def _saved_inputs(data) -> tuple[dict, str]:
    """Representative data as named arrays for `np.savez`, and how to rebuild it."""
    if isinstance(data, dict):
        return {str(k): np.asarray(v) for k, v in data.items()}, "dict"
    if isinstance(data, (list, tuple)):
        return {f"input_{i}": np.asarray(v) for i, v in enumerate(data)}, "list"
    return {"input_0": np.asarray(data)}, "array"


def convert_elsewhere(
    model, quantize=None, representative_data=None, split_depthwise=True, input_shapes=None
) -> bytes:
    """The LiteRT flatbuffer of `model`, converted in a child process on TensorFlow.

    Args:
        model: a Keras model without pruning wrappers (`export_tflite` strips them first).
        quantize: `None` or `"int8"`, as `export_tflite` takes it. Defaults to `None`.
        representative_data: the int8 calibration inputs (an array, a list per input or a
            dict by input name). Defaults to `None`.
        split_depthwise: as `export_tflite`. Defaults to `True`.
        input_shapes: as `export_tflite`. Defaults to `None`.

    Returns:
        The flatbuffer's bytes (float, or int8), before sparse storage.

    Raises:
        ValueError, TypeError: what the conversion raised in the child, with its message.
        RuntimeError: if the child process failed otherwise (its last lines of stderr).

    Example:

    ```python
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    convert_elsewhere(model)[4:8]  # b"TFL3": what export_tflite runs on JAX and PyTorch
    ```
    """
    with tempfile.TemporaryDirectory(prefix="tfprune-export-") as work:
        work = pathlib.Path(work)
        model.save(work / "model.keras")
        job = {
            "quantize": quantize,
            "split_depthwise": split_depthwise,
            "input_shapes": input_shapes,
            "representative": None,
        }
        if representative_data is not None:
            arrays, job["representative"] = _saved_inputs(representative_data)
            np.savez(work / "representative.npz", **arrays)
        (work / "job.json").write_text(json.dumps(job))
        done = subprocess.run(
            [sys.executable, "-m", "tfprune.export.conversion_job", str(work)],
            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
        )
        if (work / "error.json").exists():
            error = json.loads((work / "error.json").read_text())
            raise {e.__name__: e for e in USER_ERRORS}[error["type"]](error["message"])
        if done.returncode != 0 or not (work / "model.tflite").exists():
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise RuntimeError(
                "export_tflite: the TensorFlow process that converts the model failed:\n" + tail
            )
        return (work / "model.tflite").read_bytes()
