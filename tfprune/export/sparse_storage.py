"""Which weights a `.tflite` file stores sparse-encoded, chosen per layer by what pays in LiteRT.

LiteRT runs sparse-encoded FULLY_CONNECTED weights with real sparse kernels (1x4 blocks for
float, 1x16 for int8), which only beat the dense kernels at high block sparsity. Convolutions
have no sparse kernels: their sparse weights go through a DENSIFY op, which makes the file
smaller but not the model faster. So the choice is per weight tensor:

- `"auto"`: a FULLY_CONNECTED weight is stored sparse when the share of its all-zero blocks
  is at or above the measured break-even (`BREAK_EVEN`); everything else stays dense. The
  result is then timed against the dense-stored file in alternating rounds; if it is slower
  by more than `NOISE`, the dense-stored file is kept and the report says so.
- `"forced"` (`sparse=True`): every weight with at least 30 % zeros is stored sparse (the
  converter's rule); if that is measured slower than dense storage, a warning prints the
  numbers.

TensorFlow's sparsify pass is all-or-nothing per file. To keep chosen tensors dense, their
buffers are swapped for nonzero placeholders before the pass (so it leaves them alone) and
swapped back afterwards, matched by content. The result is then checked to compute the same
outputs as the dense-stored file.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from tensorflow.lite.python.convert import mlir_sparsify

from tfprune.export import interpreter as litert
from tfprune.export import tflite_file

# Share of all-zero blocks where a sparse FULLY_CONNECTED kernel stops being slower than the
# dense one (LiteRT 2.3, x86, 1 thread, two 1024x1024 layers; tools/bench_sparse_breakeven.py,
# BENCHMARKS.md section 6): float32 1x4 blocks 1.17x at 80 % and 0.81x at 85 %; int8 1x16
# blocks 1.49x at 90 % and 0.87x at 95 %.
BREAK_EVEN = {"FLOAT32": (4, 0.85), "INT8": (16, 0.94)}
# The converter's own rule: a weight under 30 % zeros is never sparse-encoded.
CONVERTER_MIN_ZEROS = 0.3
# A measured slowdown below this ratio is within noise on a shared machine.
NOISE = 1.05


@dataclasses.dataclass
class StorageChoice:
    """How one weight tensor is stored, and why.

    Attributes:
        tensor: the tensor's name in the file (it contains the Keras layer's name).
        op: the operator that reads it ("FULLY_CONNECTED", "CONV_2D", ...).
        shape: its dense shape.
        zeros: fraction of zero elements.
        block_zeros: fraction of all-zero blocks along the input axis (the blocks the sparse
            kernel skips), for FULLY_CONNECTED; None otherwise.
        sparse: whether it is stored sparse-encoded.
        reason: one line saying why.

    Example:

    >>> choice = StorageChoice("fc/MatMul", "FULLY_CONNECTED", [8, 16], 0.9, 0.9, True, "pays")
    >>> choice.sparse, choice.block_zeros
    (True, 0.9)
    """

    tensor: str
    op: str
    shape: list
    zeros: float
    block_zeros: float | None
    sparse: bool
    reason: str


@dataclasses.dataclass
class XnnpackSparsePath:
    """Whether a float model has the shape XNNPACK's sparse inference accelerates.

    The conditions are those of "Fast Sparse ConvNets" (Elsen et al., arXiv 1911.09723), as
    XNNPACK implements them.

    Attributes:
        eligible: every condition holds.
        reasons: per condition that fails, why; for an eligible model, what qualified.

    Example:

    >>> print(XnnpackSparsePath(False, ["there are no 1x1 convolutions"]))
    XNNPACK sparse path: not eligible
      - there are no 1x1 convolutions
    """

    eligible: bool
    reasons: list

    @property
    def near_miss(self) -> bool:
        """Not eligible, but only because some 1x1 convolutions are just under 2/3 zeros."""
        return not self.eligible and any("near miss" in reason for reason in self.reasons)

    def __str__(self):
        head = "eligible" if self.eligible else "not eligible"
        return f"XNNPACK sparse path: {head}" + "".join(f"\n  - {r}" for r in self.reasons)


@dataclasses.dataclass
class StorageReport:
    """What `export_tflite(..., sparse="auto" | True)` stored, why, and what it measured.

    Attributes:
        mode: "auto" or "forced".
        choices: a `StorageChoice` per weight tensor.
        sparse_seconds: measured median latency of the sparse variant (None if not timed).
        dense_seconds: the same for the all-dense-stored file.
        fell_back: "auto" measured its choice slower than dense storage and kept dense.
        xnnpack: the `XnnpackSparsePath` check.

    Example:

    ```python
    report = tfprune.export.plan_sparse_storage(model)
    print(report)  # one line per weight: SPARSE or dense, and why
    print(report.ratio)  # measured latency of the stored choice over dense storage
    ```
    """

    mode: str
    choices: list
    sparse_seconds: float | None = None
    dense_seconds: float | None = None
    fell_back: bool = False
    xnnpack: XnnpackSparsePath | None = None

    @property
    def ratio(self) -> float | None:
        """Measured latency of the stored choice over dense storage (< 1 is faster)."""
        if self.sparse_seconds is None or not self.dense_seconds:
            return None
        return self.sparse_seconds / self.dense_seconds

    def __str__(self):
        lines = [f"sparse storage ({self.mode}):"]
        for c in self.choices:
            blocks = "" if c.block_zeros is None else f", {c.block_zeros:.0%} zero blocks"
            lines.append(
                f"  {'SPARSE' if c.sparse else 'dense '} {c.tensor} [{c.op} {c.shape}, "
                f"{c.zeros:.0%} zeros{blocks}]: {c.reason}"
            )
        if self.ratio is not None:
            lines.append(
                f"  measured: {self.sparse_seconds * 1e6:.1f} us with sparse weights vs "
                f"{self.dense_seconds * 1e6:.1f} us dense-stored ({self.ratio:.2f}x)"
            )
        if self.fell_back:
            lines.append(
                "  -> slower than dense storage beyond noise, so every weight is stored dense"
            )
        if self.xnnpack is not None:
            lines.append("  " + str(self.xnnpack).replace("\n", "\n  "))
        return "\n".join(lines)


def _weight_reads(model):
    """(operator name, weight tensor index) for every weight operator of the first subgraph."""
    subgraph = model.subgraphs[0]
    for name, op in zip(tflite_file.operator_names(model), subgraph.operators):
        if name in tflite_file.WEIGHT_OPS and len(op.inputs) > 1 and op.inputs[1] >= 0:
            yield name, int(op.inputs[1])


def _block_zeros(values: np.ndarray, block: int) -> float | None:
    """Share of all-zero 1 x `block` blocks along the last axis of a 2-D weight."""
    if values.ndim != 2 or values.shape[1] % block:
        return None
    blocks = values.reshape(values.shape[0], -1, block)
    return float(np.mean(np.all(blocks == 0, axis=-1)))


def _choose(op, values, type_name, mode) -> tuple[bool, float | None, str]:
    zeros = float(np.mean(values == 0))
    block, break_even = BREAK_EVEN.get(type_name, (4, 1.01))
    block_zeros = _block_zeros(values, block) if op == "FULLY_CONNECTED" else None
    if zeros < CONVERTER_MIN_ZEROS:
        return (
            False,
            block_zeros,
            f"under {CONVERTER_MIN_ZEROS:.0%} zeros: the converter stores it dense",
        )
    if mode == "forced":
        return True, block_zeros, "sparse=True"
    if op != "FULLY_CONNECTED":
        return (
            False,
            block_zeros,
            "LiteRT has no sparse kernel for this op; sparse storage would only add a DENSIFY op "
            "at load",
        )
    if type_name not in BREAK_EVEN:
        return False, block_zeros, f"no sparse kernel for {type_name} weights"
    if block_zeros is None:
        return False, block_zeros, f"input size not a multiple of the 1x{block} block"
    if block_zeros < break_even:
        return (
            False,
            block_zeros,
            f"{block_zeros:.0%} zero 1x{block} blocks is under the {break_even:.0%} break-even: "
            "the sparse kernel would be slower",
        )
    return (
        True,
        block_zeros,
        f"{block_zeros:.0%} zero 1x{block} blocks is at or over the {break_even:.0%} break-even",
    )


def plan(data: bytes, mode: str) -> list[StorageChoice]:
    """A `StorageChoice` per weight tensor of a dense-stored flatbuffer.

    Args:
        data: flatbuffer bytes, converted without sparsity.
        mode: "auto" or "forced".

    Returns:
        One `StorageChoice` per distinct weight tensor, in operator order.

    Example:

    >>> from tfprune.export import converter
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> [(c.op, c.sparse) for c in plan(converter.convert(model), "auto")]  # nothing is zero
    [('FULLY_CONNECTED', False)]
    """
    model = tflite_file.unpack(data)
    tensors = model.subgraphs[0].tensors
    choices, seen = [], set()
    for op, index in _weight_reads(model):
        tensor = tensors[index]
        raw = tflite_file.buffer_bytes(model, tensor)
        type_name = tflite_file.type_name(tensor)
        if index in seen or raw is None or type_name not in ("FLOAT32", "INT8"):
            continue
        seen.add(index)
        values = raw.view(np.float32 if type_name == "FLOAT32" else np.int8).reshape(
            [int(d) for d in tensor.shape]
        )
        sparse, block_zeros, reason = _choose(op, values, type_name, mode)
        name = tflite_file.as_text(tensor.name)
        choices.append(
            StorageChoice(
                name,
                op,
                [int(d) for d in tensor.shape],
                float(np.mean(values == 0)),
                block_zeros,
                sparse,
                reason,
            )
        )
    return choices


def _placeholder(raw: np.ndarray, type_name: str, seed: int) -> np.ndarray:
    """Nonzero bytes of the same size, distinct per tensor, that the sparsify pass skips."""
    rng = np.random.default_rng(seed)
    if type_name == "FLOAT32":
        values = rng.uniform(1.0, 2.0, raw.size // 4).astype(np.float32)
    else:
        values = rng.integers(1, 128, raw.size).astype(np.int8)
    return values.view(np.uint8)


def encode(data: bytes, choices: list[StorageChoice]) -> bytes:
    """The flatbuffer with exactly the tensors chosen sparse stored sparse-encoded.

    Args:
        data: flatbuffer bytes, converted without sparsity.
        choices: from `plan`.

    Returns:
        New flatbuffer bytes.

    Raises:
        RuntimeError: if a kept-dense tensor cannot be found again after the pass.

    Example:

    ```python
    choices = plan(data, "forced")
    smaller = encode(data, choices)  # the choices with `sparse` True are sparse-encoded
    ```
    """
    if not any(c.sparse for c in choices):
        return data
    model = tflite_file.unpack(data)
    tensors = model.subgraphs[0].tensors
    keep_dense = {c.tensor for c in choices if not c.sparse and c.zeros >= CONVERTER_MIN_ZEROS}
    originals = {}
    for _, index in _weight_reads(model):
        tensor = tensors[index]
        name = tflite_file.as_text(tensor.name)
        buffer = model.buffers[tensor.buffer]
        if name not in keep_dense or tensor.buffer in {b for b, _ in originals.values()}:
            continue
        placeholder = _placeholder(
            tflite_file.buffer_bytes(model, tensor), tflite_file.type_name(tensor), tensor.buffer
        )
        originals[placeholder.tobytes()] = (tensor.buffer, np.asarray(buffer.data, np.uint8).copy())
        buffer.data = placeholder
    sparsified = tflite_file.unpack(mlir_sparsify(tflite_file.pack(model)))
    restored = 0
    for buffer in sparsified.buffers:
        if buffer.data is not None and len(buffer.data):
            original = originals.get(np.asarray(buffer.data, np.uint8).tobytes())
            if original is not None:
                buffer.data = original[1]
                restored += 1
    if restored != len(originals):
        raise RuntimeError(
            f"sparse storage: {len(originals) - restored} kept-dense weight(s) were not found "
            "after TensorFlow's sparsify pass."
        )
    return tflite_file.pack(sparsified)


def same_outputs(a: bytes, b: bytes, atol: float = 1e-5) -> bool:
    """Whether two flatbuffers give the same outputs on a batch-1 random input.

    Float outputs must agree within `atol`; int8 outputs within one quantization step, since
    sparse and dense kernels round their accumulators in a different order.

    Args:
        a: flatbuffer bytes.
        b: flatbuffer bytes of a model with the same signature.
        atol: the largest difference of float outputs. Defaults to 1e-5.

    Returns:
        True if they agree.

    Example:

    ```python
    assert same_outputs(encode(data, choices), data)
    ```
    """
    outputs = []
    for data in (a, b):
        interpreter = litert.interpreter_from_bytes(data)
        runner = interpreter.get_signature_runner()
        rng = np.random.default_rng(0)
        feed = {
            name: litert.random_input(detail, rng)
            for name, detail in runner.get_input_details().items()
        }
        outputs.append(runner(**feed))
    return all(
        np.allclose(
            outputs[0][k].astype(np.float64),
            outputs[1][k].astype(np.float64),
            atol=1 if np.issubdtype(outputs[0][k].dtype, np.integer) else atol,
            rtol=0,
        )
        for k in outputs[0]
    )


def xnnpack_sparse_path(data: bytes) -> XnnpackSparsePath:
    """Check the conditions of XNNPACK's sparse inference on a flatbuffer.

    The conditions are those of "Fast Sparse ConvNets" (Elsen et al., arXiv 1911.09723).

    The subgraph must start with a 3x3 stride-2 CONV_2D on 3 input channels, its 1x1
    convolutions must be at least 2/3 zeros and stored dense (XNNPACK finds the zeros
    itself), the weights must be float, and it must end in a spatial MEAN. A near miss
    (1x1 convolutions at 50-67 % zeros) is named.

    Args:
        data: flatbuffer bytes.

    Returns:
        An `XnnpackSparsePath`.

    Example:

    >>> from tfprune.export import converter
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> xnnpack_sparse_path(converter.convert(model)).eligible
    False
    """
    model = tflite_file.unpack(data)
    subgraph = model.subgraphs[0]
    names = tflite_file.operator_names(model)
    tensors = subgraph.tensors
    failures, qualified = [], []
    first = next((i for i, name in enumerate(names) if name == "CONV_2D"), None)
    if first is None or first != next(
        i for i, name in enumerate(names) if name in tflite_file.WEIGHT_OPS
    ):
        failures.append("the first weight op is not a CONV_2D")
    else:
        op = subgraph.operators[first]
        weight = [int(d) for d in tensors[op.inputs[1]].shape]
        options = op.builtinOptions
        if (
            weight[1:] != [3, 3, 3]
            or getattr(options, "strideH", 0) != 2
            or getattr(options, "strideW", 0) != 2
        ):
            failures.append(
                f"the first convolution is {weight[1]}x{weight[2]} stride "
                f"{getattr(options, 'strideH', '?')} on {weight[3]} channels; it needs 3x3 stride "
                "2 on 3 channels"
            )
    pointwise = []
    for name, index in _weight_reads(model):
        tensor = tensors[index]
        if name == "CONV_2D" and [int(d) for d in tensor.shape][1:3] == [1, 1]:
            pointwise.append((tensor, tflite_file.zero_fraction(model, tensor)))
    if not pointwise:
        failures.append("there are no 1x1 convolutions")
    for tensor, zeros in pointwise:
        label = tflite_file.as_text(tensor.name)
        if tflite_file.type_name(tensor) != "FLOAT32":
            failures.append(
                f"{label}: {tflite_file.type_name(tensor)} weights; the sparse path is float only"
            )
        elif zeros is None:
            failures.append(
                f"{label}: stored sparse-encoded (DENSIFY); XNNPACK needs its 1x1 weights stored "
                "dense"
            )
        elif zeros < 2 / 3:
            near = " (a near miss: prune it a little further)" if zeros >= 0.5 else ""
            failures.append(f"{label}: {zeros:.0%} zeros, under the 67 % XNNPACK needs{near}")
    if pointwise and not failures:
        qualified.append(f"{len(pointwise)} 1x1 convolutions, each at least 67 % zeros")
    if "MEAN" not in names[-3:]:
        failures.append("it does not end in a spatial MEAN (global average pooling)")
    return XnnpackSparsePath(not failures, failures or qualified)


def store(data: bytes, mode: str, threads: int = 1) -> tuple[bytes, StorageReport]:
    """Sparse-encode the weights `mode` selects, then time and check the result.

    Args:
        data: flatbuffer bytes, converted without sparsity.
        mode: "auto" or "forced".
        threads: interpreter threads for the timing. Defaults to 1.

    Returns:
        `(flatbuffer bytes to write, StorageReport)`.

    Raises:
        RuntimeError: if the sparse-encoded file does not compute what the dense one does.

    Example:

    ```python
    data, report = store(converter.convert(model), "auto")
    print(report)
    ```
    """
    choices = plan(data, mode)
    report = StorageReport(mode, choices)
    encoded = encode(data, choices)
    if encoded is data:
        return data, report
    if not same_outputs(encoded, data):
        raise RuntimeError(
            "sparse storage changed the model's outputs; please report this with the model. "
            "Export with sparse=False meanwhile."
        )
    report.sparse_seconds, report.dense_seconds, ratio = litert.latency_ratio(
        encoded, data, threads
    )
    if ratio > NOISE:
        # A shared machine has bursts; only a slowdown seen twice counts.
        report.sparse_seconds, report.dense_seconds, ratio = min(
            (report.sparse_seconds, report.dense_seconds, ratio),
            litert.latency_ratio(encoded, data, threads, rounds=10),
            key=lambda m: m[2],
        )
    if ratio > NOISE and mode == "auto":
        report.fell_back = True
        for choice in choices:
            if choice.sparse:
                choice.sparse, choice.reason = (
                    False,
                    f"{choice.reason}, but the file measured {ratio:.2f}x dense storage",
                )
        return data, report
    if ratio > NOISE:
        warnings.warn(
            f"sparse=True makes this model slower: {report.sparse_seconds * 1e6:.1f} us vs "
            f"{report.dense_seconds * 1e6:.1f} us dense-stored ({ratio:.2f}x). sparse='auto' "
            "stores only the weights whose sparse kernels pay.",
            stacklevel=3,
        )
    return encoded, report
