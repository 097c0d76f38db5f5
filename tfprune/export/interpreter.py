"""Running `.tflite` files in the LiteRT interpreter: load, run, verify against Keras, time.

Uses the interpreter from `ai-edge-litert`, with XNNPACK on by default, as on a phone.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
import warnings

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tfprune.core import checks
from tfprune.core.inference import inference_outputs
from tfprune.export import tflite_file
from tfprune.export.tflite_file import TFLiteFileError, read_flatbuffer


def interpreter_from_bytes(data: bytes, threads: int = 1, source="the model"):
    """A LiteRT interpreter with tensors allocated, from flatbuffer bytes.

    Args:
        data: the flatbuffer bytes.
        threads: interpreter threads. Defaults to 1.
        source: what to call the model in error messages. Defaults to "the model".

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        TFLiteFileError: if LiteRT rejects the flatbuffer.

    Example:

    ```python
    interpreter = interpreter_from_bytes(converter.convert(model), threads=2)
    ```
    """
    checks.check_integer("threads", threads, minimum=1)
    try:
        interpreter = Interpreter(model_content=data, num_threads=threads)
        # With unknown input sizes (a sequence length) the placeholder size 1 may be too small
        # for the graph (a convolution's kernel): tensors are allocated when inputs arrive.
        if all(-1 not in d["shape_signature"] for d in interpreter.get_input_details()):
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise TFLiteFileError(
            f"LiteRT cannot load '{source}': {error}. The file is corrupt or truncated; re-export "
            "it."
        ) from error
    return interpreter


def load_interpreter(path, threads: int = 1):
    """Open a `.tflite` file in the LiteRT interpreter, with tensors allocated.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads. Defaults to 1.

    Returns:
        An `ai_edge_litert.interpreter.Interpreter`.

    Raises:
        TFLiteNotFoundError: if `path` does not exist (a ValueError and FileNotFoundError).
        TFLiteFileError: if it is not a valid flatbuffer the interpreter accepts.
        TypeError: for a path of the wrong type.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> [detail["shape"].tolist() for detail in load_interpreter(path).get_input_details()]
    [[1, 4]]
    """
    checks.check_integer("threads", threads, minimum=1)
    return interpreter_from_bytes(read_flatbuffer(path), threads, path)


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
        inputs: an array, a list of arrays in the Keras model's input order, or a dict
            `{input name: array}` (the names `tfprune inspect` shows).
        threads: interpreter threads. Defaults to 1.

    Returns:
        The outputs as float32 arrays, in the Keras model's output order.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        ValueError: if the number of inputs, or an input's shape, does not match the file's
            signature (the message names both shapes and dtypes).

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> (probabilities,) = run_tflite(path, np.random.rand(8, 4))
    >>> probabilities.shape, bool(np.allclose(probabilities.sum(axis=1), 1.0))
    ((8, 3), True)
    """
    runner, order = _open(path, threads)
    return _run(runner, path, inputs, order)


def _open(path, threads):
    """A signature runner for the file, and its inputs' names in the Keras model's order
    (recorded by `export_tflite`; `None` for files from elsewhere)."""
    data = read_flatbuffer(path)
    runner = interpreter_from_bytes(data, threads, path).get_signature_runner()
    recorded = tflite_file.metadata(tflite_file.unpack(data, path)).get(tflite_file.INPUT_ORDER)
    return runner, None if recorded is None else json.loads(recorded)


