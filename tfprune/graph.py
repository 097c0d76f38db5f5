"""Channel dependency graph of a Keras 3 functional model (DepGraph's coupling rules).

Every channel of every symbolic tensor is a node. Layers tie nodes together as the registry
says: a pass-through layer ties input channel `c` to output channel `c`, an Add ties the
same channel of all its inputs, a Concatenate shifts by offsets, Flatten maps feature `i`
to channel `i % C`, a depthwise convolution ties input `c` to its outputs. A connected set
of nodes is a *group*: channels that can only be removed together. Producers (convolutions,
dense layers) start new channels; their inputs are *consumers*.

Groups that touch a model input or output, or a layer the graph cannot see through (a
barrier: Reshape that moves channels, Lambda, attention, Softmax...), are *pinned*: never
removed. `explain(model)` lists why.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune import registry


def functional_of(model):
    """The functional graph behind a model (Sequential models keep one once built)."""
    return model._functional if isinstance(model, keras.Sequential) else model


def weights_owner(layer):
    """The layer holding the weights: a wrapper's inner layer, else the layer itself."""
    return layer.layer if isinstance(layer, keras.layers.Wrapper) else layer


class UnionFind:
    """Disjoint sets over hashable items, with path compression."""

    def __init__(self):
        self.parent = {}

    def find(self, node):
        parent = self.parent.setdefault(node, node)
        if parent == node:
            return node
        root = self.find(parent)
        self.parent[node] = root
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclasses.dataclass
class Call:
    """One call of a layer (or a Keras op such as `x + y`) in the (flattened) graph."""

    layer: object
    inputs: list  # KerasTensors
    outputs: list
    rule: object  # LayerSpec, ChannelRule, or None for a barrier
    arguments: object = None  # the node's symbolic arguments, tensors and constants alike


@dataclasses.dataclass
class Link:
    """Identity between two tensors: the inside and outside of a nested model's call."""

    source: object
    target: object


def _width(tensor) -> int:
    return int(tensor.shape[-1])


def _array_constants(call) -> list:
    """Arrays a Keras op was called with besides its tensors (`x + np.ones(8)`): they have
    the old channel count baked in, so only width-1 (broadcast) ones are harmless."""
    if call.arguments is None or isinstance(call.layer, keras.layers.Layer):
        return []
    flat = keras.tree.flatten((call.arguments.args, call.arguments.kwargs))
    return [np.asarray(a) for a in flat if not isinstance(a, keras.KerasTensor) and hasattr(a, "shape")]


def _data_format_ok(layer) -> bool:
    return getattr(weights_owner(layer), "data_format", "channels_last") in (None, "channels_last")


