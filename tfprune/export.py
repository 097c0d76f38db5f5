"""LiteRT export: write a `.tflite`, check it against Keras, time it, read what it stores.

Conversion uses TensorFlow's TFLite converter; running uses the LiteRT interpreter from
`ai-edge-litert` (XNNPACK on by default); reading uses the flatbuffer schema shipped in
that wheel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import tempfile
import time

import keras
import numpy as np

from tfprune import checks
from tfprune.strip import strip
from tfprune.wrappers import wrappers_of


class TFLiteFileError(ValueError):
    """A `.tflite` path that is not a readable LiteRT flatbuffer."""


class TFLiteNotFoundError(FileNotFoundError, TFLiteFileError):
    """A `.tflite` path that does not exist (both a FileNotFoundError and a ValueError)."""


def _check_path(path, argument="path") -> pathlib.Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a str or os.PathLike, got {type(path).__name__}.")
    return pathlib.Path(path)


def _representative(data, model, limit=200):
    """A converter calibration generator: one example at a time, as a list per input."""
    if data is None:
        raise ValueError("quantize='int8' needs representative_data=: a few hundred typical inputs (an array).")
    arrays = data if isinstance(data, (list, tuple)) else [data]
    arrays = [np.asarray(a, np.float32) for a in arrays]
    if len(arrays) != len(model.inputs):
        raise ValueError(f"representative_data has {len(arrays)} arrays; the model has {len(model.inputs)} inputs.")

    def generate():
        for i in range(min(limit, len(arrays[0]))):
            yield [a[i : i + 1] for a in arrays]

    return generate


def export_tflite(model, path, sparse=False, quantize=None, representative_data=None) -> pathlib.Path:
    """Convert a Keras model to a LiteRT `.tflite` file.

    A pruned model (with wrappers) is stripped first, on a copy. The file is written to a
    temporary name and renamed into place, so `path` is never left half-written.

    Args:
        model: a Keras 3 functional or Sequential model, pruned or not.
        path: where to write the `.tflite` file.
        sparse: store weights that are at least 30 % zero sparse-encoded (the converter's
            rule). Smaller on disk; only FULLY_CONNECTED layers then also run sparse.
        quantize: `None` for float32, or `"int8"` for full-integer quantization with int8
            inputs and outputs.
        representative_data: typical inputs (an array, or a list per model input) to
            calibrate `"int8"`.

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        TypeError: for a non-Keras-3 model or a path of the wrong type.
        ValueError: for an unknown `quantize`, a missing `representative_data`, or a
            directory that does not exist.

    Example:

    >>> tfprune.export_tflite(tfprune.strip(pruned), "model.tflite", sparse=True)
    PosixPath('model.tflite')
    """
    import tensorflow as tf

    checks.check_model(model, "export_tflite")
    path = _check_path(path)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}.")
    if not isinstance(sparse, bool):
        raise TypeError(f"sparse must be True or False, got {sparse!r}.")
    if not path.parent.is_dir():
        raise ValueError(f"export_tflite: directory '{path.parent}' does not exist; create it first.")
    if wrappers_of(model):
        model = strip(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize == "int8":
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = _representative(representative_data, model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter.optimizations = optimizations
    # The converter saves a temporary SavedModel and prints its endpoints; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = converter.convert()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(flatbuffer)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _read_flatbuffer(path) -> bytes:
    path = _check_path(path)
    if not path.exists():
        raise TFLiteNotFoundError(2, "No such .tflite file; check the path or export one with tfprune.export_tflite", str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TFLiteFileError(f"Cannot read '{path}': {error}.") from error
    # Every TFLite flatbuffer carries the file identifier "TFL3" at bytes 4-8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteFileError(f"'{path}' is not a TFLite flatbuffer (no 'TFL3' identifier); re-export it.")
    return data


def load_interpreter(path, threads: int = 1):
    """Open a `.tflite` file in the LiteRT interpreter, with tensors allocated.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads.

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        TFLiteNotFoundError: if `path` does not exist (a ValueError and FileNotFoundError).
        TFLiteFileError: if it is not a valid flatbuffer the interpreter accepts.
        TypeError: for a path of the wrong type.

    Example:

    >>> interpreter = tfprune.load_interpreter("model.tflite")
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}.")
    data = _read_flatbuffer(path)
    try:
        interpreter = Interpreter(model_content=data, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise TFLiteFileError(f"LiteRT cannot load '{path}': {error}. The file is corrupt or truncated; re-export it.") from error
    return interpreter


def _quantize(x, detail):
    scale, zero_point = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(y, detail):
    scale, zero_point = detail["quantization"]
    return y.astype(np.float32) if not scale else (y.astype(np.float32) - zero_point) * scale


def run_tflite(path, inputs, threads: int = 1) -> list[np.ndarray]:
    """Run a `.tflite` file on a batch, quantizing inputs and dequantizing outputs as needed.

    Args:
        path: the `.tflite` file.
        inputs: an array, or a list of arrays in the Keras model's input order.
        threads: interpreter threads.

    Returns:
        The outputs as float32 arrays, in the Keras model's output order.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        ValueError: if the number of inputs does not match the file.

    Example:

    >>> (probabilities,) = tfprune.run_tflite("model.tflite", x[:8])
    """
    interpreter = load_interpreter(path, threads)
    runner = interpreter.get_signature_runner()
    details = runner.get_input_details()
    arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if len(arrays) != len(details):
        raise ValueError(f"'{path}' takes {len(details)} inputs, got {len(arrays)}.")
    # Signature inputs are named after the Keras inputs and listed in sorted order; the
    # converter keeps Keras' order in the interpreter's tensor indices.
    names = sorted(details, key=lambda name: details[name]["index"])
    feed = {name: _quantize(np.asarray(a, np.float32), details[name]) for name, a in zip(names, arrays)}
    outputs = runner(**feed)
    out_details = runner.get_output_details()
    # Output keys are output_0, output_1, ... in the Keras model's output order.
    ordered = sorted(outputs, key=lambda name: int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else name)
    return [_dequantize(outputs[name], out_details[name]) for name in ordered]


def verify_tflite(path, model, inputs, threads: int = 1) -> float:
    """Largest absolute difference between a `.tflite` file's outputs and the Keras model's.

    Args:
        path: the `.tflite` file.
        model: the Keras model it was exported from (pruned, stripped or plain).
        inputs: a batch (array, or list of arrays per model input).
        threads: interpreter threads.

    Returns:
        The max abs difference over all outputs, as a float. For float32 exports expect
        about 1e-6; int8 exports differ by the quantization step.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        TypeError: for a model that is not Keras 3.

    Example:

    >>> tfprune.verify_tflite("model.tflite", plain, x[:64]) < 1e-4
    True
    """
    checks.check_model(model, "verify_tflite")
    expected = model(inputs, training=False)
    expected = [keras.ops.convert_to_numpy(e) for e in (expected if isinstance(expected, (list, tuple)) else [expected])]
    actual = run_tflite(path, inputs, threads)
    if len(actual) != len(expected):
        raise ValueError(f"'{path}' has {len(actual)} outputs; the Keras model has {len(expected)}. Is it the same model?")
    return float(max(np.max(np.abs(a.reshape(e.shape) - e)) for a, e in zip(actual, expected)))


@dataclasses.dataclass
class Latency:
    """Result of `benchmark_tflite`: latency statistics in seconds, per invoke."""

    median: float
    p10: float
    p90: float
    runs: int
    threads: int
    path: str

    def __str__(self):
        return (
            f"{pathlib.Path(self.path).name}: median {self.median * 1e6:.1f} us "
            f"(p10 {self.p10 * 1e6:.1f}, p90 {self.p90 * 1e6:.1f}; {self.runs} runs, {self.threads} thread(s))"
        )


def benchmark_tflite(path, threads: int = 1, runs: int = 200, warmup: int = 20, seed: int = 0) -> Latency:
    """Median latency of one invoke of a `.tflite` file in LiteRT, after a warm-up.

    Inputs are random (batch 1, dynamic dimensions set to 1): latency does not depend on
    values for these models.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads.
        runs: timed invokes.
        warmup: untimed invokes first (XNNPACK packs weights on the first one).
        seed: seed of the random inputs.

    Returns:
        A `Latency`; `.median` is in seconds.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        ValueError: for runs < 1 or warmup < 0.

    Example:

    >>> print(tfprune.benchmark_tflite("model.tflite"))
    model.tflite: median 23.9 us (p10 23.1, p90 25.0; 200 runs, 1 thread(s))
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}.")
    interpreter = load_interpreter(path, threads)
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        shape = [d if d > 0 else 1 for d in detail["shape_signature"]]
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = rng.random(detail["shape"], dtype=np.float32)
        if np.issubdtype(detail["dtype"], np.integer):
            value = (value * 255 - 128).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return Latency(float(np.median(times)), float(np.percentile(times, 10)), float(np.percentile(times, 90)), runs, threads, str(path))


def inspect_tflite(path) -> dict:
    """What a `.tflite` file stores: operators, and per weight tensor its sparsity encoding.

    Args:
        path: the `.tflite` file.

    Returns:
        `{"operators": [op names], "tensors": [{"name", "shape", "type", "sparse",
        "block_map"}]}` for the first subgraph; `sparse` is true for tensors stored
        sparse-encoded, `block_map` lists their blocked dimensions (e.g. `[1]` for 1x4).

    Raises:
        TFLiteFileError: for a missing or corrupt file.

    Example:

    >>> [t["name"] for t in tfprune.inspect_tflite("m.tflite")["tensors"] if t["sparse"]]
    """
    from ai_edge_litert import schema_py_generated as schema

    data = _read_flatbuffer(path)
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        subgraph = model.Subgraphs(0)
        op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
        operators = []
        for i in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(i).OpcodeIndex())
            # Builtin codes above 127 live in the newer 32-bit field.
            operators.append(op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
        tensors = []
        for i in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(i)
            sparsity = tensor.Sparsity()
            tensors.append(
                {
                    "name": tensor.Name().decode(),
                    "shape": tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else [],
                    "type": type_names.get(tensor.Type(), str(tensor.Type())),
                    "sparse": sparsity is not None,
                    "block_map": sparsity.BlockMapAsNumpy().tolist() if sparsity is not None and sparsity.BlockMapLength() else [],
                }
            )
    except Exception as error:  # the generated reader raises assorted errors on bad offsets
        raise TFLiteFileError(f"'{path}' is not a readable TFLite flatbuffer: {error}.") from error
    return {"operators": operators, "tensors": tensors}
