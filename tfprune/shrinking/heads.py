"""`shrink_heads`: remove attention heads that output exactly zero."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks
from tfprune.layers import registry


def dead_heads(layer) -> np.ndarray:
    """Which heads of a `MultiHeadAttention` layer output exactly zero.

    A head whose value projection (kernel and bias) is all zero contributes nothing to the
    attention output, whatever its query and key.

    Args:
        layer: a built `keras.layers.MultiHeadAttention`.

    Returns:
        One boolean per head.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> _ = attention(np.zeros((1, 3, 8)), np.zeros((1, 3, 8)))
    >>> dead_heads(attention).tolist()
    [False, False]
    """
    return registry.spec_for(layer).dead_units(layer)


def shrink_heads(model) -> keras.Model:
    """Remove attention heads whose value projection is all zero (they output exactly zero).

    Every MultiHeadAttention layer with dead heads is rebuilt with `num_heads` reduced and its
    query, key, value and output kernels sliced; at least one head is kept. Other layers and
    weights are copied. `tfprune.shrink` removes dead heads as well, together with zeroed
    filters; this removes heads only.

    Args:
        model: a plain functional model (e.g. `LEAP.pruned_model()`).

    Returns:
        A new model computing the same function with fewer heads. Attention layers inside
        nested sub-models are left as they are.

    Raises:
        TypeError: for a model that is not a Keras 3 functional/Sequential model.

    Example:

    >>> inputs = keras.Input((5, 8))
    >>> attention = keras.layers.MultiHeadAttention(2, key_dim=4, name="attention")
    >>> model = keras.Model(inputs, attention(inputs, inputs))
    >>> value = tfprune.core.keras_internals.attention_projections(attention)["value"]
    >>> kernel, bias = value.get_weights()
    >>> kernel[:, 1], bias[1] = 0.0, 0.0  # head 1 outputs exactly zero
    >>> value.set_weights([kernel, bias])
    >>> tfprune.shrinking.shrink_heads(model).get_layer("attention").num_heads
    1
    """
    checks.check_model(model, "shrink_heads")
    sliced = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            found = registry.spec_for(layer).sliced_units(layer)
            if found is not None:
                sliced[layer.name] = found

    def clone(layer):
        config = sliced[layer.name][0] if layer.name in sliced else layer.get_config()
        return layer.__class__.from_config(config)

    smaller = keras.models.clone_model(model, clone_function=clone)
    for source in model.layers:
        if not source.weights:  # input layers are renamed by cloning, and hold nothing
            continue
        target = smaller.get_layer(source.name)
        if source.name in sliced:
            target.set_weights(sliced[source.name][1])
        else:
            target.set_weights(source.get_weights())
    return smaller
