"""Importance scores: which weights matter.

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

import keras
import numpy as np

from tfprune.configurable import Configurable


@keras.saving.register_keras_serializable(package="tfprune")
def l1(weight, layer=None):
    """L1 importance: `|w|`; summed over a filter it is the filter's L1 norm.

    Args:
        weight: the weight array.
        layer: unused; part of the criterion signature.

    Returns:
        `abs(weight)`.

    Example:

    >>> l1(np.array([-2.0, 1.0]))
    array([2., 1.])
    """
    return np.abs(weight)


@keras.saving.register_keras_serializable(package="tfprune")
def l2(weight, layer=None):
    """L2 importance: `w**2`; summed over a filter it is the squared L2 norm.

    The square ranks filters of one layer exactly as the norm does.

    Args:
        weight: the weight array.
        layer: unused; part of the criterion signature.

    Returns:
        `weight ** 2`.

    Example:

    >>> l2(np.array([-2.0, 1.0]))
    array([4., 1.])
    """
    return np.square(weight)


_BUILT_IN = {"l1": l1, "l2": l2, "magnitude": l1}


def get(identifier):
    """Resolve a criterion from a name or callable.

    Args:
        identifier: `"l1"`, `"l2"`, `"magnitude"` (|w| per element, the same as l1),
            `"bn_scale"`, `"taylor"`, `"lap"`, `"lap_bn"`, `"lap_forward"`, `"fpgm"`,
            `"random"`, or a callable with the signature described in this module.

    Returns:
        The criterion callable.

    Raises:
        ValueError: for an unknown name.
        TypeError: for something that is neither a string nor callable.

    Example:

    >>> get("l2") is l2
    True
    """
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in _CONTEXT_CRITERIA:
            return _CONTEXT_CRITERIA[name]()
        if name not in _BUILT_IN:
            known = sorted([*_BUILT_IN, *_CONTEXT_CRITERIA])
            raise ValueError(f"Unknown criterion {identifier!r}. Built in: {known}, or pass a callable.")
        return _BUILT_IN[name]
    if callable(identifier):
        return identifier
    raise TypeError(f"criterion must be a name or a callable(weight, layer), got {type(identifier).__name__}.")


def name_of(criterion) -> str | dict:
    """Serializable form of a criterion: its built-in name, or Keras' serialization."""
    for name, fn in _BUILT_IN.items():
        if fn is criterion:
            return name
    return keras.saving.serialize_keras_object(criterion)


def from_name(config):
    """Inverse of `name_of`."""
    return get(config) if isinstance(config, str) else keras.saving.deserialize_keras_object(config)


# ---------------------------------------------------------------------------------------
# Criteria that look beyond the weight: they receive a `ScoringContext` as third argument.


class ScoringContext:
    """What context-aware criteria may use at one mask update: the model, its channel graph,
    and calibration data (`PruningCallback(data=...)`).

    Args:
        model: the pruned functional model.
        data: `(x, y)` calibration examples, or `None`.

    Example:

    >>> context = ScoringContext(pruned, data=(x[:256], y[:256]))
    >>> scores = tfprune.criteria.get("taylor")(weight, layer, context)
    """

    def __init__(self, model, data=None):
        self.model = model
        self.data = data
        self._graph = None
        self._gradients = None
        self._norms = None

    @property
    def graph(self):
        """The model's `ChannelGraph` (built on first use)."""
        from tfprune.graph import ChannelGraph

        if self._graph is None:
            self._graph = ChannelGraph(self.model)
        return self._graph

    def call_of(self, layer):
        """The first graph call of `layer` (or of the wrapper around it)."""
        from tfprune.graph import weights_owner

        for call in self.graph.calls():
            if weights_owner(call.layer) is layer:
                return call
        raise ValueError(f"Layer '{layer.name}' is not part of model '{self.model.name}'.")

    def gradient(self, variable) -> np.ndarray:
        """Mean gradient of the loss with respect to `variable` over the calibration data."""
        if self._gradients is None:
            self._gradients = _mean_gradients(self.model, self.data)
        return self._gradients[id(variable)]

    def neighbour_norms(self):
        """Per channel group: summed squared norms of the filters writing it (`producers`),
        of the input slices reading it (`consumers`), and the product of the squared BN
        scales it passes through (`bn_scale`)."""
        if self._norms is None:
            self._norms = _neighbour_norms(self.graph)
        return self._norms


