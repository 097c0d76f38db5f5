"""Network slimming's importance: the scale of the BatchNormalization after a filter.

From "Learning Efficient Convolutional Networks through Network Slimming" (Liu et al.,
arXiv 1708.06519).
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core.modelwalk import weights_owner
from tfprune.criteria.base import ContextCriterion, ScoringContext, spread_over_filters


def following_bn(context, layer):
    """The BatchNormalization layer that reads `layer`'s output directly, or None.

    Args:
        context: a `ScoringContext`.
        layer: a layer of its model.

    Returns:
        A `keras.layers.BatchNormalization`, or `None`.

    Example:

    >>> inputs = keras.Input((4, 4, 2))
    >>> conv = keras.layers.Conv2D(3, 1, name="conv")
    >>> model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(conv(inputs)))
    >>> following_bn(ScoringContext(model), conv).name
    'bn'
    """
    out = context.call_of(layer).outputs[0]
    for call in context.graph.calls():
        owner = weights_owner(call.layer)
        if (
            isinstance(owner, keras.layers.BatchNormalization)
            and call.inputs
            and call.inputs[0] is out
        ):
            return owner
    return None


@keras.saving.register_keras_serializable(package="tfprune")
class BNScale(ContextCriterion):
    """Network-slimming importance: `|gamma|` of the BatchNormalization right after the layer.

    Filter granularity only. `prune` refuses a layer not followed by a BatchNormalization.

    Example:

    ```python
    pruned = tfprune.prune(model, criterion="bn_scale")
    ```
    """

    granularities = ("filter",)

    def check(self, model, layers):
        context = ScoringContext(model)
        for layer in layers:
            if following_bn(context, layer) is None:
                raise ValueError(
                    f"criterion 'bn_scale': layer '{layer.name}' is not followed by a "
                    f"BatchNormalization. Exclude it (exclude=['{layer.name}']) or use another "
                    "criterion."
                )

    def __call__(self, weight, layer, context):
        bn = following_bn(context, layer)
        return spread_over_filters(layer, weight, np.abs(keras.ops.convert_to_numpy(bn.gamma)))
