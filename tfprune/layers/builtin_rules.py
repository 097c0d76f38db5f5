"""The registry entries for Keras' own layers and ops: which weight is a filter, and how
every other layer moves channels.

Importing `tfprune.layers` registers them; `tfprune.register_layer` and
`tfprune.register_channel_rule` add more the same way.
"""

from __future__ import annotations

import keras

from tfprune.core import keras_internals
from tfprune.layers import normalization
from tfprune.layers.registry import ChannelRule, LayerSpec, register_channel_rule, register_layer

_SEPARABLE = (("depthwise_kernel", "output"), ("pointwise_kernel", "output"))


def _kernel_spec(filter_axis, input_axis, **extra):
    """A spec for kernels with one filter axis and one input axis, plus a per-filter bias."""
    slices = (("kernel", filter_axis, "out"), ("kernel", input_axis, "in"), ("bias", 0, "out"))
    return LayerSpec(
        "kernel", filter_axes=(filter_axis,), input_axis=input_axis, slices=slices, **extra
    )


register_layer(keras.layers.Dense, _kernel_spec(-1, 0, config_key="units", fold="always"))
# A Conv2D with groups == input channels has a (..., 1, in * multiplier) kernel: output
# channel c * multiplier + m reads input c alone, as in a DepthwiseConv2D.
_GROUPED_DEPTHWISE = LayerSpec(
    "kernel",
    filter_axes=(-1,),
    input_axis=None,
    slices=(("kernel", -1, "in_expanded"), ("bias", 0, "in_expanded")),
    coupled=True,
    groups_key="groups",
)
for _conv in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D):
    register_layer(_conv, _kernel_spec(-1, -2, depthwise_form=_GROUPED_DEPTHWISE))
# Transposed kernels are (..., out, in): filters sit on the second-to-last axis. A constant
# input channel does not scatter to a constant output (borders overlap less), hence "zero".
for _conv in (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
):
    register_layer(_conv, _kernel_spec(-2, -1, flops_weights=(("kernel", "input"),), fold="zero"))
# Depthwise kernels are (..., in, multiplier); output channel c * multiplier + m.
_DEPTHWISE = LayerSpec(
    "kernel",
    filter_axes=(-2, -1),
    input_axis=None,
    slices=(("kernel", -2, "in"), ("bias", 0, "in_expanded")),
    config_key=None,
    coupled=True,
)
register_layer(keras.layers.DepthwiseConv2D, _DEPTHWISE)
register_layer(keras.layers.DepthwiseConv1D, _DEPTHWISE)
# Separable convolutions prune their pointwise part; the depthwise part follows its inputs.
_SEPARABLE_SPEC = LayerSpec(
    "pointwise_kernel",
    filter_axes=(-1,),
    input_axis=-2,
    flops_weights=_SEPARABLE,
    slices=(
        ("depthwise_kernel", -2, "in"),
        ("pointwise_kernel", -2, "in_expanded"),
        ("pointwise_kernel", -1, "out"),
        ("bias", 0, "out"),
    ),
    fold="zero",
)
register_layer(keras.layers.SeparableConv1D, _SEPARABLE_SPEC)
register_layer(keras.layers.SeparableConv2D, _SEPARABLE_SPEC)

_BN = ChannelRule(
    "passthrough",
    slices=tuple((name, 0, "in") for name in ("gamma", "beta", "moving_mean", "moving_variance")),
    masked=("gamma", "beta"),
)
register_channel_rule(keras.layers.BatchNormalization, _BN)
register_channel_rule(keras.layers.PReLU, ChannelRule("passthrough", slices=(("alpha", -1, "in"),)))
# Shape-preserving layers that act on each channel alone. Softmax mixes channels, so it stays
# a barrier: removing a channel would change the others.
_CHANNEL_MIXING = {"softmax", "log_softmax"}
register_channel_rule(
    keras.layers.Activation,
    ChannelRule(
        "passthrough",
        applies=lambda layer, shape: (
            getattr(layer.activation, "__name__", "") not in _CHANNEL_MIXING
        ),
        reason="a softmax over channels mixes them",
    ),
)


def _normalises_channels_alone(layer, input_shape) -> bool:
    """Whether a normalization layer pools over the last (channel) axis and nothing else, and
    has a per-channel scale with which pruning can zero a channel's output."""
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    if len(axes) != 1:
        return False
    last = axes[0] == -1 or (input_shape is not None and axes[0] == len(input_shape) - 1)
    scaled = isinstance(layer, keras.layers.RMSNormalization) or layer.scale or layer.rms_scaling
    return last and bool(scaled)


# A normalization over channels mixes them through its mean and variance. Its channels still
# pass through: pruning zeroes a channel's input and its gamma (and beta), so the channel leaves
# exactly zero, and the shrunk layer remembers the removed inputs' share of the statistics.
_NORMALIZATION_REASON = (
    "it normalises over other axes than the channels alone, or has no per-channel scale to "
    "zero a pruned channel with"
)
register_channel_rule(
    keras.layers.LayerNormalization,
    ChannelRule(
        "passthrough",
        slices=(("gamma", 0, "in"), ("beta", 0, "in")),
        masked=("gamma", "beta"),
        applies=_normalises_channels_alone,
        reason=_NORMALIZATION_REASON,
        shrunk_as=normalization.ShrunkLayerNormalization.replacing,
    ),
)
register_channel_rule(
    keras.layers.RMSNormalization,
    ChannelRule(
        "passthrough",
        slices=(("scale", 0, "in"),),
        masked=("scale",),
        applies=_normalises_channels_alone,
        reason=_NORMALIZATION_REASON,
        shrunk_as=normalization.ShrunkRMSNormalization.replacing,
    ),
)
for _name in (
    "ReLU", "LeakyReLU", "ELU", "Identity", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "ActivityRegularization", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "Resizing",
):  # fmt: skip
    register_channel_rule(getattr(keras.layers, _name), ChannelRule("passthrough"))
for _name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
    register_channel_rule(getattr(keras.layers, _name), ChannelRule("elementwise"))
# The same, written as expressions on tensors: `inputs + x` (ConvNeXt's residual),
# `x * gate`, `keras.ops.relu(x)`. The graph refuses ops combined with a per-channel constant.
for _name in ("Add", "Subtract", "Multiply", "Maximum", "Minimum"):
    register_channel_rule(keras_internals.numpy_op(_name), ChannelRule("elementwise"))
for _name in ("Negative", "Absolute", "Square", "Tanh"):
    register_channel_rule(keras_internals.numpy_op(_name), ChannelRule("passthrough"))
for _name in (
    "Relu",
    "Relu6",
    "Sigmoid",
    "Silu",
    "Gelu",
    "HardSigmoid",
    "HardSilu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Softplus",
):
    register_channel_rule(keras_internals.nn_op(_name), ChannelRule("passthrough"))
# keras.applications' ConvNeXt scales each channel by a learned `gamma` after its blocks.
_LAYER_SCALE = keras_internals.convnext_layer_scale()
if _LAYER_SCALE is not None:
    # Its weight is created without a name of its own, so it is given by position.
    register_channel_rule(
        _LAYER_SCALE,
        ChannelRule("passthrough", slices=((0, 0, "in"),), config_key="projection_dim"),
    )
register_channel_rule(keras.layers.Concatenate, ChannelRule("concat"))
register_channel_rule(keras.layers.Flatten, ChannelRule("flatten"))
register_channel_rule(keras.layers.Reshape, ChannelRule("reshape", config_key="target_shape"))
