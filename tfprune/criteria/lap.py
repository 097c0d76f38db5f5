"""Lookahead pruning: a weight matters as much as the weights around it carry.

From "Lookahead: A Far-Sighted Alternative of Magnitude-based Pruning" (Park, Lee, Mo, Shin,
arXiv 2002.04809).
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core.modelwalk import weights_owner
from tfprune.criteria.base import ContextCriterion
from tfprune.layers import registry
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import LayerSpec


def neighbour_norms(graph):
    """Per channel group of `graph`: the summed squared norms of the filters writing it
    (`producers`) and of the input slices reading it (`consumers`), and the product of the
    squared BN scales it passes through (`bn_scale`).

    Args:
        graph: a `tfprune.graph.ChannelGraph`.

    Returns:
        `(producers, consumers, bn_scale)`, three dicts keyed by group root.

    Example:

    >>> from tfprune.graph.channel_graph import ChannelGraph
    >>> inputs = keras.Input((2,))
    >>> d1, d2 = keras.layers.Dense(2, use_bias=False), keras.layers.Dense(1, use_bias=False)
    >>> model = keras.Model(inputs, d2(d1(inputs)))
    >>> d1.set_weights([np.array([[1.0, 0.0], [2.0, 3.0]])])
    >>> d2.set_weights([np.array([[4.0], [5.0]])])
    >>> graph = ChannelGraph(model)
    >>> producers, consumers, _ = neighbour_norms(graph)
    >>> hidden = d1.output
    >>> producers[graph.root(hidden, 0)], consumers[graph.root(hidden, 1)]  # 1 + 4, 5 ** 2
    (np.float64(5.0), np.float64(25.0))
    """
    producers, consumers, bn_scale = {}, {}, {}
    for call in graph.calls():
        owner, rule = weights_owner(call.layer), call.rule
        if isinstance(rule, LayerSpec) and not rule.coupled:
            kernel = keras.ops.convert_to_numpy(named_variable(owner, rule.weight)).astype(
                np.float64
            )
            canonical = rule.to_canonical(kernel)
            out = call.outputs[0]
            for c, value in enumerate((canonical**2).reshape(canonical.shape[0], -1).sum(axis=1)):
                root = graph.root(out, c)
                producers[root] = producers.get(root, 0.0) + value
            tensor = call.inputs[0]
            per_input = (canonical**2).sum(axis=(0, 1))
            multiplier = (
                per_input.size // tensor.shape[-1]
            )  # separable: inputs are channel x multiplier
            for i, value in enumerate(per_input):
                root = graph.root(tensor, i // multiplier)
                consumers[root] = consumers.get(root, 0.0) + value
        elif isinstance(owner, keras.layers.BatchNormalization):
            gamma = keras.ops.convert_to_numpy(owner.gamma)
            scale = gamma / np.sqrt(
                keras.ops.convert_to_numpy(owner.moving_variance) + owner.epsilon
            )
            for c, value in enumerate(scale):
                root = graph.root(call.inputs[0], c)
                bn_scale[root] = bn_scale.get(root, 1.0) * float(value) ** 2
    return producers, consumers, bn_scale


@keras.saving.register_keras_serializable(package="tfprune")
class LAP(ContextCriterion):
    """Lookahead pruning (LAP): `w^2 * ||in||^2 * ||out||^2`.

    For weight `W[k -> j]`: the squared norm of the weights into input channel `k` (the
    filters that write it) and out of output channel `j` (the input slices that read it),
    over the masked weights, through the channel graph (so Conv -> Conv, Conv -> Flatten ->
    Dense and Dense -> Dense all work). A missing neighbour counts 1.

    Args:
        bn: `lap_bn`: also multiply by `(gamma / sqrt(var + eps))^2` of the BN between.
            Defaults to `False`.
        forward: `lap_forward`: prune layers in graph order, each scored after the masks
            of the ones before it are updated (local ranking, sparsity targets). Defaults
            to `False`.

    Example:

    ```python
    pruned = tfprune.prune(model, granularity="unstructured", criterion="lap")
    ```
    """

    def __init__(self, bn=False, forward=False):
        self.bn = bool(bn)
        self.forward = bool(forward)
        self.sequential = self.forward

    def __call__(self, weight, layer, context):
        spec = registry.spec_for(layer)
        call = context.call_of(layer)
        producers, consumers, bn_scale = context.cached(
            (LAP, "neighbour_norms"), lambda: neighbour_norms(context.graph)
        )
        graph = context.graph
        out = call.outputs[0]

        def bn_factor(root):
            return bn_scale.get(root, 1.0) if self.bn else 1.0

        canonical = spec.to_canonical(weight.astype(np.float64) ** 2)
        if spec.coupled:  # depthwise: input channel and output channel are one group
            roots = [graph.root(out, f) for f in range(canonical.shape[0])]
            factor = np.array(
                [producers.get(r, 1.0) * consumers.get(r, 1.0) * bn_factor(r) for r in roots]
            )
            return spec.from_canonical(canonical * factor[:, None, None], weight.shape)
        out_roots = [graph.root(out, f) for f in range(spec.filter_count(weight.shape))]
        tensor = call.inputs[0]
        multiplier = canonical.shape[2] // tensor.shape[-1]
        in_roots = [graph.root(tensor, i // multiplier) for i in range(canonical.shape[2])]
        in_factor = np.array([producers.get(r, 1.0) * bn_factor(r) for r in in_roots])
        out_factor = np.array([consumers.get(r, 1.0) * bn_factor(r) for r in out_roots])
        return spec.from_canonical(
            canonical * out_factor[:, None, None] * in_factor[None, None, :], weight.shape
        )

    def get_config(self):
        return {"bn": self.bn, "forward": self.forward}