def _run(runner, path, inputs, order) -> list[np.ndarray]:
    """`run_tflite` on an open signature runner; `order` as `_open` gives it."""
    inputs_of, outputs_of = _signature(runner, order)
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - {name for name, _ in inputs_of})
        if unknown or len(inputs) != len(inputs_of):
            raise ValueError(
                f"'{path}' takes inputs {[name for name, _ in inputs_of]}, got {sorted(inputs)}."
            )
        arrays = [np.asarray(inputs[name]) for name, _ in inputs_of]
    else:
        arrays = [
            np.asarray(a) for a in (inputs if isinstance(inputs, (list, tuple)) else [inputs])
        ]
        if len(arrays) != len(inputs_of):
            raise ValueError(f"'{path}' takes {len(inputs_of)} inputs, got {len(arrays)}.")
        if len(arrays) > 1 and order is None:
            raise ValueError(
                f"'{path}' has several inputs and does not record their order (it was not written "
                "by tfprune.export_tflite): pass a dict {name: array} with the names "
                f"{sorted(name for name, _ in inputs_of)}."
            )
    if _one_at_a_time(inputs_of, arrays):
        parts = [
            _run(runner, path, [a[i : i + 1] for a in arrays], order) for i in range(len(arrays[0]))
        ]
        return [np.concatenate(outputs) for outputs in zip(*parts)]
    for index, ((name, detail), array) in enumerate(zip(inputs_of, arrays)):
        expected = [int(d) for d in detail["shape_signature"]]
        if not _shapes_agree(expected, list(array.shape)):
            raise ValueError(
                f"run_tflite: '{path}' takes input {index} ('{name}') of shape {expected} "
                f"({np.dtype(detail['dtype']).name}); got an array of shape "
                f"{list(array.shape)} ({array.dtype}). -1 is any size."
            )
    feed = {
        name: _quantize(np.asarray(array, np.float32), detail)
        for (name, detail), array in zip(inputs_of, arrays)
    }
    outputs = runner(**feed)
    return [_dequantize(outputs[name], detail) for name, detail in outputs_of]


def _one_at_a_time(inputs_of, arrays) -> bool:
    """Whether a batch must run example by example: the file takes batch 1 only (recurrent
    models are exported so), and the arrays hold several examples of the same count."""
    fixed = all(int(detail["shape_signature"][0]) == 1 for _, detail in inputs_of)
    counts = {a.shape[0] if a.ndim else 0 for a in arrays}
    return fixed and len(counts) == 1 and counts.pop() > 1


def _signature(runner, order=None):
    """The runner's inputs and outputs as `(name, detail)` lists in the Keras model's order.

    Inputs follow `order` (the names `export_tflite` recorded); a file without it is taken
    in tensor order. Output keys are output_0, output_1, ... in the Keras model's order.
    """
    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    if order is not None and sorted(order) == sorted(inputs):
        input_order = list(order)
    else:
        input_order = sorted(inputs, key=lambda name: inputs[name]["index"])

    def output_position(name):
        suffix = name.rsplit("_", 1)[-1]
        return (0, int(suffix), name) if suffix.isdigit() else (1, 0, name)

    output_order = sorted(outputs, key=output_position)
    return [(n, inputs[n]) for n in input_order], [(n, outputs[n]) for n in output_order]


def _shapes_agree(signature: list, shape: list) -> bool:
    """Whether a concrete or Keras shape fits a signature shape (-1 or None: any size)."""
    if len(signature) != len(shape):
        return False
    return all(s in (-1, None) or d in (-1, None) or s == d for s, d in zip(signature, shape))


def _kind(dtype, quantized: bool) -> str:
    """What a tensor carries: real numbers (float, or quantized integers) or integer ids."""
    if quantized or not np.issubdtype(np.dtype(dtype), np.integer):
        return "real"
    return "integer"


def _check_same_signature(path, runner, model, order) -> None:
    """Raise a ValueError naming both sides where the file's signature differs from the model's."""
    inputs_of, outputs_of = _signature(runner, order)
    for side, file_side, keras_side in (
        ("input", inputs_of, model.inputs),
        ("output", outputs_of, model.outputs),
    ):
        if len(file_side) != len(keras_side):
            raise ValueError(
                f"verify_tflite: '{path}' has {len(file_side)} {side}s; the Keras model has "
                f"{len(keras_side)}. Is it the same model?"
            )
        for index, ((name, detail), tensor) in enumerate(zip(file_side, keras_side)):
            file_shape = [int(d) for d in detail["shape_signature"]]
            keras_shape = list(tensor.shape)
            quantized = bool(detail["quantization"][0])
            same_kind = _kind(detail["dtype"], quantized) == _kind(tensor.dtype, False)
            if not (_shapes_agree(file_shape, keras_shape) and same_kind):
                raise ValueError(
                    f"verify_tflite: {side} {index} differs: '{path}' has '{name}' of shape "
                    f"{file_shape} ({np.dtype(detail['dtype']).name}), the Keras model "
                    f"{tuple(keras_shape)} ({tensor.dtype}). Is it the same model? (-1 and "
                    "None are any size.)"
                )


