"""`GroupedConv2D`: a convolution whose filter groups each read their own input channels.

Dynamic Structure Pruning (`tfprune.methods.DSP`) deploys every pruned convolution as one: G
convolutions on channel subsets, concatenated back into filter order, so the skipped
input channels cost nothing.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tfprune")
class GroupedConv2D(keras.layers.Layer):
    """A Conv2D whose filters form groups, each reading its own subset of input channels.

    Args:
        filters: output channels, in the original order.
        kernel_size: as Conv2D.
        groups: one `[input channel indices, filter indices]` pair per group; the filter
            indices of all groups together are a permutation of `range(filters)`.
        strides: as Conv2D. Defaults to 1.
        padding: as Conv2D, `"valid"` or `"same"`. Defaults to `"valid"`.
        dilation_rate: as Conv2D. Defaults to 1.
        activation: as Conv2D. Defaults to `None`.
        use_bias: as Conv2D. Defaults to `True`.

    Raises:
        ValueError: if the groups' filter indices do not cover every filter exactly once.

    Example:

    >>> groups = [[[0, 2], [0, 1, 2, 3]], [[1], [4, 5, 6, 7]]]  # filters 4-7 read channel 1 only
    >>> layer = GroupedConv2D(8, 3, groups=groups, padding="same")
    >>> tuple(layer(np.zeros((1, 5, 5, 3))).shape), [tuple(k.shape) for k in layer.kernels]
    ((1, 5, 5, 8), [(3, 3, 2, 4), (3, 3, 1, 4)])
    """

    def __init__(
        self,
        filters,
        kernel_size,
        groups,
        strides=1,
        padding="valid",
        dilation_rate=1,
        activation=None,
        use_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = (
            tuple(kernel_size)
            if isinstance(kernel_size, (list, tuple))
            else (kernel_size, kernel_size)
        )
        self.groups = [
            [list(map(int, inputs)), list(map(int, outputs))] for inputs, outputs in groups
        ]
        order = sorted(f for _, outputs in self.groups for f in outputs)
        if order != list(range(self.filters)):
            raise ValueError(
                f"GroupedConv2D '{self.name}': the groups' filter indices must cover "
                f"0..{self.filters - 1} once each."
            )
        self.strides = strides
        self.padding = padding
        self.dilation_rate = dilation_rate
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        concatenated = [f for _, outputs in self.groups for f in outputs]
        self._restore_order = np.argsort(concatenated).tolist()

    def build(self, input_shape):
        self.kernels = [
            self.add_weight(
                shape=(*self.kernel_size, max(1, len(inputs)), len(outputs)),
                initializer="glorot_uniform",
                name=f"kernel_{g}",
            )
            for g, (inputs, outputs) in enumerate(self.groups)
        ]
        self.bias = (
            self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
            if self.use_bias
            else None
        )

    def call(self, inputs):
        parts = []
        for (channels, _), kernel in zip(self.groups, self.kernels):
            selected = keras.ops.take(inputs, channels or [0], axis=-1)
            if not channels:
                # A group that reads no channel outputs zeros (its kernel is unused).
                selected = keras.ops.zeros_like(selected)
            parts.append(
                keras.ops.conv(
                    selected,
                    kernel,
                    strides=self.strides,
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                )
            )
        outputs = keras.ops.take(
            keras.ops.concatenate(parts, axis=-1), self._restore_order, axis=-1
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        reference = keras.layers.Conv2D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )
        return reference.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "groups": self.groups,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }
