"""`tfprune.unfold`: composite layers written out as the Keras layers and ops they hold.

tfprune prunes what it sees in a model's graph of layers. A custom block (a KerasHub decoder
layer, a keras.io transformer block) is one node holding attention, normalizations and a
feed-forward network; written out, its sublayers are nodes of their own, whose filters,
units and heads prune. A custom layer the registry has no rule for is written out by tracing
its `call` (`tfprune.graph.tracing`); `prune` does that by itself. A KerasHub transformer
block, which tfprune prunes folded (its feed-forward units), is written out by its
registered unfolding (`tfprune.layers.registry.register_unfolding`), and then its heads prune
too: that is what `unfold` adds.
"""

from __future__ import annotations

from tfprune.core import checks, modelwalk
from tfprune.graph import tracing
from tfprune.layers import registry


def unfolded_layers(model) -> list:
    """The layers of `model` that `unfold` writes out (nested models included): those with
    a registered unfolding, and custom layers it traces.

    Args:
        model: a Keras model.

    Returns:
        A list of layers, in layer order.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> unfolded_layers(model)
    []
    """
    return [
        layer
        for layer in modelwalk.all_layers(model)
        if registry.unfolds(layer) or tracing.traceable(layer)
    ]


def unfold(model):
    """A copy of `model` whose composite layers are written out as the layers they hold.

    KerasHub's `TransformerEncoder` and `TransformerDecoder` (self-attention only) become
    their `MultiHeadAttention`, `LayerNormalization`, `Dense` and `Dropout` layers, residual
    `Add`s and a `tfprune.layers.SelfAttentionMask`; a `ViTEncoder` becomes its blocks' layers. Any
    other custom layer holding weights is traced: its `call` written out as the sublayers
    and `keras.ops` it runs (see `tfprune.graph.tracing`). The copy computes the same
    function with the same weights, and `tfprune.prune` then prunes each block's attention
    heads and feed-forward units (each block its own widths), which `shrink` removes. New
    layers are named after their block: `"transformer_layer_0_attention"`, ...; every other
    layer keeps its name. The result is a plain functional model (a KerasHub backbone or
    task becomes `keras.Model` with the same inputs and outputs); it saves to and loads from
    `.keras` with tfprune imported.

    Args:
        model: a Keras 3 functional or Sequential model, or a functional subclass (KerasHub
            backbones and tasks).

    Returns:
        The unfolded copy, or `model` itself if nothing in it unfolds. `model` is never
        changed. A custom layer whose trace does not compute what it computes stays whole;
        `tfprune.explain` says why.

    Raises:
        TypeError: for anything but a Keras 3 model with a graph of layers.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2,
        num_heads=4, hidden_dim=64, intermediate_dim=128, max_sequence_length=32)
    pruned = tfprune.prune(tfprune.unfold(backbone), target="flops", ranking="global",
                           schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 1000))
    ```
    """
    checks.check_model(model, "unfold")
    return tracing.written_out(model, unfoldings=True)[0]