def verify_tflite(path, model, inputs, threads: int = 1) -> float:
    """Largest absolute difference between a `.tflite` file's outputs and the Keras model's.

    Args:
        path: the `.tflite` file.
        model: the Keras model it was exported from (pruned, stripped or plain).
        inputs: a batch: an array, a list of arrays per model input, or a dict by input name
            (as the model takes it).
        threads: interpreter threads. Defaults to 1.

    Returns:
        The max abs difference over all outputs, as a float. For float32 exports expect
        about 1e-6; int8 exports differ by the quantization step. The model runs in
        inference mode (no dropout, no random augmentation, BatchNormalization on its moving
        statistics, as the file computes) and is left unchanged, non-trainable state included.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        TypeError: for a model that is not Keras 3.
        ValueError: if the file's inputs or outputs differ from the model's in number, shape
            or kind (real numbers or integer ids); the message names both.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> verify_tflite(path, model, np.random.rand(16, 4)) < 1e-4
    True
    """
    checks.check_model(model, "verify_tflite")
    runner, _ = _open(path, threads)
    # The model itself says which input is which: its inputs' names are the signature's.
    order = [tensor.name for tensor in model.inputs]
    _check_same_signature(path, runner, model, order)
    expected = inference_outputs(model, inputs)
    actual = _run(runner, path, inputs, order)
    return float(max(np.max(np.abs(a.reshape(e.shape) - e)) for a, e in zip(actual, expected)))


@dataclasses.dataclass
class Latency:
    """Result of `benchmark_tflite`: latency statistics in seconds, per invoke.

    Attributes:
        median: the median latency.
        p10: its 10th percentile.
        p90: its 90th percentile.
        runs: timed invokes.
        threads: interpreter threads.
        path: the file timed.

    Example:

    >>> print(Latency(23.9e-6, 23.1e-6, 25.0e-6, runs=200, threads=1, path="out/model.tflite"))
    model.tflite: median 23.9 us (p10 23.1, p90 25.0; 200 runs, 1 thread(s))
    """

    median: float
    p10: float
    p90: float
    runs: int
    threads: int
    path: str

    def __str__(self):
        return (
            f"{pathlib.Path(self.path).name}: median {self.median * 1e6:.1f} us (p10 "
            f"{self.p10 * 1e6:.1f}, p90 {self.p90 * 1e6:.1f}; {self.runs} runs, {self.threads} "
            "thread(s))"
        )


def benchmark_tflite(
    path, threads: int = 1, runs: int = 200, warmup: int = 20, seed: int = 0, input_shapes=None
) -> Latency:
    """Median latency of one invoke of a `.tflite` file in LiteRT, after a warm-up.

    Inputs are random at batch 1: latency does not depend on values for these models.

    Args:
        path: the `.tflite` file.
        threads: interpreter threads. Defaults to 1.
        runs: timed invokes. Defaults to 200.
        warmup: untimed invokes first (XNNPACK packs weights on the first one). Defaults
            to 20.
        seed: seed of the random inputs. Defaults to 0.
        input_shapes: the sizes to time inputs of sizes unknown until run time at (a
            sequence length, an image side), without the batch axis: one shape, a list in
            the Keras model's input order, or `{input name: shape}`. Defaults to `None`:
            such sizes are taken as 1, with a warning.

    Returns:
        A `Latency`; `.median` is in seconds.

    Raises:
        TFLiteFileError: for a missing or corrupt file.
        ValueError: for runs < 1 or warmup < 0.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> latency = benchmark_tflite(path, runs=20, warmup=2)
    >>> latency.runs, 0 < latency.p10 <= latency.median <= latency.p90
    (20, True)
    """
    checks.check_integer("runs", runs, minimum=1)
    checks.check_integer("warmup", warmup, minimum=0)
    data = read_flatbuffer(path)
    interpreter = interpreter_from_bytes(data, threads, path)
    sizes = input_sizes(data, interpreter, input_shapes)
    times = _invoke_times(_ready(interpreter, seed, sizes), runs, warmup)
    return Latency(
        float(np.median(times)),
        float(np.percentile(times, 10)),
        float(np.percentile(times, 90)),
        runs,
        threads,
        str(path),
    )


