"""LiteRT export: convert a Keras model to a `.tflite` file, dense, sparse-encoded or int8.

Conversion uses TensorFlow's TFLite converter. Which weights are stored sparse is decided per
layer in `tfprune.sparse_storage`; running and timing files is `tfprune.litert`; reading them
is `tfprune.tflite_file`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfprune.core import checks
from tfprune.core.files import write_atomically
from tfprune.export import (
    depthwise,
    recurrent,
    sparse_storage,
    tensorflow_process,
    tflite_file,
)
from tfprune.masking.strip import strip
from tfprune.masking.wrappers import wrappers_of

SPARSE_MODES = {False: None, True: "forced", "auto": "auto"}


def _representative_arrays(data, model) -> list:
    """`representative_data` as one array per model input, in the input's dtype, checked
    against the inputs before any conversion (the calibrator's own error is a C++ one)."""
    if data is None:
        raise ValueError(
            "quantize='int8' needs representative_data=: a few hundred typical inputs (an array)."
        )
    arrays = data if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(model.inputs):
        raise ValueError(
            f"representative_data has {len(arrays)} arrays; the model has {len(model.inputs)} "
            "inputs."
        )
    # Token ids stay integers: the converter feeds each input in its own dtype.
    arrays = [np.asarray(a).astype(t.dtype) for a, t in zip(arrays, model.inputs)]
    for array, tensor in zip(arrays, model.inputs):
        expected = tuple(tensor.shape[1:])
        fits = array.ndim == len(expected) + 1 and all(
            size is None or size == given for size, given in zip(expected, array.shape[1:])
        )
        if not fits:
            raise ValueError(
                f"representative_data for input '{tensor.name}' holds examples of shape "
                f"{array.shape[1:]}; the model takes {expected} (None: any size)."
            )
    return arrays


def _representative(data, model, limit=200):
    """A converter calibration generator: one example at a time, as a list per input."""
    arrays = _representative_arrays(data, model)

    def generate():
        for i in range(min(limit, len(arrays[0]))):
            yield [a[i : i + 1] for a in arrays]

    return generate


def _serving_function(model, names, shapes):
    """The model's forward pass traced once, with its inputs named `names` (the Keras
    inputs' names) and shaped `shapes` (the model's, or those `input_shapes` fixes).

    Converting this function freezes its variables into constants; `from_keras_model` saves
    the model to a temporary SavedModel and reloads it first, which holds about twice as many
    copies of the weights at its peak (tools/bench_memory.py).
    """
    # The converter lowers a recurrent layer's loop only when its per-step tensors have a
    # static shape: such models are traced at batch 1 (run_tflite feeds a batch one by one).
    batch = 1 if recurrent.has_loops(model) else None
    specs = [
        tf.TensorSpec((batch, *shape[1:]), t.dtype, name=name)
        for t, shape, name in zip(model.inputs, shapes, names)
    ]

    @tf.function(input_signature=specs)
    def serve(*inputs):
        if len(inputs) == 1:  # a Sequential model has no `input` structure before a call
            return model(inputs[0], training=False)
        return model(keras.tree.pack_sequence_as(model.input, inputs), training=False)

    return serve.get_concrete_function()


def convert(
    model, quantize=None, representative_data=None, split_depthwise=True, input_shapes=None
) -> bytes:
    """The model as LiteRT flatbuffer bytes with every weight stored dense (nothing written).

    Args:
        model: a plain Keras 3 model (strip a pruned one first).
        quantize: `None` for float32, or `"int8"`. Defaults to `None`.
        representative_data: calibration inputs for `"int8"`. Defaults to `None`.
        split_depthwise: compute depthwise kernels over 5x5 as sums of tiles of at most
            5x5, which LiteRT runs several times faster (`tfprune.export.depthwise`).
            Defaults to `True`.
        input_shapes: sizes to fix where the model's inputs leave them unknown (see
            `tfprune.core.checks.check_input_shapes`); the model is not changed. Defaults
            to `None`.

    Returns:
        The flatbuffer bytes, with a `serving_default` signature named as
        `TFLiteConverter.from_keras_model` names it (the Keras input names; output_0, ... or
        a dict output's keys) and the Keras input order recorded in its metadata.

    Raises:
        ValueError: for `"int8"` without representative data, or data that does not fit
            the model's inputs; for a model the converter cannot lower, saying why in a line
            (an input of unknown size, named, with the `input_shapes` that fixes it).

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> convert(model)[4:8]
    b'TFL3'
    """
    inputs = [tensor.name for tensor in model.inputs]
    shapes = checks.check_input_shapes(model, input_shapes, "export_tflite")
    exported = recurrent.export_form(model, quantize)
    if split_depthwise:
        exported = depthwise.export_form(exported)
    serving = _serving_function(exported, inputs, shapes)
    # A concrete function holds its variables weakly: the converter must hold the model it
    # traced (for recurrent layers an unrolled copy, which garbage collection would
    # otherwise free at random before the variables are frozen).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serving], exported)
    converter.experimental_lower_to_saved_model = False  # freeze in memory, see above
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative_data, model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with contextlib.redirect_stdout(io.StringIO()), quiet_stderr():
            flatbuffer = converter.convert()
    except Exception as error:
        lowering = _conversion_error(error, model, shapes)
        if lowering is None:
            raise
        raise lowering from None  # its cause is a dump of the whole graph
    flatbuffer = tflite_file.with_signature(flatbuffer, inputs, _output_names(serving))
    # Recorded for run_tflite: LiteRT lists a signature's inputs by name, not in this order.
    return tflite_file.with_metadata(
        flatbuffer, tflite_file.INPUT_ORDER, json.dumps(inputs).encode()
    )


@contextlib.contextmanager
def quiet_stderr():
    """Inside the block, what C++ code writes to the process's stderr (the converter's MLIR
    dumps) goes to a discarded file instead.

    Yields:
        Nothing.

    Example:

    >>> import os
    >>> with quiet_stderr():
    ...     _ = os.write(2, b"not shown")
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _conversion_error(error, model, shapes) -> ValueError | None:
    """A failure to lower TensorFlow ops in a few lines: which ops and, where inputs have
    sizes unknown until run time (the usual cause), which and the fix. `None` for any other
    error, which keeps its own message."""
    ops = sorted(set(re.findall(r"'(tf\.\w+)' op", str(error))))
    if not ops:
        return None
    what = f"cannot lower {', '.join(ops)}"
    unknown = {
        t.name: (None, *shape[1:]) for t, shape in zip(model.inputs, shapes) if None in shape[1:]
    }
    if unknown:
        example = ", ".join(
            f"'{name}': {tuple(128 if d is None else d for d in shape[1:])}"
            for name, shape in unknown.items()
        )
        return ValueError(
            f"export_tflite: TensorFlow's converter {what} with inputs of sizes unknown until "
            f"they run ({', '.join(f'{n!r} {s}' for n, s in unknown.items())}). Fix the sizes "
            f"the file takes: export_tflite(..., input_shapes={{{example}}}) (batch left "
            "out; the Keras model is not changed)."
        )
    return ValueError(
        f"export_tflite: TensorFlow's converter {what}: LiteRT has no kernel for them. "
        "Replace the layer that computes them, or export with the sizes fixed (input_shapes=) "
        "if they depend on a size."
    )


def _output_names(serving) -> list[str]:
    """The signature's output names, as `TFLiteConverter.from_keras_model` gives them: a dict
    output's keys (sorted, the order the graph's outputs are flattened in), otherwise
    output_0, output_1, ..."""
    structure = serving.structured_outputs
    if isinstance(structure, dict):
        return sorted(structure)
    return [f"output_{i}" for i in range(len(tf.nest.flatten(structure)))]


def _flatbuffer(model, quantize, data, split_depthwise=True, input_shapes=None) -> bytes:
    """`convert` here on TensorFlow; on another backend in a TensorFlow child process, which
    converts the same weights (`tfprune.export.tensorflow_process`)."""
    if keras.backend.backend() == "tensorflow":
        return convert(model, quantize, data, split_depthwise, input_shapes)
    # Checked here as well: a wrong argument should not cost a TensorFlow process.
    checks.check_input_shapes(model, input_shapes, "export_tflite")
    if quantize == "int8":
        _representative_arrays(data, model)
    return tensorflow_process.convert_elsewhere(
        model, quantize, data, split_depthwise, input_shapes
    )


def _prepare(model, sparse, quantize, caller):
    checks.check_model(model, caller)
    checks.check_choice("quantize", quantize, (None, "int8"))
    if not (sparse is True or sparse is False or sparse == "auto"):
        raise TypeError(f"sparse must be False, True or 'auto', got {sparse!r}.")
    return strip(model) if wrappers_of(model) else model


def plan_sparse_storage(
    model, sparse="auto", quantize=None, representative_data=None, threads: int = 1
):
    """Convert without writing, and say which weights `export_tflite(sparse=...)` stores sparse.

    Args:
        model: a Keras 3 functional or Sequential model, pruned or not.
        sparse: `"auto"` (per layer, where LiteRT's sparse kernel pays) or `True` (forced).
            Defaults to `"auto"`.
        quantize: `None` or `"int8"`, as in `export_tflite`. Defaults to `None`.
        representative_data: calibration inputs for `"int8"`. Defaults to `None`.
        threads: interpreter threads for the timing of sparse against dense storage.
            Defaults to 1.

    Returns:
        A `tfprune.export.StorageReport`; print it for a table.

    Raises:
        TypeError / ValueError: as `export_tflite`.

    Example:

    ```python
    print(tfprune.export.plan_sparse_storage(model))
    # sparse storage (auto):
    #   SPARSE functional/fc1/MatMul [FULLY_CONNECTED [1024, 1024], 95% zeros, 95% zero blocks]: ...
    ```
    """
    if sparse is False:
        raise ValueError("plan_sparse_storage needs sparse='auto' or True.")
    model = _prepare(model, sparse, quantize, "plan_sparse_storage")
    flatbuffer = _flatbuffer(model, quantize, representative_data)
    report = sparse_storage.store(flatbuffer, SPARSE_MODES[sparse], threads)[1]
    report.xnnpack = sparse_storage.xnnpack_sparse_path(flatbuffer)
    return report


def export_tflite(
    model,
    path,
    sparse=False,
    quantize=None,
    representative_data=None,
    verbose=None,
    split_depthwise=True,
    input_shapes=None,
) -> pathlib.Path:
    """Convert a Keras model to a LiteRT `.tflite` file.

    A pruned model (with wrappers) is stripped first, on a copy. The file is written to a
    temporary name and renamed into place, so `path` is never left half-written, and it gets
    the permissions the user's umask gives a new file. On the JAX and PyTorch backends the
    model is converted in a TensorFlow child process, from a `.keras` copy with the same
    weights (a few seconds more); `verify_tflite` compares the file with the calling
    backend's outputs.

    Args:
        model: a Keras 3 functional or Sequential model, pruned or not.
        path: where to write the `.tflite` file.
        sparse: `False` stores every weight dense. `"auto"` stores a weight sparse-encoded
            only where LiteRT's sparse kernel is faster (FULLY_CONNECTED at or over the
            measured block-sparsity break-even), times the result against dense storage and
            keeps dense storage if it is slower. `True` stores every weight with at least 30 %
            zeros sparse (smallest file) and warns, with the numbers, if that is slower.
            See `tfprune.export.sparse_storage`. Defaults to `False`.
        quantize: `None` for float32, or `"int8"` for full-integer quantization with int8
            inputs and outputs (zeros stay exactly zero: weights are quantized symmetrically).
            Defaults to `None`.
        representative_data: typical inputs (an array, or a list per model input) to
            calibrate `"int8"`. Defaults to `None`.
        verbose: `True` prints the sparse storage report (`plan_sparse_storage` returns it
            instead); `None` prints only a note when a float model qualifies for XNNPACK's
            sparse inference path, or narrowly misses it, and why; `False` prints nothing.
            Defaults to `None`.
        split_depthwise: `True` computes depthwise convolutions with kernels over 5x5
            (ConvNeXt's 7x7) as sums of tiles of at most 5x5: the same function, 6x faster
            per layer in LiteRT on x86 (`tfprune.layers.split_depthwise`). `False` keeps one
            op per layer. Defaults to `True`.
        input_shapes: sizes the file fixes where the model's inputs leave them unknown (a
            sequence length, an image side), without the batch axis: one shape for a model
            with one input, a list in input order, or `{input name: shape}`, e.g.
            `{"token_ids": (128,), "padding_mask": (128,)}`. The Keras model is not changed.
            Decoder LLMs need them: TensorFlow's converter cannot lower their masks at
            unknown lengths. Defaults to `None` (the model's own shapes).

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        TypeError: for a non-Keras-3 model, a path or `sparse` of the wrong type.
        ValueError: for an unknown `quantize`, a missing `representative_data`, a directory
            that does not exist, `input_shapes` that do not fit the model, or a model the
            converter cannot lower (saying which input's unknown size to fix, if that is it).

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> path = export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> path.name, path.read_bytes()[4:8]
    ('model.tflite', b'TFL3')
    """
    path = checks.check_path(path)
    model = _prepare(model, sparse, quantize, "export_tflite")
    if not path.parent.is_dir():
        raise ValueError(
            f"export_tflite: directory '{path.parent}' does not exist; create it first."
        )
    flatbuffer = _flatbuffer(model, quantize, representative_data, split_depthwise, input_shapes)
    # XNNPACK finds the zeros of dense-stored float 1x1 convolutions itself.
    xnnpack = (
        sparse_storage.xnnpack_sparse_path(flatbuffer)
        if quantize is None and verbose is not False
        else None
    )
    if sparse is not False:
        flatbuffer, report = sparse_storage.store(flatbuffer, SPARSE_MODES[sparse])
        report.xnnpack = xnnpack
        if verbose:
            print(report)
    if verbose is None and xnnpack is not None and (xnnpack.eligible or xnnpack.near_miss):
        print(f"{path.name}: {xnnpack}")
    return write_atomically(path, flatbuffer)
