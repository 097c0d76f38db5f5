"""Reading `.tflite` files: validation, the flatbuffer object tree, and `inspect_tflite`.

Everything goes through the flatbuffer schema shipped in `ai_edge_litert`
(`schema_py_generated`); nothing here parses bytes by hand beyond the file identifier.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfprune.core import checks


class TFLiteFileError(ValueError):
    """A `.tflite` path that is not a readable LiteRT flatbuffer.

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "broken.tflite"
    >>> _ = path.write_bytes(b"not a model")
    >>> try:
    ...     read_flatbuffer(path)
    ... except TFLiteFileError as error:
    ...     print("refused:", type(error).__name__)
    refused: TFLiteFileError
    """


class TFLiteNotFoundError(FileNotFoundError, TFLiteFileError):
    """A `.tflite` path that does not exist (both a FileNotFoundError and a ValueError).

    Example:

    >>> [issubclass(TFLiteNotFoundError, kind) for kind in (FileNotFoundError, ValueError)]
    [True, True]
    """


# The metadata entry in which `export_tflite` records the Keras model's input names, in the
# model's order: the converter numbers input tensors by name, not in that order.
INPUT_ORDER = "tfprune_input_order"

# Operators whose input 1 is a weight tensor, and how to count their FLOPs.
WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D")

_NUMPY_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def read_flatbuffer(path) -> bytes:
    """The bytes of a `.tflite` file, after checking it exists and carries the TFLite identifier.

    Args:
        path: the `.tflite` file.

    Returns:
        The file's bytes.

    Raises:
        TFLiteNotFoundError: if `path` does not exist.
        TFLiteFileError: if it cannot be read or is not a TFLite flatbuffer.
        TypeError: for a path of the wrong type.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> read_flatbuffer(path)[4:8]
    b'TFL3'
    """
    path = checks.check_path(path)
    if not path.exists():
        raise TFLiteNotFoundError(
            2,
            "No such .tflite file; check the path or export one with tfprune.export_tflite",
            str(path),
        )
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TFLiteFileError(f"Cannot read '{path}': {error}.") from error
    # Every TFLite flatbuffer carries the file identifier "TFL3" at bytes 4-8.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteFileError(
            f"'{path}' is not a TFLite flatbuffer (no 'TFL3' identifier); re-export it."
        )
    return data


def unpack(data: bytes, source="the model"):
    """The flatbuffer as the schema's mutable object tree (`ModelT`).

    Args:
        data: flatbuffer bytes.
        source: what to call the model in error messages. Defaults to "the model".

    Returns:
        An `ai_edge_litert.schema_py_generated.ModelT`.

    Raises:
        TFLiteFileError: if the flatbuffer's offsets are corrupt.

    Example:

    ```python
    model = unpack(read_flatbuffer("model.tflite"))
    print(operator_names(model))  # ['FULLY_CONNECTED']
    ```
    """
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        if not model.subgraphs:
            raise ValueError("it has no subgraph")
    except Exception as error:  # the generated reader raises assorted errors on bad offsets
        raise TFLiteFileError(
            f"'{source}' is not a readable TFLite flatbuffer: {error}. Re-export it."
        ) from error
    return model


def pack(model) -> bytes:
    """Serialise a `ModelT` back to flatbuffer bytes with the TFLite identifier.

    Args:
        model: a `ModelT` (from `unpack`, possibly edited).

    Returns:
        Flatbuffer bytes.

    Example:

    ```python
    model = unpack(data)
    model.buffers[index].data = new_bytes
    data = pack(model)
    ```
    """
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def metadata(model) -> dict:
    """The file's metadata entries (name -> bytes), such as what `export_tflite` records.

    Args:
        model: a `ModelT` (from `unpack`).

    Returns:
        `{name: bytes}`.

    Example:

    ```python
    metadata(unpack(read_flatbuffer("model.tflite")))["tfprune_input_order"]  # b'["image"]'
    ```
    """
    found = {}
    for entry in model.metadata or []:
        data = model.buffers[entry.buffer].data
        found[as_text(entry.name)] = np.asarray([] if data is None else data, np.uint8).tobytes()
    return found


def as_text(name) -> str:
    """A flatbuffer string (bytes, as the schema's object API gives them) as `str`.

    Args:
        name: `bytes` or `str`.

    Returns:
        The `str`.

    Example:

    >>> as_text(b"serving_default")
    'serving_default'
    """
    return name.decode() if isinstance(name, bytes) else str(name)


def with_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """The flatbuffer with a metadata entry `name` set to `value` (LiteRT ignores it).

    Args:
        data: flatbuffer bytes.
        name: the entry's name.
        value: its bytes.

    Returns:
        New flatbuffer bytes.

    Example:

    ```python
    data = with_metadata(data, "tfprune_input_order", b'["tokens", "mask"]')
    ```
    """
    model = unpack(data)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if as_text(m.name) != name] + [entry]
    return pack(model)


def with_signature(data: bytes, inputs: list, outputs: list, key="serving_default") -> bytes:
    """The flatbuffer with one signature naming the first subgraph's inputs and outputs.

    A graph converted from a frozen function has no signature; LiteRT's signature runners
    (and `Interpreter.runSignature` on Android) need one.

    Args:
        data: flatbuffer bytes.
        inputs: a name for each subgraph input, in the subgraph's order.
        outputs: a name for each subgraph output, in the subgraph's order.
        key: the signature's key. Defaults to `"serving_default"`.

    Returns:
        New flatbuffer bytes, with any previous signatures replaced.

    Raises:
        ValueError: if the number of names differs from the subgraph's inputs or outputs.

    Example:

    ```python
    data = with_signature(data, ["image"], ["output_0"])
    ```
    """
    model = unpack(data)
    subgraph = model.subgraphs[0]
    for side, names, indices in (
        ("inputs", inputs, subgraph.inputs),
        ("outputs", outputs, subgraph.outputs),
    ):
        if len(names) != len(indices):
            raise ValueError(f"with_signature: {len(names)} names for {len(indices)} {side}.")

    def tensor_maps(names, indices):
        maps = []
        for name, index in zip(names, indices):
            item = schema.TensorMapT()
            item.name, item.tensorIndex = name, int(index)
            maps.append(item)
        return maps

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = key, 0
    signature.inputs = tensor_maps(inputs, subgraph.inputs)
    signature.outputs = tensor_maps(outputs, subgraph.outputs)
    model.signatureDefs = [signature]
    return pack(model)


def _enum_names(enum) -> dict:
    return {value: name for name, value in vars(enum).items() if not name.startswith("_")}


def operator_names(model) -> list[str]:
    """Builtin operator name per operator of the first subgraph ("CUSTOM" for custom ops).

    Args:
        model: a `ModelT`.

    Returns:
        One name per operator, in execution order.

    Example:

    ```python
    operator_names(unpack(read_flatbuffer("model.tflite")))  # ['FULLY_CONNECTED']
    ```
    """
    names = _enum_names(schema.BuiltinOperator)
    codes = model.operatorCodes
    # Builtin codes above 127 live in the newer 32-bit field.
    return [
        names.get(
            max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode),
            "CUSTOM",
        )
        for op in model.subgraphs[0].operators
    ]


def type_name(tensor) -> str:
    """The TensorType name of a `TensorT` ("FLOAT32", "INT8", ...).

    Args:
        tensor: a `TensorT`.

    Returns:
        The type's name.

    Example:

    ```python
    type_name(unpack(data).subgraphs[0].tensors[0])  # 'FLOAT32'
    ```
    """
    return _enum_names(schema.TensorType).get(tensor.type, str(tensor.type))


def buffer_bytes(model, tensor, data: bytes | None = None) -> np.ndarray | None:
    """The raw constant bytes of `tensor` (uint8), or None for an activation.

    Args:
        model: the `ModelT` holding the tensor.
        tensor: a `TensorT`.
        data: the file's bytes, for buffers stored after the flatbuffer (files over 2 GB).
            Defaults to `None`.

    Returns:
        A uint8 array, or `None`.

    Example:

    ```python
    raw = buffer_bytes(model, tensor)
    weights = raw.view(np.float32).reshape(tensor.shape)
    ```
    """
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return None
    buffer = model.buffers[tensor.buffer]
    if buffer.data is not None and len(buffer.data):
        return np.asarray(buffer.data, np.uint8)
    # Files over 2 GB keep buffers after the flatbuffer, addressed by offset.
    if buffer.offset > 1 and data is not None:
        return np.frombuffer(data, np.uint8, count=buffer.size, offset=buffer.offset)
    return None


def zero_fraction(model, tensor, data: bytes | None = None) -> float | None:
    """Fraction of a constant tensor's elements that are zero, sparse-encoded or not.

    A sparse-encoded buffer holds every nonzero (plus the zeros inside kept blocks), so the
    missing elements are zeros.

    Args:
        model: the `ModelT` holding the tensor.
        tensor: a `TensorT`.
        data: the file's bytes, as for `buffer_bytes`. Defaults to `None`.

    Returns:
        The fraction, or `None` for activations and unknown types.

    Example:

    ```python
    zero_fraction(model, tensor)  # 0.75 for a weight pruned to 75 %
    ```
    """
    raw = buffer_bytes(model, tensor, data)
    dtype = _NUMPY_TYPES.get(type_name(tensor))
    if raw is None or dtype is None:
        return None
    values = raw.view(dtype)
    size = (
        int(np.prod(tensor.shape))
        if tensor.shape is not None and len(tensor.shape)
        else values.size
    )
    if size == 0:
        return None
    return float(size - values.size + np.count_nonzero(values == 0)) / size


def block_shape(tensor) -> list[int]:
    """The block shape of a sparse-encoded tensor ([1, 4] for the 1x4 blocks), else [].

    Args:
        tensor: a `TensorT`.

    Returns:
        The block shape, one entry per dimension, or `[]`.

    Example:

    ```python
    block_shape(tensor)  # [1, 4] for a weight stored in 1x4 blocks
    ```
    """
    sparsity = tensor.sparsity
    if sparsity is None or sparsity.blockMap is None or not len(sparsity.blockMap):
        return []
    rank = len(tensor.shape)
    shape = [1] * rank
    for k, dim in enumerate(sparsity.blockMap):
        shape[int(dim)] = int(sparsity.dimMetadata[rank + k].denseSize)
    return shape


def _operator_flops(name, op, tensors) -> int | None:
    """FLOPs (2 per multiply-add) of one weight operator from its static tensor shapes."""
    if name not in WEIGHT_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
        return None
    weight = [int(d) for d in tensors[op.inputs[1]].shape]
    output = [int(d) for d in tensors[op.outputs[0]].shape]
    if name == "FULLY_CONNECTED":
        return 2 * int(np.prod(output)) * weight[1]
    if name == "TRANSPOSE_CONV":
        feature_input = [int(d) for d in tensors[op.inputs[2]].shape]
        return 2 * int(np.prod(feature_input)) * int(np.prod(weight[:-1]))
    if name == "DEPTHWISE_CONV_2D":
        return 2 * int(np.prod(output)) * weight[1] * weight[2]
    # CONV_2D weights are [out, kh, kw, in]; CONV_3D weights are [kd, kh, kw, in, out].
    per_output = int(np.prod(weight[1:])) if name == "CONV_2D" else int(np.prod(weight[:-1]))
    return 2 * int(np.prod(output)) * per_output


def signatures(model) -> dict:
    """The model's signatures, as the LiteRT runtime on a phone sees them.

    Args:
        model: a `ModelT`.

    Returns:
        `{signature key: {"inputs": {name: {"shape", "dtype"}}, "outputs": {...}}}`, with
        -1 for a dynamic dimension.

    Example:

    ```python
    signatures(model)["serving_default"]["inputs"]  # {'keras_tensor': {'shape': [-1, 4], ...}}
    ```
    """
    tensors = model.subgraphs[0].tensors

    def describe(tensor_maps):
        described = {}
        for item in tensor_maps or []:
            tensor = tensors[item.tensorIndex]
            dims = (
                tensor.shapeSignature
                if tensor.shapeSignature is not None and len(tensor.shapeSignature)
                else tensor.shape
            )
            name = as_text(item.name)
            described[name] = {"shape": [int(d) for d in dims], "dtype": type_name(tensor).lower()}
        return described

    result = {}
    for signature in model.signatureDefs or []:
        key = as_text(signature.signatureKey)
        result[key] = {"inputs": describe(signature.inputs), "outputs": describe(signature.outputs)}
    return result


def inspect_tflite(path) -> dict:
    """What a `.tflite` file stores: signature, operators with FLOPs, and every tensor's sparsity.

    Args:
        path: the `.tflite` file.

    Returns:
        A dict for the first subgraph:
        - `"operators"`: operator names in execution order;
        - `"ops"`: per operator `{"op", "inputs", "outputs", "flops"}` (`flops` for weight
          operators, 2 per multiply-add, from the file's static shapes, else None);
        - `"flops"`: their sum;
        - `"tensors"`: per tensor `{"index", "name", "shape", "type", "constant", "zeros",
          "sparse", "block_map", "block_shape"}`; `zeros` is the fraction of zero elements of a
          constant (None for activations), `sparse` is true when stored sparse-encoded and
          then `block_shape` is e.g. `[1, 4]`;
        - `"signatures"`: per signature key, the input and output names, shapes (-1 for a
          dynamic dimension) and dtypes, as the LiteRT runtime on a phone sees them;
        - `"bytes"`: the file size.

    Raises:
        TFLiteNotFoundError: if `path` does not exist.
        TFLiteFileError: for a file that is not a readable TFLite flatbuffer.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> path = tfprune.export_tflite(model, pathlib.Path(tempfile.mkdtemp()) / "model.tflite")
    >>> info = inspect_tflite(path)
    >>> info["operators"], info["flops"]
    (['FULLY_CONNECTED'], 24)
    """
    data = read_flatbuffer(path)
    model = unpack(data, path)
    try:
        subgraph = model.subgraphs[0]
        names = operator_names(model)
        ops = [
            {
                "op": name,
                "inputs": [int(i) for i in op.inputs],
                "outputs": [int(i) for i in op.outputs],
                "flops": _operator_flops(name, op, subgraph.tensors),
            }
            for name, op in zip(names, subgraph.operators)
        ]
        tensors = []
        for index, tensor in enumerate(subgraph.tensors):
            zeros = zero_fraction(model, tensor, data)
            sparsity = tensor.sparsity
            tensors.append(
                {
                    "index": index,
                    "name": as_text(tensor.name),
                    "shape": [int(d) for d in tensor.shape] if tensor.shape is not None else [],
                    "type": type_name(tensor),
                    "constant": zeros is not None,
                    "zeros": zeros,
                    "sparse": sparsity is not None,
                    "block_map": [int(d) for d in sparsity.blockMap]
                    if sparsity is not None and sparsity.blockMap is not None
                    else [],
                    "block_shape": block_shape(tensor),
                }
            )
    except (IndexError, TypeError, ValueError, AttributeError) as error:
        raise TFLiteFileError(
            f"'{path}' is not a consistent TFLite model: {error}. Re-export it."
        ) from error
    return {
        "operators": names,
        "ops": ops,
        "flops": sum(op["flops"] or 0 for op in ops),
        "tensors": tensors,
        "signatures": signatures(model),
        "bytes": len(data),
    }
