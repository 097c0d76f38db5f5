"""Filter pruning via geometric median: the most replaceable filters go first.

From "Filter Pruning via Geometric Median for Deep Convolutional Neural Networks
Acceleration" (He et al., arXiv 1811.00250).
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.criteria.base import ContextCriterion, spread_over_filters
from tfprune.layers import registry


@keras.saving.register_keras_serializable(package="tfprune")
class FPGM(ContextCriterion):
    """A filter's importance is its summed Euclidean distance to the layer's other filters,
    so the filters nearest the geometric median (the most replaceable) go first. Filter
    granularity only.

    Example:

    ```python
    pruned = tfprune.prune(model, criterion="fpgm")
    ```
    """

    granularities = ("filter",)

    def __call__(self, weight, layer, context=None):
        spec = registry.spec_for(layer)
        filters = spec.to_canonical(weight.astype(np.float64)).reshape(
            spec.filter_count(weight.shape), -1
        )
        squared = (filters**2).sum(axis=1)
        distances = np.sqrt(
            np.maximum(squared[:, None] + squared[None, :] - 2 * filters @ filters.T, 0.0)
        )
        return spread_over_filters(layer, weight, distances.sum(axis=1))
