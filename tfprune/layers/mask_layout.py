"""Where the variables a layer's mask covers sit in the one matrix the mask is.

A layer's `LayerSpec` (`tfprune.layers.spec`) names its prunable weight; a recurrent layer
joins its recurrent kernel to it, a Bidirectional layer interleaves its directions. These
functions read a built layer's variables through that layout.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np


def named_variable(layer, name: str):
    """The layer's variable called `name` (e.g. "kernel"), or `None`.

    Looked up by variable name rather than attribute, because attributes such as
    `Dense.kernel` may return a derived tensor (LoRA, quantization) instead of the variable.
    A name with a slash (`"value/kernel"`) is the end of the variable's path: a variable of
    a sublayer, as in MultiHeadAttention's projections.

    Args:
        layer: a built Keras layer.
        name: the variable's name, or the end of its path.

    Returns:
        The `keras.Variable`, or `None`.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> tuple(named_variable(dense, "kernel").shape), named_variable(dense, "gamma")
    ((3, 2), None)
    """
    for var in layer.weights:
        if var.name == name or ("/" in name and var.path.endswith("/" + name)):
            return var
    return None


@dataclasses.dataclass(frozen=True)
class MaskLayout:
    """Where the variables a layer's mask covers sit in the one matrix the mask is.

    Most layers have one prunable weight, which is the matrix. A recurrent layer joins its
    recurrent kernel below its kernel (rows along the input axis), so that a mask covers its
    state too; a Bidirectional layer interleaves its two directions' columns gate by gate.

    Attributes:
        shape: the matrix's shape.
        kernels: `(variable, rows, columns)` per covered variable: `rows` a tuple of slices
            indexing the matrix's leading axes, `columns` the matrix columns (last axis) the
            variable's columns are, in order, or `None` for all of them.
        bias_shape: the shape of the per-filter bias laid out the same way, or `None`.
        biases: `(variable, columns)` per bias variable, as for kernels (last axis).

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> layout = mask_layout(lstm, spec_for(lstm))
    >>> layout.shape, [rows for _, rows, _ in layout.kernels]
    ((5, 12), [(slice(0, 2, None),), (slice(2, 5, None),)])
    """

    shape: tuple
    kernels: tuple
    bias_shape: tuple | None = None
    biases: tuple = ()

    def share(self, matrix, rows, columns):
        """One variable's part of `matrix` (a NumPy array or a tensor of `shape`).

        Args:
            matrix: an array of this layout's shape (or of `bias_shape`, with `rows` `()`).
            rows: the part's `rows`, as in `kernels`.
            columns: the part's `columns`.

        Returns:
            The part, shaped as the variable.
        """
        part = matrix[rows] if rows else matrix
        if columns is None:
            return part
        if isinstance(part, np.ndarray):
            return part[..., columns]
        return keras.ops.take(part, columns, axis=-1)

    def assemble(self, arrays, bias=False) -> np.ndarray:
        """The matrix (or the laid-out bias) from one array per variable, in layout order.

        Args:
            arrays: arrays shaped as the kernels' (or the biases') variables.
            bias: assemble the bias instead of the kernels. Defaults to `False`.

        Returns:
            An array of `shape` (or `bias_shape`).
        """
        parts = self.biases if bias else self.kernels
        matrix = np.zeros(self.bias_shape if bias else self.shape, np.float64)
        for array, part in zip(arrays, parts):
            rows, columns = ((), part[1]) if bias else part[1:]
            target = matrix[rows] if rows else matrix
            if columns is None:
                target[...] = array
            else:
                target[..., columns] = array
        return matrix


def mask_layout(layer, spec) -> MaskLayout:
    """The `MaskLayout` of a built layer: its spec's `layout`, or its weight with the `joined`
    weights appended along the input axis, and its bias.

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A `MaskLayout`.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> layout = mask_layout(dense, spec_for(dense))
    >>> layout.shape, layout.bias_shape
    ((3, 2), (2,))
    """
    if spec.layout is not None:
        return spec.layout(layer)
    variables = [named_variable(layer, name) for name in (spec.weight, *spec.joined)]
    shape = tuple(variables[0].shape)
    bias = named_variable(layer, spec.bias) if spec.bias else None
    biases = () if bias is None else ((bias, None),)
    bias_shape = None if bias is None else tuple(bias.shape)
    if len(variables) == 1:
        return MaskLayout(shape, ((variables[0], (), None),), bias_shape, biases)
    axis = spec.input_axis % len(shape)
    kernels, start = [], 0
    for v in variables:
        rows = (*(slice(None),) * axis, slice(start, start + v.shape[axis]))
        kernels.append((v, rows, None))
        start += v.shape[axis]
    return MaskLayout(
        (*shape[:axis], start, *shape[axis + 1 :]), tuple(kernels), bias_shape, biases
    )


def pruned_variables(layer, spec) -> list:
    """The variables a layer's mask covers (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A list of `keras.Variable`s.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> [v.name for v in pruned_variables(lstm, spec_for(lstm))]
    ['kernel', 'recurrent_kernel']
    """
    return [v for v, _, _ in mask_layout(layer, spec).kernels]


def pruned_shape(layer, spec) -> tuple:
    """The shape of the matrix a layer's mask covers (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A shape tuple.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> pruned_shape(lstm, spec_for(lstm))  # 2 inputs + 3 recurrent rows, 4 gates x 3 units
    (5, 12)
    """
    return mask_layout(layer, spec).shape


def pruned_array(layer, spec) -> np.ndarray:
    """The values a layer's mask covers, as one matrix (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A NumPy array of `pruned_shape(layer, spec)`.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> pruned_array(dense, spec_for(dense)).shape
    (3, 2)
    """
    layout = mask_layout(layer, spec)
    arrays = [keras.ops.convert_to_numpy(v) for v, _, _ in layout.kernels]
    if len(arrays) == 1 and layout.kernels[0][2] is None:
        return arrays[0]
    return layout.assemble(arrays).astype(arrays[0].dtype)


def pruned_bias(layer, spec) -> np.ndarray | None:
    """The per-filter bias laid out as the mask's columns (see `MaskLayout`), or `None`.

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A NumPy array of the layout's `bias_shape`, or `None` for a layer without a bias.

    Example:

    >>> from tfprune.layers.registry import spec_for
    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> pruned_bias(dense, spec_for(dense))
    array([0., 0.], dtype=float32)
    """
    layout = mask_layout(layer, spec)
    if not layout.biases:
        return None
    arrays = [keras.ops.convert_to_numpy(v) for v, _ in layout.biases]
    if len(arrays) == 1 and layout.biases[0][1] is None:
        return arrays[0]
    return layout.assemble(arrays, bias=True).astype(arrays[0].dtype)
