"""The child side of `tfprune.export.tensorflow_process`: load a job's `.keras` file on
TensorFlow and convert it as `export_tflite` does there.

    KERAS_BACKEND=tensorflow python -m tfprune.export.conversion_job JOB_DIR
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from tfprune.export.tensorflow_process import USER_ERRORS


def _loaded_inputs(arrays, kind):
    """Representative data as `tensorflow_process` saved it (`kind`: array, list or dict)."""
    if kind == "dict":
        return dict(arrays)
    ordered = [arrays[f"input_{i}"] for i in range(len(arrays))]
    return ordered if kind == "list" else ordered[0]


def _shapes(value):
    """`input_shapes` as `export_tflite` takes it, from its JSON form (tuples became lists)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {name: tuple(shape) for name, shape in value.items()}
    if value and all(isinstance(shape, list) for shape in value):
        return [tuple(shape) for shape in value]
    return tuple(value)


def main(job_dir) -> int:
    """Convert the job in `job_dir` (run in the child, on TensorFlow).

    Args:
        job_dir: the directory `convert_elsewhere` prepared.

    Returns:
        The exit status: 0, or 2 when the conversion raised an error for the user.

    Example:

    ```python
    main(pathlib.Path("/tmp/tfprune-export-x1y2"))  # writes model.tflite there
    ```
    """
    import keras

    from tfprune.export.converter import convert

    job_dir = pathlib.Path(job_dir)
    job = json.loads((job_dir / "job.json").read_text())
    model = keras.saving.load_model(job_dir / "model.keras", compile=False)
    data = None
    if job["representative"] is not None:
        with np.load(job_dir / "representative.npz") as arrays:
            data = _loaded_inputs({k: arrays[k] for k in arrays.files}, job["representative"])
    try:
        flatbuffer = convert(
            model, job["quantize"], data, job["split_depthwise"], _shapes(job["input_shapes"])
        )
    except USER_ERRORS as error:
        kind = next(e.__name__ for e in USER_ERRORS if isinstance(error, e))
        failure = {"type": kind, "message": str(error)}
        (job_dir / "error.json").write_text(json.dumps(failure))
        return 2
    (job_dir / "model.tflite").write_bytes(flatbuffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
