"""`tfprune.unfold`: composite layers written out as the Keras layers they hold.

tfprune prunes what it sees in a model's graph of layers. A KerasHub transformer block is
one layer holding attention, normalizations and a feed-forward network: pruned as it is,
only its feed-forward units go (its head size is derived from its width, so it cannot be
rebuilt with fewer heads). Written out, its attention is a `keras.layers.MultiHeadAttention`
whose heads prune, and its feed-forward layers are `Dense` layers of their own. Which layer
types unfold, and how, is in the registry (`tfprune.layers.registry.register_unfolding`).
"""

from __future__ import annotations

import keras

from tfprune.core import checks, modelwalk
from tfprune.layers import registry


def unfolded_layers(model) -> list:
    """The layers of `model` that `unfold` writes out (nested models included).

    Args:
        model: a Keras model.

    Returns:
        A list of layers, in layer order.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> unfolded_layers(model)
    []
    """
    return [layer for layer in modelwalk.all_layers(model) if registry.unfolds(layer)]


def unfold(model):
    """A copy of `model` whose composite layers are written out as the layers they hold.

    KerasHub's `TransformerEncoder` and `TransformerDecoder` (self-attention only) become
    their `MultiHeadAttention`, `LayerNormalization`, `Dense` and `Dropout` layers, residual
    `Add`s and a `tfprune.SelfAttentionMask`; a `ViTEncoder` becomes its blocks' layers. The
    copy computes the same function with the same weights, and `tfprune.prune` then prunes
    each block's attention heads and feed-forward units (each block its own widths), which
    `shrink` removes. New layers are named after their block: `"transformer_layer_0_attention"`,
    `"transformer_layer_0_intermediate"`, ...; every other layer keeps its name. The result is
    a plain functional model (a KerasHub backbone or task becomes `keras.Model` with the same
    inputs and outputs); it saves to and loads from `.keras` with tfprune imported.

    Args:
        model: a Keras 3 functional or Sequential model, or a functional subclass (KerasHub
            backbones and tasks).

    Returns:
        The unfolded copy, or `model` itself if nothing in it unfolds. `model` is never
        changed.

    Raises:
        TypeError: for anything but a Keras 3 model with a graph of layers.
        ValueError: for a block called in a way its unfolded form cannot reproduce (an
            explicit attention mask, a causal decoder without a padding mask), naming it.

    Example:

    ```python
    backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2,
        num_heads=4, hidden_dim=64, intermediate_dim=128, max_sequence_length=32)
    pruned = tfprune.prune(tfprune.unfold(backbone), target="flops", ranking="global",
                           schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 1000))
    ```
    """
    checks.check_model(model, "unfold")
    found = {id(layer) for layer in unfolded_layers(model)}
    if not found:
        return model

    def clone(layer):
        if id(layer) in found:
            return registry.unfolding_for(layer)(layer)
        return modelwalk.copy_layer(layer)

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    modelwalk.copy_weights(model, twin, skip=found)
    return twin