def _mean_gradients(model, data, batch_size=64, batches=4):
    import tensorflow as tf

    from tfprune import adversarial, modelwalk, registry

    if data is None:
        raise ValueError(
            "The taylor criterion needs calibration data: pass PruningCallback(data=(x, y)) "
            "(a few hundred training examples) or apply_target(model, target, data=(x, y))."
        )
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    variables = []
    # Every wrapped layer, nested models included (a wrapper holds its layer in `.layer`).
    for layer in modelwalk.all_layers(model):
        owner = getattr(layer, "layer", None)
        spec = registry.spec_for(owner) if owner is not None else None
        if spec is not None:
            variables.append(registry.variable(owner, spec.weight))
    from_logits = adversarial.output_kind(model) == "logits"
    totals = [np.zeros(v.shape, np.float64) for v in variables]
    count = 0
    for start in range(0, min(len(x), batch_size * batches), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with tf.GradientTape() as tape:
            predictions = model(xb, training=False)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yb, predictions, from_logits=from_logits))
        for total, gradient in zip(totals, tape.gradient(loss, variables)):
            total += keras.ops.convert_to_numpy(gradient)
        count += 1
    return {id(v): t / max(count, 1) for v, t in zip(variables, totals)}


def _neighbour_norms(graph):
    from tfprune import registry
    from tfprune.graph import weights_owner

    producers, consumers, bn_scale = {}, {}, {}
    for call in graph.calls():
        owner, rule = weights_owner(call.layer), call.rule
        if isinstance(rule, registry.LayerSpec) and not rule.coupled:
            kernel = keras.ops.convert_to_numpy(registry.variable(owner, rule.weight)).astype(np.float64)
            canonical = rule.to_canonical(kernel)
            out = call.outputs[0]
            for c, value in enumerate((canonical**2).reshape(canonical.shape[0], -1).sum(axis=1)):
                root = graph.root(out, c)
                producers[root] = producers.get(root, 0.0) + value
            tensor = call.inputs[0]
            per_input = (canonical**2).sum(axis=(0, 1))
            multiplier = per_input.size // tensor.shape[-1]  # separable: inputs are channel x multiplier
            for i, value in enumerate(per_input):
                root = graph.root(tensor, i // multiplier)
                consumers[root] = consumers.get(root, 0.0) + value
        elif isinstance(owner, keras.layers.BatchNormalization):
            scale = keras.ops.convert_to_numpy(owner.gamma) / np.sqrt(keras.ops.convert_to_numpy(owner.moving_variance) + owner.epsilon)
            for c, value in enumerate(scale):
                root = graph.root(call.inputs[0], c)
                bn_scale[root] = bn_scale.get(root, 1.0) * float(value) ** 2
    return producers, consumers, bn_scale


class ContextCriterion(Configurable):
    """Base class of criteria called as `criterion(weight, layer, context)`.

    `granularities` lists the granularities the criterion makes sense for (None: all);
    `check(model, layers)` can refuse layers at `prune` time.
    """

    uses_context = True
    granularities = None
    sequential = False

    def check(self, model, layers) -> None:
        """Raise ValueError if the criterion cannot score one of `layers` in `model`."""


def _per_filter(layer, weight, filter_scores):
    """Spread one score per filter over the filter's weights (so the filter sum is the score)."""
    from tfprune import registry

    spec = registry.spec_for(layer)
    canonical = spec.to_canonical(np.zeros_like(weight, dtype=np.float64))
    unit = canonical[0].size
    canonical[...] = (np.asarray(filter_scores, np.float64) / unit)[:, None, None]
    return spec.from_canonical(canonical, weight.shape)


def _following_bn(context, layer):
    """The BatchNormalization layer that reads `layer`'s output directly, or None."""
    from tfprune.graph import weights_owner

    out = context.call_of(layer).outputs[0]
    for call in context.graph.calls():
        owner = weights_owner(call.layer)
        if isinstance(owner, keras.layers.BatchNormalization) and call.inputs and call.inputs[0] is out:
            return owner
    return None


@keras.saving.register_keras_serializable(package="tfprune")
class BNScale(ContextCriterion):
    """Network-slimming importance: `|gamma|` of the BatchNormalization right after the layer.

    Filter granularity only. `prune` refuses a layer not followed by a BatchNormalization.

    Example:

    >>> tfprune.prune(model, criterion="bn_scale")
    """

    granularities = ("filter",)

    def check(self, model, layers):
        context = ScoringContext(model)
        for layer in layers:
            if _following_bn(context, layer) is None:
                raise ValueError(
                    f"criterion 'bn_scale': layer '{layer.name}' is not followed by a BatchNormalization. "
                    f"Exclude it (exclude=['{layer.name}']) or use another criterion."
                )

    def __call__(self, weight, layer, context):
        bn = _following_bn(context, layer)
        return _per_filter(layer, weight, np.abs(keras.ops.convert_to_numpy(bn.gamma)))


@keras.saving.register_keras_serializable(package="tfprune")
class Taylor(ContextCriterion):
    """First-order Taylor importance `|w * dL/dw|`, the gradient averaged over calibration
    batches (`PruningCallback(data=(x, y))`): the loss change if a weight is removed.

    Example:

    >>> tfprune.prune(model, criterion="taylor")
    >>> pruned.fit(x, y, callbacks=[tfprune.PruningCallback(data=(x[:512], y[:512]))])
    """

    def __call__(self, weight, layer, context):
        from tfprune import registry

        variable = registry.variable(layer, registry.spec_for(layer).weight)
        return np.abs(weight * context.gradient(variable))


@keras.saving.register_keras_serializable(package="tfprune")
class LAP(ContextCriterion):
    """Lookahead pruning (Park et al., ICLR 2020): `w^2 * ||in||^2 * ||out||^2`.

    For weight `W[k -> j]`: the squared norm of the weights into input channel `k` (the
    filters that write it) and out of output channel `j` (the input slices that read it),
    over the masked weights, through the channel graph (so Conv -> Conv, Conv -> Flatten ->
    Dense and Dense -> Dense all work). A missing neighbour counts 1.

    Args:
        bn: `lap_bn`: also multiply by `(gamma / sqrt(var + eps))^2` of the BN between.
        forward: `lap_forward`: prune layers in graph order, each scored after the masks
            of the ones before it are updated (local ranking, sparsity targets).

    Example:

    >>> tfprune.prune(model, granularity="unstructured", criterion="lap")
    """

    def __init__(self, bn=False, forward=False):
        self.bn = bool(bn)
        self.forward = bool(forward)
        self.sequential = self.forward

    def __call__(self, weight, layer, context):
        from tfprune import registry

        spec = registry.spec_for(layer)
        call = context.call_of(layer)
        producers, consumers, bn_scale = context.neighbour_norms()
        graph = context.graph
        out = call.outputs[0]
        out_roots = [graph.root(out, f) for f in range(spec.filter_count(weight.shape))] if not spec.coupled else None
        canonical = spec.to_canonical(weight.astype(np.float64) ** 2)
        if spec.coupled:  # depthwise: input channel and output channel are one group
            roots = [graph.root(out, f) for f in range(canonical.shape[0])]
            factor = np.array([producers.get(r, 1.0) * consumers.get(r, 1.0) * (bn_scale.get(r, 1.0) if self.bn else 1.0) for r in roots])
            return spec.from_canonical(canonical * factor[:, None, None], weight.shape)
        tensor = call.inputs[0]
        multiplier = canonical.shape[2] // tensor.shape[-1]
        in_roots = [graph.root(tensor, i // multiplier) for i in range(canonical.shape[2])]
        in_factor = np.array([producers.get(r, 1.0) * (bn_scale.get(r, 1.0) if self.bn else 1.0) for r in in_roots])
        out_factor = np.array([consumers.get(r, 1.0) * (bn_scale.get(r, 1.0) if self.bn else 1.0) for r in out_roots])
        return spec.from_canonical(canonical * out_factor[:, None, None] * in_factor[None, None, :], weight.shape)

    def get_config(self):
        return {"bn": self.bn, "forward": self.forward}


@keras.saving.register_keras_serializable(package="tfprune")
class FPGM(ContextCriterion):
    """Filter pruning via geometric median (He et al., CVPR 2019): a filter's importance is
    its summed Euclidean distance to the layer's other filters, so the filters nearest the
    geometric median (the most replaceable) go first. Filter granularity only.

    Example:

    >>> tfprune.prune(model, criterion="fpgm")
    """

    granularities = ("filter",)

    def __call__(self, weight, layer, context=None):
        from tfprune import registry

        spec = registry.spec_for(layer)
        filters = spec.to_canonical(weight.astype(np.float64)).reshape(spec.filter_count(weight.shape), -1)
        squared = (filters**2).sum(axis=1)
        distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * filters @ filters.T, 0.0))
        return _per_filter(layer, weight, distances.sum(axis=1))


@keras.saving.register_keras_serializable(package="tfprune")
class RandomScores(ContextCriterion):
    """Random importance (seeded): the baseline every criterion must beat.

    Args:
        seed: seed; each mask update draws new scores from it.

    Example:

    >>> tfprune.prune(model, criterion="random")
    """

    def __init__(self, seed=0):
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, weight, layer, context=None):
        return self._rng.random(weight.shape)

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="tfprune")
class PwCRanking(ContextCriterion):
    """PwC's compensation-aware ranking of a layer's filters: the layer that reads them
    (the first dense or Conv1D/Conv2D reader of the same channels) keeps, greedily, the
    input channels whose loss least-squares compensation cannot make up for; filters rank
    by that order. Needs calibration data (`PruningCallback(data=...)`). Filter granularity.

    Example:

    >>> tfprune.prune(model, criterion="pwc")
    """

    granularities = ("filter",)

    def __call__(self, weight, layer, context):
        from tfprune import compensation, registry
        from tfprune.graph import weights_owner

        if context.data is None:
            raise ValueError("The pwc criterion needs calibration data: pass PruningCallback(data=(x, y)).")
        graph = context.graph
        out = context.call_of(layer).outputs[0]
        channel_of = {graph.root(out, c): c for c in range(out.shape[-1])}
        for call in graph.calls():
            reader = weights_owner(call.layer)
            spec = call.rule
            if not isinstance(spec, registry.LayerSpec) or spec.coupled or not compensation._compensable(reader):
                continue
            tensor = call.inputs[0]
            mapping = {i: channel_of.get(graph.root(tensor, i)) for i in range(tensor.shape[-1])}
            if not any(c is not None for c in mapping.values()):
                continue
            activations = keras.Model(self_inputs(context.model), tensor).predict(np.asarray(context.data[0])[:512], verbose=0)
            rows = compensation._patches(reader, activations)
            kernel = keras.ops.convert_to_numpy(registry.variable(reader, spec.weight))
            order = compensation.greedy_channel_order(rows[:20000], kernel.reshape(-1, kernel.shape[-1]), tensor.shape[-1])
            scores = np.zeros(out.shape[-1])
            for position, i in enumerate(order):
                if mapping[i] is not None:
                    scores[mapping[i]] = max(scores[mapping[i]], len(order) - position)
            return _per_filter(layer, weight, scores)
        raise ValueError(f"criterion 'pwc': no dense or convolution layer reads the filters of '{layer.name}'.")


def self_inputs(model):
    """The functional inputs of a model (Sequential models keep a functional inside)."""
    from tfprune.graph import functional_of

    return functional_of(model).inputs


_CONTEXT_CRITERIA = {
    "bn_scale": BNScale,
    "taylor": Taylor,
    "lap": LAP,
    "lap_bn": lambda: LAP(bn=True),
    "lap_forward": lambda: LAP(forward=True),
    "fpgm": FPGM,
    "random": RandomScores,
    "pwc": PwCRanking,
}
