"""The registry entries for Keras' own layers and ops: which weight is a filter, and how
every other layer moves channels.

Importing `tfprune.layers` registers them; `tfprune.register_layer` and
`tfprune.layers.register_channel_rule` add more the same way.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.layers import moves, normalization, traced
from tfprune.layers.bidirectional import UnevenBidirectional
from tfprune.layers.mask_layout import MaskLayout, mask_layout, named_variable
from tfprune.layers.registry import (
    register_channel_rule,
    register_delegating_wrapper,
    register_layer,
    register_op_flops,
    spec_for,
    units_kept,
)
from tfprune.layers.spec import ChannelRule, LayerSpec, Members, Units

_SEPARABLE = (("depthwise_kernel", "output"), ("pointwise_kernel", "output"))


def _kernel_spec(filter_axis, input_axis, **extra):
    """A spec for kernels with one filter axis and one input axis, plus a per-filter bias."""
    slices = (("kernel", filter_axis, "out"), ("kernel", input_axis, "in"), ("bias", 0, "out"))
    return LayerSpec(
        "kernel", filter_axes=(filter_axis,), input_axis=input_axis, slices=slices, **extra
    )


register_layer(keras.layers.Dense, _kernel_spec(-1, 0, config_key="units", fold="always"))


def einsum_dense_spec(layer) -> LayerSpec | None:
    """The spec of one `EinsumDense`, from its equation: its filters are the first kernel
    letter the output keeps (a Dense's units, or a projection's heads in `"bqm,muh->bquh"`,
    each head a filter of `size` columns), read from the first kernel letter the input
    holds (a head in `"bquh,uhm->bqm"`, its size then like a convolution's taps). `None`
    where no such letters exist, a kernel letter is in neither, or the bias is not per filter.

    Args:
        layer: an `EinsumDense` layer.

    Returns:
        A `LayerSpec`, or `None`.

    Example:

    >>> spec = einsum_dense_spec(keras.layers.EinsumDense("bqm,muh->bquh", (None, 4, 8)))
    >>> spec.filter_axes, spec.output_axis, spec.output_axes
    ((1,), -2, (2,))
    """
    inputs, _, output = layer.equation.replace(" ", "").partition("->")
    x, _, kernel = inputs.partition(",")
    read = [letter for letter in kernel if letter in x and letter not in output]
    kept = [letter for letter in kernel if letter in output and letter not in x]
    # A kernel letter in the input, the output and nowhere or both (a weight per group) is
    # not a dense layer's.
    if not read or not kept or len(read) + len(kept) != len(kernel):
        return None
    unit, source = kept[0], read[0]
    bias = layer.bias_axes
    if bias and unit not in bias:
        return None
    slices = (("kernel", kernel.index(unit), "out"), ("kernel", kernel.index(source), "in"))
    if bias:
        slices += (("bias", bias.index(unit), "out"),)
    return LayerSpec(
        "kernel",
        filter_axes=(kernel.index(unit),),
        input_axis=kernel.index(source),
        slices=slices,
        # `output_shape` lists the output's sizes after the batch (or an ellipsis).
        config_key=("output_shape", output.index(unit) - len(output)),
        fold="always",
        output_axis=output.index(unit) - len(output),
        input_channel_axis=x.index(source) - len(x),
        output_axes=tuple(kernel.index(letter) for letter in kept[1:]),
    )


register_layer(
    keras.layers.EinsumDense,
    LayerSpec(
        "kernel",
        filter_axes=(-1,),
        input_axis=0,
        resolve=einsum_dense_spec,
        reason="its equation has no letter for units that the output keeps and the input "
        "does not, or its bias is not per unit",
    ),
)
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
_GAMMA_BETA = dict(slices=(("gamma", 0, "in"), ("beta", 0, "in")), masked=("gamma", "beta"))
_NORMALIZATION_REASON = (
    "it normalises over other axes than the channels alone, or has no per-channel scale to "
    "zero a pruned channel with"
)
register_channel_rule(
    keras.layers.LayerNormalization,
    ChannelRule(
        "passthrough",
        **_GAMMA_BETA,
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
# Layers that act on each entry alone pass channels on any axis (a traced attention's heads).
for _name in (
    "ReLU", "LeakyReLU", "ELU", "Identity", "Dropout", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "ActivityRegularization",
):  # fmt: skip
    register_channel_rule(getattr(keras.layers, _name), ChannelRule("passthrough", any_axis=True))
for _name in (
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
    "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D",
    "UpSampling3D", "Resizing",
):  # fmt: skip
    register_channel_rule(getattr(keras.layers, _name), ChannelRule("passthrough"))
for _name in ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"):
    register_channel_rule(getattr(keras.layers, _name), ChannelRule("elementwise", any_axis=True))
# The same, written as expressions on tensors (`inputs + x`, ConvNeXt's residual; `x * gate`;
# `keras.ops.relu(x)`) or inside a traced custom layer, where ops also move channels between
# axes (`tfprune.layers.moves`). The graph refuses ops combined with a per-channel constant.
_EACH_ENTRY = (
    "abs", "absolute", "negative", "square", "sqrt", "rsqrt", "reciprocal", "exp", "log",
    "log1p", "expm1", "sign", "ceil", "floor", "round", "clip", "cast", "erf", "tanh",
    "sin", "cos", "zeros_like", "ones_like", "full_like", "nan_to_num", "stop_gradient",
    "logical_not", "isnan", "isfinite", "relu", "relu6", "sigmoid", "silu", "swish",
    "gelu", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu", "elu", "selu",
    "softplus", "softsign", "mish",
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
    "maximum", "minimum", "where", "equal", "not_equal", "greater", "greater_equal", "less",
    "less_equal", "logical_and", "logical_or", "mod",
)  # fmt: skip
_MOVES = {
    moves.same_axis: _EACH_ENTRY + traced.CREATORS,  # what creators make carries none
    moves.expand_dims: ("expand_dims",),
    moves.squeeze: ("squeeze",),
    moves.reduction: (
        "mean", "sum", "max", "min", "prod", "std", "var", "any", "all", "amax", "amin",
        "logsumexp", "argmax", "argmin", "norm",
    ),
    moves.along_axis: ("softmax", "log_softmax", "take_along_axis", "cumsum", "cumprod", "sort"),
    moves.transpose: ("transpose", "moveaxis", "swapaxes"),
    moves.repeat: ("repeat",),
    moves.tile: ("tile",),
    moves.broadcast_to: ("broadcast_to",),
    moves.get_item: ("get_item",),
    moves.slice_: ("slice",),
    moves.concatenate: ("concatenate",),
    moves.split: ("split",),
    moves.stack: ("stack",),
    moves.reshape: ("reshape",),
    moves.einsum: ("einsum",),
    moves.matmul: ("matmul",),
    moves.dot_product_attention: ("dot_product_attention",),
}  # fmt: skip
# These only rearrange entries: constant channels stay constant through them.
_STRUCTURAL = {
    moves.expand_dims, moves.squeeze, moves.transpose, moves.repeat, moves.tile,
    moves.broadcast_to, moves.get_item, moves.slice_, moves.concatenate, moves.split,
    moves.stack, moves.reshape,
}  # fmt: skip
for _move, _functions in _MOVES.items():
    for _function in _functions:
        register_channel_rule(
            f"keras.ops.{_function}",
            ChannelRule("moves", moves=_move, structural=_move in _STRUCTURAL),
        )
# Keras' Softmax layer, as traced attention applies it over the keys.
register_channel_rule(keras.layers.Softmax, ChannelRule("moves", moves=moves.along_axis))
# A traced layer's sizes carry no channels, and reading one leaves its tensor's alone.
register_channel_rule(
    traced.Dimension, ChannelRule("moves", moves=lambda view: moves.Move([None], []))
)
register_channel_rule(
    traced.Weight,
    ChannelRule("weight", slices=(("value", -1, "out"),), config_key="shape"),
)
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
# Kept, split into heads, merged back, or merged with the axes before it when last (the
# conv-to-RNN step of speech models, as Flatten does): `shrink` rewrites `target_shape`.
register_channel_rule(
    keras.layers.Reshape, ChannelRule("moves", moves=moves.reshape, structural=True)
)


def _size(dimension) -> int:
    return 1 if dimension is None else int(dimension)


def einsum_flops(equation: str, *shapes) -> int:
    """FLOPs per example of `keras.ops.einsum(equation, *operands)`: one multiply-add for
    every combination of the letters' sizes (an unknown size, the batch, counts 1).

    Args:
        equation: the einsum equation.
        *shapes: the operands' shapes.

    Returns:
        FLOPs.

    Example:

    >>> einsum_flops("bqhd,bkhd->bhqk", (None, 8, 2, 4), (None, 8, 2, 4))  # 2 * 8*8*2*4
    1024
    """
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    sizes = {}
    for letters, shape in zip(inputs, shapes):
        if "..." in letters:
            head, tail = letters.split("...")
            covered = shape[len(head) : len(shape) - len(tail)]
            sizes["..."] = max(sizes.get("...", 1), math.prod(_size(d) for d in covered))
            shape = (*shape[: len(head)], *shape[len(shape) - len(tail) :])
            letters = head + tail
        for letter, dimension in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), _size(dimension))
    return 2 * math.prod(sizes.values())


def matmul_flops(a, b) -> int:
    """FLOPs per example of `keras.ops.matmul(a, b)` on operands of shapes `a` and `b`.

    Args:
        a: the first operand's shape.
        b: the second's.

    Returns:
        FLOPs.

    Example:

    >>> matmul_flops((None, 2, 8, 4), (None, 2, 4, 8))  # 2 heads: 2 * 2 * 8*4*8
    1024
    """
    a = (1, *a) if len(a) == 1 else tuple(a)
    b = (*b, 1) if len(b) == 1 else tuple(b)
    batch = [max(_size(x), _size(y)) for x, y in zip(a[-3::-1], b[-3::-1])]
    longer = a if len(a) > len(b) else b
    batch += [_size(d) for d in longer[: len(longer) - 2 - len(batch)]]
    return 2 * math.prod(batch) * _size(a[-2]) * _size(a[-1]) * _size(b[-1])


def dot_product_attention_flops(query, key, value, *rest, **options) -> int:
    """FLOPs per example of `keras.ops.dot_product_attention`: the scores and the weighted
    sum, for inputs `(batch, length, heads, size)`.

    Args:
        query: the query's shape.
        key: the key's shape.
        value: the value's shape.
        *rest: the other arguments (bias, mask, scale), which cost no multiply-adds.
        **options: the same, by keyword.

    Returns:
        FLOPs.

    Example:

    >>> dot_product_attention_flops((None, 8, 2, 4), (None, 8, 2, 4), (None, 8, 2, 4))
    2048
    """
    queries, heads, size = _size(query[1]), _size(query[2]), _size(query[3])
    keys = _size(key[1])
    return 2 * queries * keys * heads * (size + _size(value[3]))


def reversed_embedding_flops(layer, inputs, reverse=False, **options) -> int:
    """FLOPs per example of a `ReversibleEmbedding` call: 0 for a lookup; with
    `reverse=True` (a language model's output layer, KerasHub's), each position's hidden
    vector times the whole table.

    Args:
        layer: the `ReversibleEmbedding`.
        inputs: the shape of what it is called on.
        reverse: whether the call is reversed. Defaults to `False`.
        **options: its other arguments, which cost nothing.

    Returns:
        FLOPs.

    Example:

    >>> layer = keras.layers.ReversibleEmbedding(100, 8)
    >>> reversed_embedding_flops(layer, (None, 16, 8), reverse=True)  # 2 * 16 * 8 * 100
    25600
    """
    if not reverse:
        return 0
    return 2 * math.prod(_size(d) for d in inputs[1:]) * int(layer.input_dim)


register_op_flops("einsum", einsum_flops)
register_op_flops(keras.layers.ReversibleEmbedding, reversed_embedding_flops)
register_op_flops("matmul", matmul_flops)
register_op_flops("dot_product_attention", dot_product_attention_flops)


def attention_head_flops(layer, shapes) -> int:
    """FLOPs of one head of a MultiHeadAttention call per example: its slices of the query,
    key, value and output projections, and its share of the score and weighted-sum matmuls.

    Args:
        layer: a built `keras.layers.MultiHeadAttention`.
        shapes: the shapes of the call's query, value and (optionally) key.

    Returns:
        FLOPs of one head.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> _ = attention(np.zeros((1, 10, 16)), np.zeros((1, 10, 16)))
    >>> attention_head_flops(attention, [(1, 10, 16), (1, 10, 16)])
    6720
    """
    query, value = shapes[0], shapes[1]
    key = shapes[2] if len(shapes) > 2 else value
    key_dim = layer.key_dim
    value_dim = layer.value_dim or key_dim
    out_dim = named_variable(layer, "attention_output/kernel").shape[-1]
    queries = math.prod(query[1:-1])
    keys = math.prod(key[1:-1])
    # Each query attends over the attention axes of the key only.
    axes = layer.get_config()["attention_axes"] or tuple(range(1, len(key) - 1))
    attended = math.prod(key[a] for a in axes)
    projections = (
        queries * query[-1] * key_dim + keys * key[-1] * key_dim + keys * value[-1] * value_dim
    )
    attention = queries * attended * (key_dim + value_dim)
    return 2 * (projections + attention + queries * value_dim * out_dim)


def _slice_heads(layer, heads):
    """MultiHeadAttention's config and weights with only `heads` left: the head axis of the
    query, key and value kernels (axis 1) and biases (axis 0), and of the output kernel (0)."""
    config = {**layer.get_config(), "num_heads": len(heads)}
    projections = keras_internals.attention_projections(layer)
    head_axis = {}
    for name in ("query", "key", "value"):
        head_axis[id(projections[name].kernel)] = 1
        if projections[name].bias is not None:
            head_axis[id(projections[name].bias)] = 0
    head_axis[id(projections["output"].kernel)] = 0
    return (config, *units_kept(layer, head_axis, heads))


# A head is a unit inside the layer: masking its value projection (kernel and bias) makes
# its output exactly zero, whatever its query and key; `shrink` then removes the head from
# all four projections.
register_layer(
    keras.layers.MultiHeadAttention,
    LayerSpec(
        "value/kernel",
        filter_axes=(1,),
        input_axis=0,
        bias="value/bias",
        flops_weights=(),
        config_key="num_heads",
        units=Units(flops=attention_head_flops, slicer=_slice_heads),
    ),
)


def _groups_channels_alone(layer, input_shape) -> bool:
    """Whether a GroupNormalization groups the last (channel) axis and has a per-channel scale
    to zero a pruned group's output with."""
    last = layer.axis == -1 or (input_shape is not None and layer.axis == len(input_shape) - 1)
    return last and bool(layer.scale)


# GroupNormalization's statistics run over each group of channels alone: a whole group can
# go without changing the others, so its channels are tied into one unit.
register_channel_rule(
    keras.layers.GroupNormalization,
    ChannelRule(
        "grouped",
        **_GAMMA_BETA,
        applies=_groups_channels_alone,
        reason="it normalises over other axes than the channels, or has no per-channel scale "
        "to zero a pruned group with",
    ),
)


# An embedding table's columns are the channels it writes: filter pruning removes embedding
# dimensions (the next layers read fewer inputs), the other granularities prune the table,
# whose size is what matters on a phone. A lookup costs no multiply-adds.
register_layer(
    keras.layers.Embedding,
    LayerSpec(
        "embeddings",
        filter_axes=(1,),
        input_axis=0,
        bias=None,
        flops_weights=(),
        slices=(("embeddings", 1, "out"),),
        config_key="output_dim",
        fold="zero",
    ),
)


# TimeDistributed applies its layer to every step: pruned and shrunk as that layer, with the
# steps counted in its FLOPs.
register_delegating_wrapper(keras.layers.TimeDistributed)


# A recurrent unit is a filter: its column in every gate of the kernel and of the recurrent
# kernel (joined into one matrix, so that unstructured and block masks cover the state too),
# and its bias entries. A unit whose weights and bias are all zero stays exactly zero at
# every step from a zero state (its gates are constants, its candidate is 0), so it outputs
# 0 and its row of the recurrent kernel reads nothing: `shrink` removes both.
_RECURRENT_SLICES = (
    ("kernel", 0, "in"),
    ("kernel", 1, "out_gates"),
    ("recurrent_kernel", 0, "out"),
    ("recurrent_kernel", 1, "out_gates"),
    ("bias", -1, "out_gates"),
)


def _recurrent_spec(gates: int, config_key="units") -> LayerSpec:
    return LayerSpec(
        "kernel",
        filter_axes=(1,),
        input_axis=0,
        flops_weights=(("kernel", "input"), ("recurrent_kernel", "input")),
        slices=_RECURRENT_SLICES,
        config_key=config_key,
        fold="zero",
        gates=gates,
        joined=("recurrent_kernel",),
        states=True,
        dead_output="zero",
    )


_RECURRENT_GATES = (
    (keras.layers.LSTM, keras.layers.LSTMCell, 4),
    (keras.layers.GRU, keras.layers.GRUCell, 3),
    (keras.layers.SimpleRNN, keras.layers.SimpleRNNCell, 1),
)
for _layer, _, _gates in _RECURRENT_GATES:
    register_layer(_layer, _recurrent_spec(_gates))
# ConvLSTM1D/2D/3D: each hidden channel is a unit, its four gates' output channels in both
# kernels (input and recurrent, convolutions of the same size), as an LSTM unit's columns.
_CONV_LSTM = LayerSpec(
    "kernel",
    filter_axes=(-1,),
    input_axis=-2,
    flops_weights=(("kernel", "input"), ("recurrent_kernel", "input")),
    slices=(
        ("kernel", -2, "in"),
        ("kernel", -1, "out_gates"),
        ("recurrent_kernel", -2, "out"),
        ("recurrent_kernel", -1, "out_gates"),
        ("bias", -1, "out_gates"),
    ),
    config_key="filters",
    fold="zero",
    gates=4,
    joined=("recurrent_kernel",),
    states=True,
    dead_output="zero",
)
for _layer in (keras.layers.ConvLSTM1D, keras.layers.ConvLSTM2D, keras.layers.ConvLSTM3D):
    register_layer(_layer, _CONV_LSTM)
# A generic RNN is described by its cell; its unit count lives in the cell's config.
_CELL_SPECS = {
    _cell: _recurrent_spec(_gates, config_key=("cell", "config", "units"))
    for _, _cell, _gates in _RECURRENT_GATES
}


def _cell_spec(layer):
    """The spec of a `keras.layers.RNN` by its cell's type; `None` (not prunable) for other
    cells, stacked cells included."""
    return next((spec for cell, spec in _CELL_SPECS.items() if isinstance(layer.cell, cell)), None)


register_layer(
    keras.layers.RNN,
    LayerSpec(
        "kernel",
        filter_axes=(1,),
        input_axis=0,
        resolve=_cell_spec,
        reason="tfprune prunes RNN layers of one LSTM, GRU or SimpleRNN cell, not other or "
        "stacked cells",
    ),
)


# A Bidirectional layer's two directions are one mask: their kernels and recurrent kernels
# side by side, interleaved gate by gate (gate g holds the forward units, then the backward
# ones), so that with `merge_mode="concat"` filter `f` is output channel `f` (the forward
# units, then the backward ones: two independent unit groups, which `shrink` may leave at
# different widths, see `UnevenBidirectional`), and with sum, ave or mul the two directions'
# unit j are one filter (a gate block per direction).
def _directions(layer):
    return [layer.forward_layer, layer.backward_layer]


def _direction_columns(layer, gates):
    widths = [direction.units for direction in _directions(layer)]
    offsets = (0, widths[0])
    return [
        np.array([g * sum(widths) + offsets[d] + j for g in range(gates) for j in range(width)])
        for d, width in enumerate(widths)
    ]


def _bidirectional_layout(layer):
    inner = [mask_layout(m, spec_for(m)) for m in _directions(layer)]
    columns = _direction_columns(layer, spec_for(layer.forward_layer).gates)
    kernels = tuple(
        (v, rows, columns[d]) for d, part in enumerate(inner) for v, rows, _ in part.kernels
    )
    biases = tuple((v, columns[d]) for d, part in enumerate(inner) for v, _ in part.biases)
    # A narrower direction's recurrent kernel leaves rows of the matrix that no weight uses.
    rows = max(part.shape[0] for part in inner)
    shape = (rows, sum(part.shape[-1] for part in inner))
    bias_shape = (
        None
        if not biases
        else (*inner[0].bias_shape[:-1], sum(part.bias_shape[-1] for part in inner))
    )
    return MaskLayout(shape, kernels, bias_shape, biases)


def _bidirectional_class(layer, widths):
    """Keras' Bidirectional infers twice the forward width: directions left at different
    widths need `UnevenBidirectional`."""
    return type(layer) if len(set(widths)) == 1 else UnevenBidirectional


def _bidirectional_members(layer):
    forward, backward = _directions(layer)
    offset = forward.units if layer.merge_mode == "concat" else 0
    return [(forward, np.arange(forward.units)), (backward, offset + np.arange(backward.units))]


_BIDIRECTIONAL = {
    (gates, concat): LayerSpec(
        "kernel",
        filter_axes=(1,),
        input_axis=0,
        flops_weights=(),
        config_key=None,
        fold="zero",
        gates=gates if concat else 2 * gates,
        joined=("recurrent_kernel",),
        states=True,
        dead_output="zero",
        layout=_bidirectional_layout,
        members=Members(of=_bidirectional_members, rebuilt_as=_bidirectional_class),
    )
    for gates in (1, 3, 4)
    for concat in (True, False)
}


def _bidirectional_spec(layer):
    """Prunable where both directions are prunable recurrent layers of one kind, merged into
    one output (not `merge_mode=None`, which returns them apart), of one width unless the
    merge concatenates them."""
    specs = [spec_for(m) for m in _directions(layer)]
    if layer.merge_mode is None or any(s is None or not s.states for s in specs):
        return None
    forward, backward = _directions(layer)
    uneven = forward.units != backward.units and layer.merge_mode != "concat"
    if specs[0].gates != specs[1].gates or uneven:
        return None
    return _BIDIRECTIONAL[(specs[0].gates, layer.merge_mode == "concat")]


register_layer(
    keras.layers.Bidirectional,
    LayerSpec(
        "kernel",
        filter_axes=(1,),
        input_axis=0,
        resolve=_bidirectional_spec,
        reason="tfprune prunes a Bidirectional layer whose directions are LSTM, GRU or "
        "SimpleRNN layers of one kind, merged into one output (merge_mode other than None; "
        "sum, ave and mul need one width)",
    ),
)
