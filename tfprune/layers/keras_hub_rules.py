"""Registry entries for KerasHub's layers, keyed by their registered names so that tfprune
never imports KerasHub (it is not a dependency; these entries apply once a model holds
its layers).

KerasHub's `TransformerEncoder` (BERT, RoBERTa, DistilBERT, ALBERT, ... backbones) and
`TransformerDecoder` (GPT-2 and other decoder-only backbones) are each one custom layer
holding self-attention, layer normalizations and a two-layer feed-forward network. Its
feed-forward units are units inside the layer: masking unit `j`'s column of the
intermediate kernel and its bias makes the unit output `activation(0) = 0`, so unit `j`'s
row of the output kernel adds nothing; `shrink` rebuilds the encoder with a lower
`intermediate_dim`. Its attention heads stay: KerasHub derives the head size from
`hidden_dim // num_heads`, so a block with fewer heads cannot be rebuilt from its config.
A decoder with cross-attention stays whole: its FLOPs depend on the encoder sequence, which
the decoder's own call shapes do not say reliably.
"""

from __future__ import annotations

import math

import keras

from tfprune.core import keras_internals
from tfprune.layers.builtin_rules import attention_head_flops
from tfprune.layers.registry import LayerSpec, register_layer, units_kept, variable

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
        id(variable(layer, f"{_INTERMEDIATE}/kernel")): 1,
        id(variable(layer, f"{_OUTPUT}/kernel")): 0,
    }
    bias = variable(layer, f"{_INTERMEDIATE}/bias")
    if bias is not None:
        axis_of[id(bias)] = 0
    return (config, *units_kept(layer, axis_of, units))


_FEEDFORWARD_UNITS = LayerSpec(
    f"{_INTERMEDIATE}/kernel",
    filter_axes=(1,),
    input_axis=0,
    bias=f"{_INTERMEDIATE}/bias",
    flops_weights=(),
    config_key="intermediate_dim",
    unit_flops=_feedforward_unit_flops,
    unit_slicer=_slice_feedforward,
    fixed_flops=_attention_flops,
    applies=_prunable,
    reason="its feed-forward activation does not map 0 to 0 (a masked unit would not output "
    "zero), or it is a decoder with cross-attention (whose FLOPs tfprune does not count)",
)

for _name in ("keras_hub>TransformerEncoder", "keras_hub>TransformerDecoder"):
    register_layer(_name, _FEEDFORWARD_UNITS)
