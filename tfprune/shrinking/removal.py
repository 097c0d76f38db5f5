"""Which channel groups `shrink` may remove without changing the model's function.

See `tfprune.shrinking.shrink` for the rules; this module applies them to a channel graph
and its constant channels.
"""

from __future__ import annotations

import numpy as np

from tfprune.core.modelwalk import weights_owner
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.layers.spec import ChannelRule


def _fold_allowed(layer, spec, value: float) -> bool:
    if value == 0:
        return True
    if spec.fold == "always":
        return True
    if spec.fold == "valid":
        return getattr(layer, "padding", "valid") == "valid" or all(
            k == 1 for k in layer.kernel_size
        )
    return False


def _readers(graph: ChannelGraph):
    """`(call, spec)` for each call whose removed inputs must carry constants: producers fold
    them into their bias where `spec` says that is exact; normalization layers over channels
    (`spec` None) keep any constant in their statistics."""
    yield from graph.producers()
    for call in graph.calls():
        if isinstance(call.rule, ChannelRule) and call.rule.shrunk_as is not None:
            yield call, None


def removable_groups(graph: ChannelGraph, values: dict) -> set:
    """Roots of the groups that can go without changing the model's function.

    Args:
        graph: the model's `ChannelGraph`.
        values: its `constant_channels`.

    Returns:
        A set of group roots.

    Example:

    >>> from tfprune.graph.constants import constant_channels
    >>> inputs = keras.Input((3,))
    >>> fc = keras.layers.Dense(2, name="fc")
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="head")(fc(inputs)))
    >>> fc.set_weights([np.array([[1.0, 0.0]] * 3), np.zeros(2)])  # unit 1 outputs 0
    >>> graph = ChannelGraph(model)
    >>> removable_groups(graph, constant_channels(graph)) == {graph.root(fc.output, 1)}
    True
    """
    candidates = set()
    for call, _ in graph.producers():
        out = call.outputs[0]
        candidates.update(graph.root(out, c) for c in range(graph.width(out)))
    candidates -= set(graph.pinned)
    blocked = set()
    for call, spec in _readers(graph):
        layer, tensor = weights_owner(call.layer), call.inputs[0]
        value = values.get(id(tensor))
        for c in range(graph.width(tensor)):
            root = graph.root(tensor, c)
            if root not in candidates or root in blocked:
                continue
            constant = np.nan if value is None else value[c]
            if np.isnan(constant) or (
                spec is not None and not _fold_allowed(layer, spec, float(constant))
            ):
                blocked.add(root)
    removable = candidates - blocked
    # Never remove every channel of a tensor, nor every unit of a Bidirectional layer's
    # direction (Keras layers need one): keep the group of the first.
    kept_whole = [
        [(tensor, c) for c in range(graph.width(tensor))] for tensor in graph.tensors.values()
    ]
    for call, spec in graph.producers():
        for _, filters in spec.members.of(weights_owner(call.layer)) if spec.members else ():
            kept_whole.append([(call.outputs[0], int(f)) for f in filters])
    changed = True
    while changed:
        changed = False
        for channels in kept_whole:
            roots = {graph.root(tensor, c) for tensor, c in channels}
            if roots and roots <= removable:
                removable.discard(graph.root(*channels[0]))
                changed = True
    return removable
