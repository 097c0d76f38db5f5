"""Registry entries for KerasHub's layers, keyed by their registered names so that tfprune
never imports KerasHub (it is not a dependency; these entries apply once a model holds
its layers).

KerasHub's `TransformerEncoder` (BERT, RoBERTa, DistilBERT, ALBERT, ... backbones) and
`TransformerDecoder` (GPT-2 and other decoder-only backbones) are each one custom layer
holding self-attention, layer normalizations and a two-layer feed-forward network. Its
feed-forward units are units inside the layer: masking unit `j`'s column of the
intermediate kernel and its bias makes the unit output `activation(0) = 0`, so unit `j`'s
row of the output kernel adds nothing; `shrink` rebuilds the encoder with a lower
`intermediate_dim`. Its attention heads stay while it is one layer: KerasHub derives the
head size from `hidden_dim // num_heads`, so a block with fewer heads cannot be rebuilt from
its config. `tfprune.unfold` writes these blocks out as the Keras layers they hold (the
unfoldings at the end of this module), and then the heads prune too.
A decoder with cross-attention stays whole: its FLOPs depend on the encoder sequence, which
the decoder's own call shapes do not say reliably.

KerasHub's `ViTEncoder` (the `ViTBackbone`'s blocks) is one layer holding every block, with
one `mlp_dim` for all of them: its units are MLP units `j` of all blocks at once (masked in
every block's first MLP kernel and bias; GELU maps 0 to 0), and `shrink` rebuilds it with a
lower `mlp_dim`. Its heads stay, for the reason above, until it is unfolded.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.core.modelwalk import clone_layer
from tfprune.layers.attention_mask import SelfAttentionMask
from tfprune.layers.builtin_rules import attention_head_flops
from tfprune.layers.mask_layout import MaskLayout, named_variable
from tfprune.layers.registry import (
    register_layer,
    register_unfolding,
    units_kept,
)
from tfprune.layers.spec import LayerSpec, Units

_INTERMEDIATE = "feedforward_intermediate_dense"
_OUTPUT = "feedforward_output_dense"


def _maps_zero_to_zero(layer) -> bool:
    """Whether the block's feed-forward activation keeps a masked unit at exactly zero."""
    zero = keras.ops.convert_to_numpy(layer.activation(keras.ops.zeros((1,))))
    return float(zero[0]) == 0.0


def _prunable(layer) -> bool:
    """Whether masked feed-forward units output zero and every attention FLOP is counted."""
    no_cross_attention = keras_internals.keras_hub_cross_attention(layer) is None
    return no_cross_attention and _maps_zero_to_zero(layer)


def _feedforward_unit_flops(layer, shapes) -> int:
    """FLOPs of one feed-forward unit per example: its intermediate column and output row at
    every position."""
    shape = shapes[0]
    return 2 * math.prod(shape[1:-1]) * 2 * shape[-1]


def _attention_flops(layer, shapes) -> int:
    """FLOPs of the block's self-attention per example (every head; they stay)."""
    attention = keras_internals.keras_hub_self_attention(layer)
    shape = shapes[0]
    return attention.num_heads * attention_head_flops(attention, [shape, shape])


def _slice_feedforward(layer, units):
    """The block's config and weights with only feed-forward `units` left."""
    config = {**layer.get_config(), "intermediate_dim": len(units)}
    axis_of = {
        id(named_variable(layer, f"{_INTERMEDIATE}/kernel")): 1,
        id(named_variable(layer, f"{_OUTPUT}/kernel")): 0,
    }
    bias = named_variable(layer, f"{_INTERMEDIATE}/bias")
    if bias is not None:
        axis_of[id(bias)] = 0
    return (config, *units_kept(layer, axis_of, units))


def _inner_units(dense, config_key, **rules) -> LayerSpec:
    """The spec of units inside a KerasHub block: the output units of its sublayer `dense`
    (a path such as `"mlp/dense_1"`), counted by the config entry `config_key`."""
    return LayerSpec(
        f"{dense}/kernel",
        filter_axes=(1,),
        input_axis=0,
        bias=f"{dense}/bias",
        flops_weights=(),
        config_key=config_key,
        **rules,
    )