class ChannelGraph:
    """The channel groups of a model.

    Args:
        model: a built Keras 3 functional or Sequential model (nested models allowed;
            tfprune wrappers are seen through).

    Example:

    >>> graph = ChannelGraph(model)
    >>> graph.group_of(model.get_layer("conv1").output, 3)
    """

    def __init__(self, model):
        self.model = model
        self.steps = []  # Calls and Links, in topological order
        self.tensors = {}
        self._uf = UnionFind()
        self._pins = []  # (node, reason)
        self._visited_models = set()
        self._walk(functional_of(model))
        for tensor in functional_of(model).inputs:
            self._pin_tensor(tensor, f"model input '{tensor.name}'")
        for tensor in functional_of(model).outputs:
            self._pin_tensor(tensor, "a model output (its width is the model's interface)")
        self._couple_shared_calls()
        self.pinned = {}
        for node, reason in self._pins:
            self.pinned.setdefault(self._uf.find(node), reason)

    # ------------------------------------------------------------------ building
    def _register(self, tensor):
        self.tensors[id(tensor)] = tensor

    def _pin_tensor(self, tensor, reason):
        self._register(tensor)
        for c in range(_width(tensor)):
            self._pins.append(((id(tensor), c), reason))

    def _tie(self, a, ca, b, cb):
        self._uf.union((id(a), ca), (id(b), cb))

    def _tie_all(self, a, b):
        for c in range(_width(a)):
            self._tie(a, c, b, c)

    def _walk(self, functional):
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                if node.is_input or node.operation is None:
                    continue
                layer = node.operation
                inputs, outputs = list(node.input_tensors), list(node.outputs)
                for tensor in inputs + outputs:
                    self._register(tensor)
                if isinstance(layer, keras.Model):
                    self._walk_nested(layer, inputs, outputs)
                else:
                    self._add_call(layer, inputs, outputs, node.arguments)

    def _walk_nested(self, model, inputs, outputs):
        inner = functional_of(model)
        for outer, inside in zip(inputs, inner.inputs):
            self._register(inside)
            self._tie_all(outer, inside)
            self.steps.append(Link(outer, inside))
        if id(inner) not in self._visited_models:
            self._visited_models.add(id(inner))
            self._walk(inner)
        else:
            # A nested model called again reuses its inner tensors: replay its steps so
            # that value propagation sees this call's inputs too.
            self.steps.extend(step for step in self._steps_of(inner))
        for inside, outer in zip(inner.outputs, outputs):
            self._tie_all(inside, outer)
            self.steps.append(Link(inside, outer))

    def _steps_of(self, functional):
        inner_ids = {id(n.operation) for nodes in functional._nodes_by_depth.values() for n in nodes}
        return [s for s in self.steps if isinstance(s, Call) and id(s.layer) in inner_ids]

    def _add_call(self, layer, inputs, outputs, arguments=None):
        rule = registry.channel_rule(weights_owner(layer), inputs[0].shape if inputs else None)
        if not _data_format_ok(layer):
            rule = None
        call = Call(layer, inputs, outputs, rule, arguments)
        self.steps.append(call)
        reason = self._tie_call(call)
        if reason:
            call.rule = None
            for tensor in inputs + outputs:
                self._pin_tensor(tensor, reason)

    def _tie_call(self, call) -> str | None:
        """Tie the call's channels; return a reason to pin them instead, if any."""
        layer, rule = weights_owner(call.layer), call.rule
        name = f"{type(layer).__name__} '{layer.name}'"
        if rule is None:
            return f"{name} is a barrier: {registry.barrier_reason(layer)}"
        if any(t.shape[-1] is None for t in call.inputs + call.outputs):
            return f"{name} has an unknown channel count"
        out = call.outputs[0]
        if isinstance(rule, registry.LayerSpec):
            if rule.coupled:
                multiplier = rule.outputs_per_input(layer)
                for c in range(_width(call.inputs[0])):
                    for m in range(multiplier):
                        self._tie(call.inputs[0], c, out, c * multiplier + m)
            return None
        for constant in _array_constants(call):
            if constant.ndim and constant.shape[-1] != 1:
                return f"{name} combines its input with a constant of {constant.shape[-1]} channels"
        if rule.kind in ("passthrough", "reshape"):
            if _width(call.inputs[0]) != _width(out):
                return f"{name} changes the channel count"
            self._tie_all(call.inputs[0], out)
        elif rule.kind == "elementwise":
            for tensor in call.inputs:
                if _width(tensor) == _width(out):
                    self._tie_all(tensor, out)
                elif _width(tensor) != 1:
                    return f"{name} broadcasts a tensor of {_width(tensor)} channels"
        elif rule.kind == "concat":
            axis = layer.axis % len(out.shape)
            if axis != len(out.shape) - 1:
                for tensor in call.inputs:
                    self._tie_all(tensor, out)
            else:
                offset = 0
                for tensor in call.inputs:
                    for c in range(_width(tensor)):
                        self._tie(tensor, c, out, offset + c)
                    offset += _width(tensor)
        elif rule.kind == "flatten":
            channels = _width(call.inputs[0])
            for i in range(_width(out)):
                self._tie(call.inputs[0], i % channels, out, i)
        return None

    def _couple_shared_calls(self):
        """A layer called more than once has one set of weights: its channels agree across calls."""
        first = {}
        for step in self.steps:
            if not isinstance(step, Call):
                continue
            if id(step.layer) not in first:
                first[id(step.layer)] = step
                continue
            earlier = first[id(step.layer)]
            for a, b in zip(earlier.inputs + earlier.outputs, step.inputs + step.outputs):
                if a is not b and _width(a) == _width(b):
                    self._tie_all(a, b)

    # ------------------------------------------------------------------ queries
    def root(self, tensor, channel: int):
        """The group id of one channel of one tensor."""
        return self._uf.find((id(tensor), channel))

    def calls(self):
        """The layer calls, in topological order (nested models flattened)."""
        return [s for s in self.steps if isinstance(s, Call)]

    def producers(self):
        """Calls whose outputs are new channels: `(call, spec)` for non-coupled specs."""
        return [
            (c, c.rule)
            for c in self.calls()
            if isinstance(c.rule, registry.LayerSpec) and not c.rule.coupled
        ]

    def is_pinned(self, root) -> bool:
        """Whether a group can never be removed."""
        return root in self.pinned


def explain(model) -> list[dict]:
    """Which filters of each convolution or dense layer the graph could remove, and why not.

    Args:
        model: a built Keras 3 functional or Sequential model.

    Returns:
        One dict per layer with a prunable weight: `layer`, `filters`, `removable` (filters
        in groups that are free to go, if they are zero) and `reasons` (why the others are
        pinned: a barrier layer's name, a model output...).

    Raises:
        TypeError, ValueError: as `tfprune.prune` for models it cannot read.

    Example:

    >>> for row in tfprune.explain(model):
    ...     print(row["layer"], row["removable"], "/", row["filters"], row["reasons"])
    """
    from tfprune import checks

    checks.check_model(model, "explain")
    graph = ChannelGraph(model)
    rows, seen = [], set()
    for call, _ in graph.producers():
        layer = weights_owner(call.layer)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out = call.outputs[0]
        roots = [graph.root(out, c) for c in range(_width(out))]
        reasons = sorted({graph.pinned[r] for r in roots if graph.is_pinned(r)})
        rows.append(
            {
                "layer": layer.name,
                "filters": len(roots),
                "removable": int(sum(not graph.is_pinned(r) for r in roots)),
                "reasons": reasons,
            }
        )
    return rows