def compare_latency(
    paths, rounds: int = 5, runs: int = 50, threads: int = 1, input_shapes=None
) -> dict:
    """Median LiteRT latency of several `.tflite` files, timed in turn `rounds` times.

    On a shared or thermally throttled machine a burst of load lands on every file instead of
    on one, so ratios between the files hold where single timings would not.

    Args:
        paths: the `.tflite` files to compare.
        rounds: how many times to go round the files. Defaults to 5.
        runs: timed invokes per file per round (see `benchmark_tflite`). Defaults to 50.
        threads: interpreter threads. Defaults to 1.
        input_shapes: the sizes to time unknown input sizes at, as in `benchmark_tflite`
            (the same for every file). Defaults to `None`.

    Returns:
        `{path: median seconds of one invoke}`, keyed by the paths as given.

    Raises:
        TFLiteNotFoundError: for a missing file (a ValueError and FileNotFoundError).
        TFLiteFileError: for a corrupt one.
        ValueError: for rounds or runs < 1.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> a = tfprune.export_tflite(model, folder / "a.tflite")
    >>> b = tfprune.export_tflite(model, folder / "b.tflite")
    >>> sorted(compare_latency([a, b], rounds=2, runs=5)) == sorted([a, b])
    True
    """
    paths = list(paths)
    flatbuffers = [read_flatbuffer(path) for path in paths]
    latencies = interleaved_latencies(flatbuffers, threads, rounds, runs, input_shapes)
    return dict(zip(paths, latencies))


def random_input(detail, rng, shape=None) -> np.ndarray:
    """A random input for one interpreter input `detail` (batch 1 where dynamic).

    Float inputs are uniform in [0, 1); quantized integer inputs span their range;
    unquantized integer inputs (token ids) are 0, always a valid index.

    Args:
        detail: one entry of `interpreter.get_input_details()`.
        rng: a `numpy.random.Generator`.
        shape: the shape to draw, or `None` for the detail's (1 where dynamic). Defaults
            to `None`.

    Returns:
        An array of the input's dtype.

    Example:

    >>> detail = {"shape_signature": [-1, 3], "dtype": np.int32, "quantization": (0.0, 0)}
    >>> random_input(detail, np.random.default_rng(0))
    array([[0, 0, 0]], dtype=int32)
    """
    shape = [d if d > 0 else 1 for d in detail["shape_signature"]] if shape is None else shape
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if not detail["quantization"][0]:
        return np.zeros(shape, dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def input_sizes(data: bytes, interpreter, input_shapes) -> dict:
    """`{input tensor index: shape without batch}` for the inputs `input_shapes` names.

    Args:
        data: the file's flatbuffer bytes (for the Keras input order `export_tflite`
            recorded).
        interpreter: an interpreter of `data`.
        input_shapes: `None`, one shape for a file with one input, a list in the Keras
            model's input order, or `{input name: shape}`, each without the batch axis.

    Returns:
        The shapes by tensor index.

    Raises:
        TypeError: for `input_shapes` of the wrong type.
        ValueError: for names the file does not take, or a count that does not match.

    Example:

    >>> from tfprune.export.converter import convert
    >>> tokens = keras.Input((None,), dtype="int32", name="token_ids")
    >>> data = convert(keras.Model(tokens, keras.layers.Embedding(9, 2)(tokens)))
    >>> list(input_sizes(data, interpreter_from_bytes(data), (16,)).values())
    [(16,)]
    """
    if input_shapes is None:
        return {}
    recorded = tflite_file.metadata(tflite_file.unpack(data)).get(tflite_file.INPUT_ORDER)
    runner = interpreter.get_signature_runner()
    inputs_of, _ = _signature(runner, None if recorded is None else json.loads(recorded))
    names = [name for name, _ in inputs_of]
    given = checks.shapes_by_name(names, input_shapes, "benchmark_tflite")
    return {detail["index"]: tuple(given[name]) for name, detail in inputs_of if name in given}


def _ready(interpreter, seed, sizes=None):
    """Batch-1 random inputs set on `interpreter` (latency does not depend on values), of
    the `sizes` (`input_sizes`) where given; other unknown sizes are taken as 1, with a
    warning, since a length of 1 times another model than the one that will run."""
    rng = np.random.default_rng(seed)
    sizes = sizes or {}
    for detail in interpreter.get_input_details():
        signature = [int(d) for d in detail["shape_signature"]]
        if detail["index"] in sizes:
            shape = [1, *sizes[detail["index"]]]
        else:
            shape = [d if d > 0 else 1 for d in signature]
            if any(d < 0 for d in signature[1:]):
                warnings.warn(
                    f"input '{detail['name']}' has sizes unknown until run time "
                    f"{signature}; timed at 1. Pass input_shapes= for the size it will run at.",
                    stacklevel=3,
                )
        interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], random_input(detail, rng, list(detail["shape"])))
    return interpreter


