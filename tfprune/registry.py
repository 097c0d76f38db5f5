"""Per-layer-type knowledge: which weight is pruned and which of its axes is a filter.

Everything else in tfprune asks this registry instead of testing layer types itself, so
supporting a new layer type is one `register_layer` call.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How tfprune sees one layer type.

    Args:
        weight: name of the prunable variable (`variable.name`), e.g. `"kernel"`.
        filter_axes: axes of that weight that index output channels ("filters"). Several
            axes are flattened in C order, as DepthwiseConv2D's `(in, multiplier)` pair is.
        input_axis: axis indexing input channels, along which N:M groups and blocks run
            (TFLite stores weights with this axis innermost), or `None` if the layer has no
            input-channel reduction (depthwise convolutions).
        bias: name of the per-filter bias variable that follows a filter mask, or `None`.
        flops_weights: `(variable name, "output" | "input")` pairs; each weight element is
            one multiply-add per spatial position of the layer's output (or input, for
            transposed convolutions, which scatter every input position).

    Example:

    >>> spec = LayerSpec("kernel", filter_axes=(3,), input_axis=2)
    >>> spec.filter_count((3, 3, 8, 16))
    16
    """

    weight: str
    filter_axes: tuple
    input_axis: int | None
    bias: str | None = "bias"
    flops_weights: tuple = (("kernel", "output"),)

    def filter_count(self, shape) -> int:
        """Number of filters a weight of `shape` has."""
        return math.prod(shape[a] for a in self.filter_axes)

    def _moved(self, ndim):
        """Axis order that puts filter axes first and the input axis last."""
        filters = [a % ndim for a in self.filter_axes]
        last = [] if self.input_axis is None else [self.input_axis % ndim]
        middle = [a for a in range(ndim) if a not in filters and a not in last]
        return filters + middle + last

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """View a weight as `(filters, spatial, inputs)`.

        Args:
            array: an array of the weight's shape.

        Returns:
            A 3-D array; `inputs` is 1 for layers without an input axis.
        """
        moved = np.transpose(array, self._moved(array.ndim))
        n_inputs = 1 if self.input_axis is None else array.shape[self.input_axis]
        return moved.reshape(self.filter_count(array.shape), -1, n_inputs)

    def from_canonical(self, canonical: np.ndarray, shape) -> np.ndarray:
        """Inverse of `to_canonical` for a weight of `shape`."""
        order = self._moved(len(shape))
        moved = canonical.reshape([shape[a] for a in order])
        return np.transpose(moved, np.argsort(order))


_REGISTRY: dict[type, LayerSpec] = {}


def register_layer(layer_class: type, spec: LayerSpec) -> None:
    """Teach tfprune how to prune a layer type (and its subclasses).

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        spec: a `LayerSpec` describing its prunable weight.

    Raises:
        TypeError: if `layer_class` is not a Keras layer class or `spec` is not a
            `LayerSpec`.

    Example:

    >>> register_layer(MyConv, LayerSpec("kernel", filter_axes=(3,), input_axis=2))
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(f"register_layer: layer_class must be a keras.layers.Layer subclass, got {layer_class!r}.")
    if not isinstance(spec, LayerSpec):
        raise TypeError(f"register_layer: spec must be a tfprune.LayerSpec, got {type(spec).__name__}.")
    _REGISTRY[layer_class] = spec


def spec_for(layer) -> LayerSpec | None:
    """The `LayerSpec` for `layer`'s type (most specific registered class), or `None`.

    Args:
        layer: a Keras layer instance.

    Returns:
        The spec, or `None` if the layer type is not prunable.

    Example:

    >>> spec_for(keras.layers.Dense(4)).weight
    'kernel'
    """
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def supported_types() -> list[str]:
    """Names of the registered layer types, for error messages and docs."""
    return sorted(cls.__name__ for cls in _REGISTRY)


def variable(layer, name: str):
    """The layer's variable called `name` (e.g. "kernel"), or `None`.

    Looked up by variable name rather than attribute, because attributes such as
    `Dense.kernel` may return a derived tensor (LoRA, quantization) instead of the variable.
    """
    for var in layer.weights:
        if var.name == name:
            return var
    return None


_SEPARABLE = (("depthwise_kernel", "output"), ("pointwise_kernel", "output"))

register_layer(keras.layers.Dense, LayerSpec("kernel", filter_axes=(-1,), input_axis=0))
register_layer(keras.layers.Conv1D, LayerSpec("kernel", filter_axes=(-1,), input_axis=-2))
register_layer(keras.layers.Conv2D, LayerSpec("kernel", filter_axes=(-1,), input_axis=-2))
register_layer(keras.layers.Conv3D, LayerSpec("kernel", filter_axes=(-1,), input_axis=-2))
# Transposed kernels are (..., out, in): filters sit on the second-to-last axis.
_TRANSPOSED = LayerSpec("kernel", filter_axes=(-2,), input_axis=-1, flops_weights=(("kernel", "input"),))
register_layer(keras.layers.Conv1DTranspose, _TRANSPOSED)
register_layer(keras.layers.Conv2DTranspose, _TRANSPOSED)
register_layer(keras.layers.Conv3DTranspose, _TRANSPOSED)
# Depthwise kernels are (..., in, multiplier); output channel c * multiplier + m.
_DEPTHWISE = LayerSpec("kernel", filter_axes=(-2, -1), input_axis=None)
register_layer(keras.layers.DepthwiseConv2D, _DEPTHWISE)
register_layer(keras.layers.DepthwiseConv1D, _DEPTHWISE)
# Separable convolutions prune their pointwise part; the depthwise part follows its inputs.
register_layer(
    keras.layers.SeparableConv1D,
    LayerSpec("pointwise_kernel", filter_axes=(-1,), input_axis=-2, flops_weights=_SEPARABLE),
)
register_layer(
    keras.layers.SeparableConv2D,
    LayerSpec("pointwise_kernel", filter_axes=(-1,), input_axis=-2, flops_weights=_SEPARABLE),
)
