"""`shrink_heads`: remove attention heads that output exactly zero."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks, keras_internals


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
    value = keras_internals.attention_projections(layer)["value"]
    dead = ~np.any(keras.ops.convert_to_numpy(value.kernel) != 0, axis=(0, 2))
    if value.bias is not None:
        dead &= ~np.any(keras.ops.convert_to_numpy(value.bias) != 0, axis=1)
    return dead


def shrink_heads(model) -> keras.Model:
    """Remove attention heads whose value projection is all zero (they output exactly zero).

    Every MultiHeadAttention layer with dead heads is rebuilt with `num_heads` reduced and its
    query, key, value and output kernels sliced; at least one head is kept. Other layers and
    weights are copied.

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
    >>> value = keras_internals.attention_projections(attention)["value"]
    >>> kernel, bias = value.get_weights()
    >>> kernel[:, 1], bias[1] = 0.0, 0.0  # head 1 outputs exactly zero
    >>> value.set_weights([kernel, bias])
    >>> tfprune.shrink_heads(model).get_layer("attention").num_heads
    1
    """
    checks.check_model(model, "shrink_heads")
    kept = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            alive = ~dead_heads(layer)
            if not alive.any():
                alive[0] = True
            if not alive.all():
                kept[layer.name] = np.flatnonzero(alive)

    def clone(layer):
        config = layer.get_config()
        if layer.name in kept:
            config["num_heads"] = len(kept[layer.name])
        return layer.__class__.from_config(config)

    smaller = keras.models.clone_model(model, clone_function=clone)
    for source in model.layers:
        if not source.weights:  # input layers are renamed by cloning, and hold nothing
            continue
        target = smaller.get_layer(source.name)
        if source.name not in kept:
            target.set_weights(source.get_weights())
            continue
        heads = kept[source.name]
        projections = keras_internals.attention_projections(source)
        twins = keras_internals.attention_projections(target)
        for name in ("query", "key", "value"):
            dense, twin = projections[name], twins[name]
            twin.kernel.assign(keras.ops.convert_to_numpy(dense.kernel)[:, heads])
            if dense.bias is not None:
                twin.bias.assign(keras.ops.convert_to_numpy(dense.bias)[heads])
        out, twin = projections["output"], twins["output"]
        twin.kernel.assign(keras.ops.convert_to_numpy(out.kernel)[heads])
        if out.bias is not None:
            twin.bias.assign(keras.ops.convert_to_numpy(out.bias))
    return smaller