_FEEDFORWARD_UNITS = _inner_units(
    _INTERMEDIATE,
    "intermediate_dim",
    units=Units(_feedforward_unit_flops, _slice_feedforward, fixed_flops=_attention_flops),
    applies=_prunable,
    reason="its feed-forward activation does not map 0 to 0 (a masked unit would not output "
    "zero), or it is a decoder with cross-attention (whose FLOPs tfprune does not count)",
)

for _name in ("keras_hub>TransformerEncoder", "keras_hub>TransformerDecoder"):
    register_layer(_name, _FEEDFORWARD_UNITS)


_VIT_ENCODER = "keras_hub.src.models.vit.vit_layers.ViTEncoder"


def _vit_mlp_variables(layer, name):
    """One MLP variable (`"dense_1/kernel"`, ...) of each block of a `ViTEncoder`, in order
    (none for biases of an encoder built with `use_mlp_bias=False`)."""
    found = (
        named_variable(layer, f"{block.name}/mlp/{name}")
        for block, _ in keras_internals.keras_hub_vit_blocks(layer)
    )
    return [v for v in found if v is not None]


def _vit_layout(layer) -> MaskLayout:
    """The blocks' first MLP kernels stacked along the input axis (a unit is a column of all
    of them), and their biases one block after the other."""
    kernels = _vit_mlp_variables(layer, "dense_1/kernel")
    inputs, units = kernels[0].shape
    parts = tuple(
        (kernel, (slice(i * inputs, (i + 1) * inputs),), None) for i, kernel in enumerate(kernels)
    )
    biases = _vit_mlp_variables(layer, "dense_1/bias")
    return MaskLayout(
        (len(kernels) * inputs, units),
        parts,
        (len(biases) * units,) if biases else None,
        tuple((b, np.arange(i * units, (i + 1) * units)) for i, b in enumerate(biases)),
    )


def _vit_unit_flops(layer, shapes) -> int:
    """FLOPs of one MLP unit per example: its column and row in every block."""
    return layer.num_layers * _feedforward_unit_flops(layer, shapes)


def _vit_attention_flops(layer, shapes) -> int:
    """FLOPs of every block's attention per example (its heads stay)."""
    shape = shapes[0]
    return sum(
        attention.num_heads * attention_head_flops(attention, [shape, shape])
        for _, attention in keras_internals.keras_hub_vit_blocks(layer)
    )


def _slice_vit_mlp(layer, units):
    """The encoder's config and weights with only MLP `units` left in every block."""
    config = {**layer.get_config(), "mlp_dim": len(units)}
    axis_of = {id(k): 1 for k in _vit_mlp_variables(layer, "dense_1/kernel")}
    axis_of.update({id(k): 0 for k in _vit_mlp_variables(layer, "dense_2/kernel")})
    axis_of.update({id(b): 0 for b in _vit_mlp_variables(layer, "dense_1/bias")})
    return (config, *units_kept(layer, axis_of, units))


register_layer(
    _VIT_ENCODER,
    _inner_units(
        "transformer_block_1/mlp/dense_1",
        "mlp_dim",
        units=Units(_vit_unit_flops, _slice_vit_mlp, fixed_flops=_vit_attention_flops),
        layout=_vit_layout,
    ),
)


# --------------------------------------------------------------- unfolding (tfprune.unfold)
# Written out as the Keras layers they hold, KerasHub's blocks prune like any functional
# transformer: heads through keras.layers.MultiHeadAttention's spec (KerasHub derives a
# block's head size from hidden_dim // num_heads, so a block cannot be rebuilt with fewer
# heads), feed-forward and MLP units through Dense, block by block.


def _fresh(layer, name):
    """A new, unbuilt copy of a block's sublayer named `name`; attention as the stock
    `keras.layers.MultiHeadAttention` (KerasHub's decoders hold a caching subclass)."""
    config = {**layer.get_config(), "name": name}
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return clone_layer(layer, config, keras.layers.MultiHeadAttention)
    return clone_layer(layer, config)


