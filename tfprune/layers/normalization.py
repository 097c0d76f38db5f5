"""Normalization layers that remember the channels `shrink` removed from them.

A LayerNormalization (or RMSNormalization) over channels takes its mean and variance over
every channel, including the ones filter pruning zeroed. Dropping such a channel from a stock
layer would change the statistics, and with them every kept channel's output. These
subclasses keep the constants the removed channels carried (zeros, when pruning masked their
producers) and put them back beside the kept channels for the statistics only: the kept
channels are normalised exactly as in the wider layer, by the stock normalization op, and the
removed ones are sliced off again. The convolutions and dense layers around them are what got
smaller; the normalization itself costs what the wider one did, and converts (float and int8)
to the same TFLite ops.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


class _RemovedChannels:
    """The constants of the channels removed from a normalization layer, and putting them back."""

    def __init__(self, removed_values=(), **kwargs):
        super().__init__(**kwargs)
        values = np.asarray(removed_values, np.float64).reshape(-1)
        if not np.isfinite(values).all():
            raise ValueError(
                f"{self.name}: removed_values must be finite numbers, got {removed_values!r}."
            )
        self.removed_values = [float(v) for v in values]

    @classmethod
    def replacing(cls, layer, removed_values):
        """The class and config of the layer that replaces `layer` after removal.

        Args:
            layer: the stock layer, or one already shrunk once (its removed values are kept).
            removed_values: the constants the newly removed input channels carried.

        Returns:
            `(cls, config)`.
        """
        earlier = list(getattr(layer, "removed_values", []))
        return cls, {
            **layer.get_config(),
            "removed_values": earlier + [float(v) for v in removed_values],
        }

    def build(self, input_shape):
        axes = self.axis if isinstance(self.axis, (list, tuple)) else [self.axis]
        if [a % len(input_shape) for a in axes] != [len(input_shape) - 1]:
            raise ValueError(
                f"{self.name}: {type(self).__name__} normalises the last axis only, got "
                f"axis={self.axis}."
            )
        super().build(input_shape)

    def _widened(self, x):
        """`x` with the removed channels' constants appended on the last axis."""
        if not self.removed_values:
            return x
        constants = ops.cast(np.asarray(self.removed_values, np.float32), x.dtype)
        return ops.concatenate([x, ops.zeros_like(x[..., :1]) + constants], axis=-1)

    def _padded(self, weight):
        """A per-channel weight with zeros for the removed channels (their outputs are dropped)."""
        if weight is None or not self.removed_values:
            return weight
        return ops.concatenate(
            [weight, ops.zeros((len(self.removed_values),), weight.dtype)], axis=0
        )

    def get_config(self):
        return {**super().get_config(), "removed_values": list(self.removed_values)}


@keras.saving.register_keras_serializable(package="tfprune")
class ShrunkLayerNormalization(_RemovedChannels, keras.layers.LayerNormalization):
    """A LayerNormalization over the last axis that still counts channels `shrink` removed.

    The removed channels carried constants `c_j`; the layer appends them to its input,
    normalises over all channels as the wider layer did, and returns the kept ones. `shrink`
    creates it; it is rarely built by hand.

    Args:
        removed_values: the constants the removed channels carried. Defaults to `()`.
        **kwargs: `keras.layers.LayerNormalization` arguments; `axis` must be the last axis.

    Raises:
        ValueError: for non-finite removed values, or (when built) an axis other than the last.

    Example:

    >>> wide = keras.layers.LayerNormalization()
    >>> x = np.array([[1.0, 2.0, 0.0, 3.0]], np.float32)
    >>> narrow = ShrunkLayerNormalization(removed_values=[0.0])
    >>> np.allclose(narrow(x[:, [0, 1, 3]]), np.asarray(wide(x))[:, [0, 1, 3]], atol=1e-6)
    True
    """

    def call(self, inputs):
        outputs = ops.layer_normalization(
            self._widened(inputs),
            self._padded(self.gamma),
            self._padded(self.beta),
            axis=-1,
            epsilon=self.epsilon,
            rms_scaling=self.rms_scaling,
        )
        return ops.cast(outputs[..., : inputs.shape[-1]], self.compute_dtype)


@keras.saving.register_keras_serializable(package="tfprune")
class ShrunkRMSNormalization(_RemovedChannels, keras.layers.RMSNormalization):
    """An RMSNormalization over the last axis that still counts channels `shrink` removed.

    Args:
        removed_values: the constants the removed channels carried. Defaults to `()`.
        **kwargs: `keras.layers.RMSNormalization` arguments; `axis` must be the last axis.

    Raises:
        ValueError: as `ShrunkLayerNormalization`.

    Example:

    >>> narrow = ShrunkRMSNormalization(removed_values=[0.0, 0.0])
    >>> np.round(keras.ops.convert_to_numpy(narrow(np.ones((1, 2)))), 4)  # rms of 1, 1, 0, 0
    array([[1.4142, 1.4142]], dtype=float32)
    """

    def call(self, inputs):
        outputs = ops.rms_normalization(
            self._widened(inputs), scale=self._padded(self.scale), axis=-1, epsilon=self.epsilon
        )
        return ops.cast(outputs[..., : inputs.shape[-1]], self.compute_dtype)
