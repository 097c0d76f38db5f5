"""Normalization layers that remember the channels `shrink` removed from them.

A LayerNormalization (or RMSNormalization) over channels takes its mean and variance over
every channel, including the ones filter pruning zeroed. Dropping such a channel from a stock
layer would change the statistics, and with them every kept channel's output. These
subclasses keep the removed channels' contribution as three numbers (how many there were,
the sum and the sum of squares of the constants they carried), so the smaller layer
normalises exactly as the wider one did. The kept channels' arithmetic is unchanged, so they
convert to the same TFLite ops (sums, `rsqrt`) and train like the stock layers.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_REMOVED = ("removed_count", "removed_sum", "removed_square_sum")


def _removed_statistics(layer, removed_values) -> dict:
    """The config entries for `layer` after also removing inputs that carry `removed_values`."""
    values = np.asarray(removed_values, np.float64)
    return {
        "removed_count": int(getattr(layer, "removed_count", 0) + values.size),
        "removed_sum": float(getattr(layer, "removed_sum", 0.0) + values.sum()),
        "removed_square_sum": float(getattr(layer, "removed_square_sum", 0.0) + np.square(values).sum()),
    }


def _checked(count, total, square_total, layer_name):
    if int(count) != count or count < 0:
        raise ValueError(f"{layer_name}: removed_count must be a non-negative integer, got {count!r}.")
    if square_total < 0:
        raise ValueError(f"{layer_name}: removed_square_sum cannot be negative, got {square_total!r}.")
    return int(count), float(total), float(square_total)


class _RemovedChannels:
    """What a shrunk normalization layer keeps of the channels removed from it."""

    def __init__(self, removed_count=0, removed_sum=0.0, removed_square_sum=0.0, **kwargs):
        super().__init__(**kwargs)
        self.removed_count, self.removed_sum, self.removed_square_sum = _checked(
            removed_count, removed_sum, removed_square_sum, self.name
        )

    @classmethod
    def replacing(cls, layer, removed_values):
        """The class and config of the layer that replaces `layer` after removal.

        Args:
            layer: the stock layer, or one already shrunk once (its counts add up).
            removed_values: the constants the newly removed input channels carried.

        Returns:
            `(cls, config)`.
        """
        return cls, {**layer.get_config(), **_removed_statistics(layer, removed_values)}

    def build(self, input_shape):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [a % len(input_shape) for a in axes] != [len(input_shape) - 1]:
            raise ValueError(f"{self.name}: {type(self).__name__} normalises the last axis only, got axis={self.axis}.")
        super().build(input_shape)

    def _float_inputs(self, inputs):
        return ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in _REMOVED})
        return config


@keras.saving.register_keras_serializable(package="tfprune")
class ShrunkLayerNormalization(_RemovedChannels, keras.layers.LayerNormalization):
    """A LayerNormalization over the last axis that still counts channels `shrink` removed.

    The removed channels carried constants `c_j` (zero when pruning masked them). Over the
    `K` kept inputs `x` and those `R` constants, with `N = K + R`:
    `mean = (sum(x) + sum(c)) / N` and
    `variance = (sum((x - mean)^2) + sum(c^2) - 2 mean sum(c) + R mean^2) / N`,
    which is exactly what the wider layer computed. `shrink` creates it; it is rarely built
    by hand.

    Args:
        removed_count: `R`, how many channels were removed.
        removed_sum: `sum(c)` of the constants they carried.
        removed_square_sum: `sum(c^2)`.
        **kwargs: `keras.layers.LayerNormalization` arguments; `axis` must be the last axis.

    Raises:
        ValueError: for a negative or fractional count, a negative sum of squares, or (when
            built) an axis other than the last.

    Example:

    >>> wide = keras.layers.LayerNormalization()
    >>> x = np.array([[1.0, 2.0, 0.0, 3.0]], np.float32)
    >>> narrow = ShrunkLayerNormalization(removed_count=1)
    >>> np.allclose(narrow(x[:, [0, 1, 3]]), np.asarray(wide(x))[:, [0, 1, 3]], atol=1e-6)
    True
    """

    def call(self, inputs):
        x = self._float_inputs(inputs)
        total = float(x.shape[-1] + self.removed_count)
        mean = (ops.sum(x, axis=-1, keepdims=True) + self.removed_sum) / total
        centred = x - mean
        removed_spread = self.removed_square_sum - 2.0 * self.removed_sum * mean + self.removed_count * ops.square(mean)
        variance = (ops.sum(ops.square(centred), axis=-1, keepdims=True) + removed_spread) / total
        inverse = ops.rsqrt(variance + self.epsilon)
        # Keras' deprecated rms_scaling variant scales x by the variance, without centring.
        outputs = (x if self.rms_scaling else centred) * inverse
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, x.dtype)
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, x.dtype)
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="tfprune")
class ShrunkRMSNormalization(_RemovedChannels, keras.layers.RMSNormalization):
    """An RMSNormalization over the last axis that still counts channels `shrink` removed.

    `rms = sqrt((sum(x^2) + sum(c^2)) / (K + R))` over the `K` kept inputs and the `R`
    removed constants `c`, as the wider layer computed it.

    Args:
        removed_count: `R`, how many channels were removed.
        removed_sum: `sum(c)` (recorded like `ShrunkLayerNormalization`'s; RMS does not use it).
        removed_square_sum: `sum(c^2)`.
        **kwargs: `keras.layers.RMSNormalization` arguments; `axis` must be the last axis.

    Raises:
        ValueError: as `ShrunkLayerNormalization`.

    Example:

    >>> narrow = ShrunkRMSNormalization(removed_count=2)
    >>> narrow(np.ones((1, 2), np.float32))  # the rms over 4 channels is sqrt(2 / 4)
    """

    def call(self, inputs):
        x = self._float_inputs(inputs)
        total = float(x.shape[-1] + self.removed_count)
        mean_square = (ops.sum(ops.square(x), axis=-1, keepdims=True) + self.removed_square_sum) / total
        outputs = x * ops.rsqrt(mean_square + self.epsilon) * ops.cast(self.scale, x.dtype)
        return ops.cast(outputs, self.compute_dtype)