def _copy_weights(pairs):
    """Give each fresh layer, now built, its original's weights."""
    for fresh, original in pairs:
        if original.weights:
            fresh.set_weights(original.get_weights())


def _block_unfolding(layer, refuse):
    """What a `TransformerEncoder` or `TransformerDecoder` (self-attention only) computes,
    as fresh layers: `(inputs, padding_mask, causal) -> outputs`."""
    parts = keras_internals.keras_hub_block_layers(layer)
    prefix = layer.name

    def run(x, padding_mask, causal):
        fresh = {key: _fresh(part, f"{prefix}_{key}") for key, part in parts.items()}
        mask = None
        if padding_mask is not None:
            mask = SelfAttentionMask(causal, name=f"{prefix}_attention_mask")(padding_mask)
        elif causal:
            refuse("without a padding mask its causal mask would come from the sequence")
        residual = x
        if layer.normalize_first:
            x = fresh["attention_norm"](x)
        x = fresh["attention"](x, x, attention_mask=mask)
        x = fresh["attention_dropout"](x)
        x = keras.layers.Add(name=f"{prefix}_attention_residual")([x, residual])
        if not layer.normalize_first:
            x = fresh["attention_norm"](x)
        residual = x
        if layer.normalize_first:
            x = fresh["feedforward_norm"](x)
        x = fresh["feedforward_dropout"](fresh["output"](fresh["intermediate"](x)))
        x = keras.layers.Add(name=f"{prefix}_feedforward_residual")([x, residual])
        if not layer.normalize_first:
            x = fresh["feedforward_norm"](x)
        _copy_weights((fresh[key], part) for key, part in parts.items())
        return x

    return run


def _refusal(layer):
    """What an unfolding raises for a call it cannot reproduce; `tfprune.unfold` then
    traces that block's `call` instead."""

    def refuse(why):
        raise ValueError(f"unfold: KerasHub block '{layer.name}' is not written out: {why}.")

    return refuse


def _unfold_encoder(layer):
    """`tfprune.unfold`'s form of a KerasHub `TransformerEncoder`."""
    refuse = _refusal(layer)
    run = _block_unfolding(layer, refuse)

    def call(
        inputs, padding_mask=None, attention_mask=None, training=None, return_attention_scores=False
    ):
        if attention_mask is not None or return_attention_scores:
            refuse("it is called with an attention mask or asked for its attention scores")
        return run(inputs, padding_mask, causal=False)

    return call


def _unfold_decoder(layer):
    """`tfprune.unfold`'s form of a KerasHub `TransformerDecoder` without cross-attention."""
    if keras_internals.keras_hub_cross_attention(layer) is not None:
        return None
    refuse = _refusal(layer)
    run = _block_unfolding(layer, refuse)

    def call(
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        use_causal_mask=True,
        training=None,
    ):
        if decoder_attention_mask is not None or encoder_sequence is not None:
            refuse("it is called with an attention mask or an encoder sequence")
        return run(decoder_sequence, decoder_padding_mask, causal=use_causal_mask)

    return call


def _unfold_vit_encoder(layer):
    """`tfprune.unfold`'s form of a KerasHub `ViTEncoder`: each block's attention and MLP as
    their own layers, so heads and each block's MLP units prune."""

    def call(inputs, training=None):
        dropout, norm = keras_internals.keras_hub_vit_encoder_ends(layer)
        pairs = [(_fresh(dropout, f"{layer.name}_dropout"), dropout)]
        x = pairs[0][0](inputs)
        for block, _ in keras_internals.keras_hub_vit_blocks(layer):
            prefix = f"{layer.name}_{block.name}"
            parts = keras_internals.keras_hub_vit_block_layers(block)
            fresh = {key: _fresh(part, f"{prefix}_{key}") for key, part in parts.items()}
            y = fresh["attention_norm"](x)
            y = fresh["attention_dropout"](fresh["attention"](y, y))
            x = keras.layers.Add(name=f"{prefix}_attention_residual")([y, x])
            y = fresh["mlp_dropout"](fresh["mlp_in"](fresh["mlp_norm"](x)))
            second = _fresh(parts["mlp_dropout"], f"{prefix}_mlp_out_dropout")
            y = second(fresh["mlp_out"](y))
            x = keras.layers.Add(name=f"{prefix}_mlp_residual")([x, y])
            pairs += [(fresh[key], part) for key, part in parts.items()]
        pairs.append((_fresh(norm, f"{layer.name}_norm"), norm))
        x = pairs[-1][0](x)
        _copy_weights(pairs)
        return x

    return call