def constant_channels(graph: ChannelGraph, seed: int = 0) -> dict:
    """For every tensor, the value each channel carries if it is the same for every input.

    A channel is constant when its producer's filter is all zero (it then outputs its
    bias), and stays constant through layers that map constants to constants. Those are
    found by running each layer on random inputs (around several offsets) that share the
    constant channels: a channel is constant if it is uniform over positions and equal in
    every run. That
    catches, without a rule per layer, that zero padding breaks a nonzero constant, and
    that a channel multiplied by zero is zero.

    Args:
        graph: a `ChannelGraph`.
        seed: seed of the random probes.

    Returns:
        `{id(tensor): float array of channel values, NaN where the channel varies}`.
    """
    rng = np.random.default_rng(seed)
    values = {}

    def value_of(tensor):
        return values.get(id(tensor), np.full(_width(tensor), np.nan))

    for step in graph.steps:
        if isinstance(step, Link):
            values[id(step.target)] = _merge(values.get(id(step.target)), value_of(step.source))
            continue
        layer = weights_owner(step.layer)
        if step.rule is None:
            computed = [np.full(_width(t), np.nan) for t in step.outputs]
        elif isinstance(step.rule, registry.LayerSpec) and not step.rule.coupled:
            computed = [_zero_filter_values(layer, step.rule)]
        else:
            inputs = [value_of(t) for t in step.inputs]
            if all(np.isnan(v).all() for v in inputs) and not isinstance(step.rule, registry.LayerSpec):
                computed = [np.full(_width(t), np.nan) for t in step.outputs]
            else:
                computed = _probe(layer, step, inputs, rng)
        for tensor, value in zip(step.outputs, computed):
            values[id(tensor)] = _merge(values.get(id(tensor)), value)
    return values


def _merge(existing, new):
    if existing is None:
        return new
    same = np.isclose(existing, new, rtol=0, atol=1e-7) & ~np.isnan(existing)
    return np.where(same, existing, np.nan)


def _zero_filter_values(layer, spec) -> np.ndarray:
    """A producer's output channels: its bias where the filter is all zero, else NaN."""
    kernel = keras.ops.convert_to_numpy(registry.variable(layer, spec.weight))
    dead = ~spec.to_canonical(kernel).reshape(spec.filter_count(kernel.shape), -1).any(axis=1)
    bias = registry.variable(layer, spec.bias) if spec.bias else None
    bias = np.zeros(dead.size) if bias is None else keras.ops.convert_to_numpy(bias).astype(np.float64)
    return np.where(dead, bias, np.nan)


# Live channels are filled with noise around these offsets, one run each: a channel that
# depends on its input then differs between runs even after ReLU, ReLU6 or a sigmoid,
# however small the tensor (a 2x2 map of pure noise could be all-negative in two runs).
_PROBE_OFFSETS = (1.0, 2.5, -1.0)


def _probe(layer, call, input_values, rng) -> list:
    runs = []
    for offset in _PROBE_OFFSETS:
        arrays = []
        for tensor, value in zip(call.inputs, input_values):
            shape = [1] + [d if d is not None else 8 for d in tensor.shape[1:]]
            array = (offset + 0.5 * rng.normal(size=shape)).astype(np.float32)
            known = ~np.isnan(value)
            array[..., known] = value[known]
            arrays.append(array)
        if isinstance(layer, keras.layers.Layer):
            outputs = layer(arrays if len(arrays) > 1 else arrays[0], training=False)
        else:  # a Keras op, whose call may mix tensors and Python constants (`x * 2.0`)
            args, kwargs = call.arguments.fill_in({id(t): a for t, a in zip(call.inputs, arrays)})
            outputs = layer(*args, **kwargs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        runs.append([keras.ops.convert_to_numpy(o).astype(np.float64) for o in outputs])
    results = []
    for per_run in zip(*runs):
        flat = [r.reshape(-1, r.shape[-1]) for r in per_run]
        first = flat[0][0]
        scale = 1e-6 * (1 + np.abs(first))
        uniform = np.ones(first.shape, bool)
        for f in flat:
            uniform &= (f.max(axis=0) - f.min(axis=0) <= scale) & (np.abs(f[0] - first) <= scale)
        results.append(np.where(uniform, first, np.nan))
    return results
