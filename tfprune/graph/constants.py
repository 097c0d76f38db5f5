"""Constant channels: which channels carry the same value for every input, and that value.

`shrink` may remove a channel only where every reader sees a constant it can fold into its
bias; this module finds those constants.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.core.modelwalk import weights_owner
from tfprune.graph import reference
from tfprune.graph.channel_graph import ChannelGraph, Link, state_channels
from tfprune.layers.mask_layout import pruned_array, pruned_bias
from tfprune.layers.spec import ChannelRule, LayerSpec


def constant_channels(graph: ChannelGraph, seed: int = 0) -> dict:
    """For every tensor, the value each channel carries if it is the same for every input.

    A channel is constant when its producer's filter is all zero (it then outputs its
    bias), and stays constant through layers that map constants to constants. Those are
    found by running each layer on random inputs (around several offsets) that share the
    constant channels: a channel is constant if it is uniform over positions and equal in
    every run. That catches, without a rule per layer, that zero padding breaks a nonzero
    constant, and that a channel multiplied by zero is zero.

    Args:
        graph: a `ChannelGraph`.
        seed: seed of the random probes. Defaults to 0.

    Returns:
        `{id(tensor): float array of channel values, NaN where the channel varies}`.

    Example:

    >>> inputs = keras.Input((4, 4, 2))
    >>> conv = keras.layers.Conv2D(2, 1)
    >>> out = keras.layers.ReLU()(conv(inputs))
    >>> conv.set_weights([np.array([[[[1.0, 0.0], [1.0, 0.0]]]]), np.array([0.0, -3.0])])
    >>> constant_channels(ChannelGraph(keras.Model(inputs, out)))[id(out)]  # relu(-3) = 0
    array([nan,  0.])
    """
    rng = np.random.default_rng(seed)
    values = {}

    def value_of(tensor):
        return values.get(id(tensor), np.full(graph.width(tensor), np.nan))

    for step in graph.steps:
        if isinstance(step, Link):
            # A nested model's input of unknown last axis (token ids, `(batch, None)`) takes
            # an outer tensor of known length: no channels to carry across.
            if graph.width(step.source) == graph.width(step.target):
                values[id(step.target)] = _merge(values.get(id(step.target)), value_of(step.source))
            continue
        layer = weights_owner(step.layer)
        if step.rule is None:
            computed = [np.full(graph.width(t), np.nan) for t in step.outputs]
        elif isinstance(step.rule, LayerSpec) and not step.rule.coupled:
            dead = _zero_filter_values(layer, step.rule)
            computed = [dead]
            if step.rule.joined:  # a recurrent layer's final states carry its units too
                states = {id(t): f for t, f in state_channels(step, step.rule, layer)}
                computed += [dead[states[id(t)]] for t in step.outputs[1:]]
        elif isinstance(step.rule, ChannelRule) and step.rule.kind == "weight":
            computed = [_weight_values(layer)]
        elif isinstance(step.rule, ChannelRule) and step.rule.structural:
            computed = _moved_values(graph, step, value_of)
        else:
            inputs = [value_of(t) for t in step.inputs]
            if all(np.isnan(v).all() for v in inputs) and not isinstance(step.rule, LayerSpec):
                computed = [np.full(graph.width(t), np.nan) for t in step.outputs]
            else:
                try:
                    computed = _probe(graph, step, inputs, rng)  # as the graph calls it
                except Exception:  # a layer that cannot run on the probe: nothing is known
                    computed = [np.full(graph.width(t), np.nan) for t in step.outputs]
        for tensor, value in zip(step.outputs, computed):
            values[id(tensor)] = _merge(values.get(id(tensor)), value)
    return values


def _weight_values(layer) -> np.ndarray:
    """A traced layer's `Weight` of one axis is one constant per channel; a larger one (a
    position table) varies along its other axes."""
    value = keras.ops.convert_to_numpy(layer.value).astype(np.float64)
    return value if value.ndim == 1 else np.full(value.shape[-1], np.nan)


def _moved_values(graph, call, value_of) -> list:
    """An op that only rearranges entries (a reshape into heads, a repeat): each output
    channel holds what its input channels hold, a constant where they all hold one."""
    computed = [np.full(graph.width(t), np.nan) for t in call.outputs]
    sums = [{} for _ in call.outputs]
    for source, target, pairs in call.moves:
        index = next(i for i, t in enumerate(call.outputs) if t is target)
        incoming = value_of(source)
        for c_in, c_out in pairs:
            sums[index].setdefault(int(c_out), []).append(incoming[int(c_in)])
    for index, by_channel in enumerate(sums):
        for channel, found in by_channel.items():
            found = np.asarray(found)
            if not np.isnan(found).any() and np.allclose(found, found[0], rtol=0, atol=1e-7):
                computed[index][channel] = found[0]
    return computed


def _merge(existing, new):
    if existing is None:
        return new
    same = np.isclose(existing, new, rtol=0, atol=1e-7) & ~np.isnan(existing)
    return np.where(same, existing, np.nan)


def _zero_filter_values(layer, spec) -> np.ndarray:
    """A producer's output channels where the filter is all zero, else NaN: its bias, or for
    a recurrent unit (`dead_output="zero"`) zero if its bias is zero too."""
    kernel = pruned_array(layer, spec)
    dead = ~spec.to_canonical(kernel).reshape(spec.filter_count(kernel.shape), -1).any(axis=1)
    bias = pruned_bias(layer, spec) if spec.bias else None
    if bias is None:
        return np.where(dead, 0.0, np.nan)
    per_filter = spec.bias_per_filter(bias.astype(np.float64), dead.size)
    if spec.dead_output == "zero":
        return np.where(dead & ~per_filter.any(axis=1), 0.0, np.nan)
    return np.where(dead, per_filter[:, 0], np.nan)


# Live channels are filled with noise around these offsets, one run each: a channel that
# depends on its input then differs between runs even after ReLU, ReLU6 or a sigmoid,
# however small the tensor (a 2x2 map of pure noise could be all-negative in two runs).
_PROBE_OFFSETS = (1.0, 2.5, -1.0)


def _probe(graph, call, input_values, rng) -> list:
    layer = call.layer
    runs = []
    for offset in _PROBE_OFFSETS:
        arrays = []
        for tensor, value in zip(call.inputs, input_values):
            # At the reference size, where the graph's sizes agree with each other (a
            # sequence's positions and its mask).
            shape = [1 if d is None else d for d in reference.concrete_shape(tensor)]
            array = (offset + 0.5 * rng.normal(size=shape)).astype(np.float32)
            axis = graph.axis(tensor)
            if axis is not None and value.size:
                known = ~np.isnan(value)
                view = np.moveaxis(array, axis, -1)
                view[..., known] = value[known]
            arrays.append(array)
        if isinstance(layer, keras.layers.Layer) and keras_internals.op_function(layer) is None:
            if call.arguments is not None and isinstance(layer, keras.layers.Softmax):
                args, kwargs = keras_internals.fill_arguments(
                    call.arguments, {id(t): a for t, a in zip(call.inputs, arrays)}
                )
                outputs = layer(*args, **kwargs, training=False)
            else:
                outputs = layer(arrays if len(arrays) > 1 else arrays[0], training=False)
        else:  # a Keras op, whose call may mix tensors and Python constants (`x * 2.0`)
            args, kwargs = keras_internals.fill_arguments(
                call.arguments, {id(t): a for t, a in zip(call.inputs, arrays)}
            )
            outputs = layer(*args, **kwargs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        runs.append([keras.ops.convert_to_numpy(o).astype(np.float64) for o in outputs])
    results = []
    for tensor, per_run in zip(call.outputs, zip(*runs)):
        axis = graph.axis(tensor)
        if axis is None:
            results.append(np.full(0, np.nan))
            continue
        flat = [np.moveaxis(r, axis, -1).reshape(-1, r.shape[axis]) for r in per_run]
        first = flat[0][0]
        scale = 1e-6 * (1 + np.abs(first))
        uniform = np.ones(first.shape, bool)
        for f in flat:
            uniform &= (f.max(axis=0) - f.min(axis=0) <= scale) & (np.abs(f[0] - first) <= scale)
        results.append(np.where(uniform, first, np.nan))
    return results