def _squeeze_excite(layer, x, prefix, step):
    """A KerasHub MBConv block's squeeze-and-excite, as its `call` writes it: pooled,
    reshaped to one pixel, two 1x1 convolutions, multiplied in."""
    if not 0 < layer.se_ratio <= 1:
        return x
    se = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_se_squeeze")(x)
    se = keras.layers.Reshape((1, 1, layer.filters), name=f"{prefix}_se_reshape")(se)
    se = step("se_conv2", step("se_conv1", se))
    return keras.layers.Multiply(name=f"{prefix}_se_excite")([x, se])


def _residual(layer, x, inputs, prefix, step):
    """The block's residual, where its `call` adds one (dropout first, if it has one)."""
    if layer.strides == 1 and layer.input_filters == layer.output_filters and not layer.nores:
        if layer.dropout:
            x = step("dropout_layer", x)
        x = keras.layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def _mbconv_steps(layer):
    """A fresh copy of one of the block's sublayers per use, applied: `step(attribute, x)`,
    and what to copy the weights from once they are built."""
    pairs = []

    def step(attribute, x, use=""):
        original = getattr(layer, attribute)
        fresh = _fresh(original, f"{layer.name}_{attribute}{use}")
        pairs.append((fresh, original))
        return fresh(x)

    return step, pairs


def _unfold_mbconv(layer):
    """`tfprune.unfold`'s form of KerasHub's `MBConvBlock` (EfficientNetV2's later stages):
    expansion, depthwise, squeeze-and-excite and projection as their own layers."""

    def call(inputs):
        step, pairs = _mbconv_steps(layer)
        x = inputs
        if layer.expand_ratio != 1:
            x = step("act", step("bn1", step("conv1", x)), use="_expand")
        x = step("act", step("bn2", step("depthwise", x)))
        x = _squeeze_excite(layer, x, layer.name, step)
        x = step("bn3", step("output_conv", step("output_conv_pad", x)))
        x = _residual(layer, x, inputs, layer.name, step)
        _copy_weights(pairs)
        return x

    return call


def _unfold_fused_mbconv(layer):
    """`tfprune.unfold`'s form of KerasHub's `FusedMBConvBlock` (EfficientNetV2's first
    stages): the fused expansion convolution, squeeze-and-excite and projection."""

    def call(inputs):
        step, pairs = _mbconv_steps(layer)
        x = step("act", step("bn1", step("conv1", step("conv1_pad", inputs))))
        x = _squeeze_excite(layer, x, layer.name, step)
        x = step("bn2", step("output_conv", step("output_conv_pad", x)))
        if layer.expand_ratio == 1 and layer.projection_activation:
            x = step("projection_act", x)
        x = _residual(layer, x, inputs, layer.name, step)
        _copy_weights(pairs)
        return x

    return call


register_unfolding("keras_hub>TransformerEncoder", _unfold_encoder)
register_unfolding("keras_hub>TransformerDecoder", _unfold_decoder)
register_unfolding(_VIT_ENCODER, _unfold_vit_encoder)
register_unfolding("keras_hub.src.models.efficientnet.mbconv.MBConvBlock", _unfold_mbconv)
register_unfolding(
    "keras_hub.src.models.efficientnet.fusedmbconv.FusedMBConvBlock", _unfold_fused_mbconv
)