def _invoke_times(interpreter, runs, warmup) -> np.ndarray:
    for _ in range(warmup):
        interpreter.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return times


def latency_ratio(
    candidate: bytes, reference: bytes, threads: int = 1, rounds: int = 5, runs: int = 20
) -> tuple[float, float, float]:
    """Median latency of two flatbuffers measured in alternating rounds, so drift hits both.

    Args:
        candidate: flatbuffer bytes to judge.
        reference: flatbuffer bytes to compare with.
        threads: interpreter threads. Defaults to 1.
        rounds: alternations; each times `runs` invokes of both. Defaults to 5.
        runs: invokes per round. Defaults to 20.

    Returns:
        `(candidate median s, reference median s, candidate / reference)`.

    Example:

    ```python
    sparse_s, dense_s, ratio = latency_ratio(sparse_bytes, dense_bytes)  # 0.43: sparse pays
    ```
    """
    medians = interleaved_latencies([candidate, reference], threads, rounds, runs)
    return medians[0], medians[1], medians[0] / medians[1]


def interleaved_latencies(
    flatbuffers: list, threads: int = 1, rounds: int = 5, runs: int = 20, input_shapes=None
) -> list[float]:
    """Median latencies of several flatbuffers timed in turns, so that a machine's drift
    (other processes, clock changes) hits them all alike.

    Args:
        flatbuffers: the flatbuffer bytes of each model.
        threads: interpreter threads. Defaults to 1.
        rounds: turns; in each, every model runs `runs` invokes. Defaults to 5.
        runs: invokes per model per turn. Defaults to 20.
        input_shapes: sizes for inputs of unknown size, as in `benchmark_tflite`. Defaults
            to `None`.

    Returns:
        One median latency in seconds per flatbuffer, in order.

    Raises:
        TFLiteFileError: for bytes that are not a LiteRT model.

    Example:

    >>> from tfprune.export.converter import convert
    >>> models = [keras.Sequential([keras.Input((8,)), keras.layers.Dense(n)]) for n in (2, 4)]
    >>> len(interleaved_latencies([convert(m) for m in models], rounds=2, runs=3))
    2
    """
    checks.check_integer("rounds", rounds, minimum=1)
    checks.check_integer("runs", runs, minimum=1)
    interpreters = []
    for data in flatbuffers:
        interpreter = interpreter_from_bytes(data, threads)
        interpreters.append(_ready(interpreter, 0, input_sizes(data, interpreter, input_shapes)))
    for interpreter in interpreters:
        _invoke_times(interpreter, 1, max(2, runs // 4))
    samples = [[] for _ in interpreters]
    for _ in range(rounds):
        for which, interpreter in enumerate(interpreters):
            samples[which].append(_invoke_times(interpreter, runs, 0))
    return [float(np.median(np.concatenate(s))) for s in samples]
