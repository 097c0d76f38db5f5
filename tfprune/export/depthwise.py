"""How depthwise convolutions with kernels over 5x5 go to LiteRT: cut into tiles.

LiteRT runs 7x7 depthwise convolutions (ConvNeXt's) far slower per multiply-add than 3x3 or
5x5 ones; the same kernel cut into tiles of at most 5x5 runs several times faster and computes
the same function (`tfprune.layers.split_depthwise`, with the numbers). The exported file
holds the tiled form; the Keras model itself is never changed.
"""

from __future__ import annotations

import keras

from tfprune.core.modelwalk import all_layers, clone_layer, copy_layer, copy_weights
from tfprune.layers.split_depthwise import SplitDepthwiseConv2D, SplitGroupedConv2D, splittable

_SPLIT_CLASS = {
    keras.layers.DepthwiseConv2D: SplitDepthwiseConv2D,
    keras.layers.Conv2D: SplitGroupedConv2D,
}


def split_layers(model) -> list:
    """The depthwise convolutions of `model` that export cuts into tiles (nested models
    included; see `tfprune.layers.split_depthwise.splittable`).

    Args:
        model: a Keras model.

    Returns:
        A list of layers, in layer order.

    Example:

    >>> inputs = keras.Input((8, 8, 4))
    >>> x = keras.layers.Conv2D(4, 7, groups=4, padding="same", name="dw7")(inputs)
    >>> x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw3")(x)
    >>> [layer.name for layer in split_layers(keras.Model(inputs, x))]
    ['dw7']
    """
    return [layer for layer in all_layers(model) if splittable(layer)]


def export_form(model):
    """The model to convert: `model` itself, or a copy whose large depthwise kernels are
    computed tile by tile.

    Args:
        model: a plain (stripped) Keras model.

    Returns:
        `model` when no layer is split, else a clone computing the same function.

    Example:

    >>> inputs = keras.Input((8, 8, 4))
    >>> model = keras.Model(inputs, keras.layers.DepthwiseConv2D(7, name="dw")(inputs))
    >>> type(export_form(model).get_layer("dw")).__name__
    'SplitDepthwiseConv2D'
    """
    split = {id(layer) for layer in split_layers(model)}
    if not split:
        return model

    def clone(layer):
        if id(layer) in split:
            return clone_layer(layer, layer_class=_SPLIT_CLASS[type(layer)])
        return copy_layer(layer)

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy_weights(model, twin)
    return twin
