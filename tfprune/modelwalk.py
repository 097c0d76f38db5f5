"""Walking a model's layers: flattened, or side by side with a clone of it."""

from __future__ import annotations

import keras
from keras.src.saving.serialization_lib import SafeModeScope


def clone_layer(layer, config=None, layer_class=None):
    """A fresh layer of `layer_class` (default: `layer`'s class) from `config` (default:
    `layer`'s own config), unbuilt.

    The user's own Lambda layers are trusted here: they come from the model in memory,
    not from a file, so Keras' safe mode (which refuses to rebuild Python lambdas) is off.
    """
    with SafeModeScope(False):
        return (layer_class or type(layer)).from_config(layer.get_config() if config is None else config)


def all_layers(model):
    """Every layer of `model`, descending into nested models (which are not listed themselves)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def _unwrapped(layer):
    """The layer that holds the weights: a tfprune wrapper's inner layer, else the layer."""
    return layer.layer if hasattr(layer, "masked_weights") else layer


def copy_weights(source, target) -> None:
    """Copy weights from `source` into its clone `target`, level by level, by layer name.

    Either side may hold tfprune wrappers where the other holds the bare layer; a wrapper
    gives its weights with the mask applied.
    """
    by_name = {_unwrapped(layer).name: layer for layer in target.layers}
    for layer in source.layers:
        if not layer.weights:  # input layers are renamed by cloning, and hold nothing
            continue
        twin = by_name[_unwrapped(layer).name]
        if isinstance(layer, keras.Model):
            copy_weights(layer, twin)
            continue
        weights = layer.masked_weights() if hasattr(layer, "masked_weights") else layer.get_weights()
        _unwrapped(twin).set_weights(weights)
