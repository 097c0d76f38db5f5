"""What every criterion is called with, and the base class of those that need more than a weight.

A criterion is any callable `criterion(weight, layer) -> scores`:

- `weight`: the prunable weight as a NumPy array (already masked, so pruned weights are 0);
- `layer`: the Keras layer that owns it (for criteria that look at neighbours or BN);
- returns non-negative scores of `weight`'s shape; higher means more important.

Criteria that need more (neighbouring layers, BN, gradients) subclass `ContextCriterion`
and are called `criterion(weight, layer, context)` with a `ScoringContext`.

The granularity sums element scores over each unit (filter, block...), so `|w|` gives the
L1 norm of a filter and `w**2` the squared L2 norm.
"""

from __future__ import annotations

import numpy as np

from tfprune.core.configurable import Configurable
from tfprune.core.modelwalk import weights_owner
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.layers import registry


class ScoringContext:
    """What context-aware criteria may use at one mask update: the model, its channel graph,
    calibration data (`PruningCallback(data=...)`), and a cache for what they derive from them.

    Args:
        model: the pruned functional model.
        data: `(x, y)` calibration examples, or `None`. Defaults to `None`.
        keep: the fraction of its units a layer keeps, on average, at this update's target
            (criteria that learn which units to keep, such as HYDRA, learn for it), or
            `None` where no target is known. Defaults to `None`.

    Example:

    ```python
    context = ScoringContext(pruned, data=(x[:256], y[:256]))
    scores = tfprune.criteria.get("taylor")(weight, layer, context)
    ```
    """

    def __init__(self, model, data=None, keep=None):
        self.model = model
        self.data = data
        self.keep = keep
        self._graph = None
        self._cache = {}

    @property
    def graph(self) -> ChannelGraph:
        """The model's `ChannelGraph` (built on first use)."""
        if self._graph is None:
            self._graph = ChannelGraph(self.model)
        return self._graph

    def call_of(self, layer):
        """The first graph call of `layer` (or of the wrapper around it).

        Args:
            layer: a layer of the model.

        Returns:
            A `tfprune.graph.Call`.

        Raises:
            ValueError: if the layer is not in the model.
        """
        for call in self.graph.calls():
            if weights_owner(call.layer) is layer:
                return call
        raise ValueError(f"Layer '{layer.name}' is not part of model '{self.model.name}'.")

    def cached(self, key, compute):
        """`compute()`, computed once per mask update and shared by every layer's scoring.

        Args:
            key: a hashable name for the result (e.g. the criterion's class and purpose).
            compute: a function of no arguments.

        Returns:
            The (cached) result.
        """
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


class ContextCriterion(Configurable):
    """Base class of criteria called as `criterion(weight, layer, context)`.

    Attributes:
        granularities: the granularities the criterion makes sense for, by name (`None`:
            all).
        sequential: whether it prunes layer by layer, each scored after the ones before it
            were pruned.

    Example:

    ```python
    class Largest(tfprune.criteria.ContextCriterion):
        def __call__(self, weight, layer, context):
            return np.abs(weight)
    ```
    """

    uses_context = True
    granularities = None
    sequential = False

    def check(self, model, layers) -> None:
        """Raise ValueError if the criterion cannot score one of `layers` in `model`.

        Args:
            model: the model being pruned.
            layers: the layers selected for pruning.
        """


def spread_over_filters(layer, weight, filter_scores) -> np.ndarray:
    """One score per filter spread evenly over the filter's weights (so the filter sums to it).

    Args:
        layer: the layer owning `weight`.
        weight: the prunable weight.
        filter_scores: one score per filter.

    Returns:
        Element scores of `weight`'s shape.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> spread_over_filters(dense, np.zeros((3, 2)), [3.0, 6.0])
    array([[1., 2.],
           [1., 2.],
           [1., 2.]])
    """
    spec = registry.spec_for(layer)
    canonical = spec.to_canonical(np.zeros_like(weight, dtype=np.float64))
    unit = canonical[0].size
    canonical[...] = (np.asarray(filter_scores, np.float64) / unit)[:, None, None]
    return spec.from_canonical(canonical, weight.shape)
