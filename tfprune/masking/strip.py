"""`tfprune.strip`: plain Keras layers again, with the masks baked into the weights."""

from __future__ import annotations

import keras

from tfprune.core import checks, modelwalk
from tfprune.masking.wrappers import ChannelMaskWrapper, PruneWrapper, wrappers_of


def strip(model):
    """Return a plain Keras model: the wrappers removed, their masks baked into the weights.

    Pruned weights are already exactly zero in a pruned model (the mask is applied after
    every optimizer step); the copy multiplies by the mask once more, so weights that were
    assigned by hand after pruning are masked too. The result has the original layer names and
    types, and no dependency on tfprune. Removing zeroed filters physically is `shrink`'s job.

    Args:
        model: a model returned by `tfprune.prune` (trained or not).

    Returns:
        A new model; `model` is unchanged.

    Raises:
        TypeError: for anything but a Keras 3 functional or Sequential model.
        ValueError: if `model` has no `PruneWrapper` layers.

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> pruned = tfprune.prune(model, schedule=0.5)
    >>> plan = tfprune.apply_target(pruned, 0.5)
    >>> plain = tfprune.strip(pruned)
    >>> [type(layer).__name__ for layer in plain.layers]
    ['Dense', 'Dense']
    >>> int((np.abs(plain.get_layer("fc").get_weights()[0]).max(axis=0) == 0).sum())  # 4 of 8
    4
    """
    checks.check_model(model, "strip")
    wrappers = wrappers_of(model)
    if not wrappers:
        raise ValueError(
            f"strip: model '{model.name}' has no PruneWrapper layers, so there is nothing to "
            "strip. Pass the model returned by tfprune.prune."
        )

    def unwrap(layer):
        inner = layer.layer if isinstance(layer, (PruneWrapper, ChannelMaskWrapper)) else layer
        return modelwalk.copy_layer(inner)

    plain = keras.models.clone_model(model, clone_function=unwrap, recursive=True)
    modelwalk.copy_weights(model, plain)
    return plain
