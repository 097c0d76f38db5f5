"""Which layers `prune` wraps: selectors, the automatic protection, and what the graph allows."""

from __future__ import annotations

import keras

from tfprune.core import keras_internals, modelwalk
from tfprune.layers import registry
from tfprune.layers.spec import ChannelRule


def matches(layer, selector) -> bool:
    """Whether `layer` is what a selector of `layers=`, `exclude=` or `protect=` names.

    Args:
        layer: a Keras layer.
        selector: a layer name, a layer class, or a predicate `layer -> bool`.

    Returns:
        True if it matches.

    Raises:
        TypeError: for any other selector.

    Example:

    >>> dense = keras.layers.Dense(2, name="fc")
    >>> matches(dense, "fc"), matches(dense, keras.layers.Conv2D), matches(dense, lambda l: True)
    (True, False, True)
    """
    if isinstance(selector, str):
        return layer.name == selector
    if isinstance(selector, type):
        return isinstance(layer, selector)
    if callable(selector):
        return bool(selector(layer))
    raise TypeError(f"Layer selectors are names, layer classes or predicates; got {selector!r}.")


def as_list(selectors):
    """One selector or several, as a list.

    Args:
        selectors: `None`, one selector, or an iterable of them.

    Returns:
        A list (empty for `None`).

    Example:

    >>> as_list("conv1"), as_list(["a", "b"]), as_list(None)
    (['conv1'], ['a', 'b'], [])
    """
    if selectors is None:
        return []
    if isinstance(selectors, (str, type)) or callable(selectors):
        return [selectors]
    return list(selectors)


def _check_names_exist(selectors, layers, argument):
    names = {layer.name for layer in layers}
    for selector in selectors:
        if isinstance(selector, str) and selector not in names:
            raise ValueError(
                f"{argument}: the model has no layer named '{selector}'. Layers: {sorted(names)}."
            )


def _heads(tensor, memo):
    """Registered layers whose output reaches `tensor` through unregistered layers only."""
    operation, node_index = keras_internals.producer_of(tensor)
    key = (id(operation), node_index)
    if key in memo:
        return memo[key]
    memo[key] = set()

    def through_inputs():
        inputs, _ = keras_internals.calls_of(operation)[node_index]
        return set().union(set(), *(_heads(t, memo) for t in inputs))

    if isinstance(operation, keras.Model):
        found = set().union(*(_heads(out, memo) for out in operation.outputs)) or through_inputs()
    elif isinstance(operation, keras.layers.InputLayer):
        found = set()
    elif registry.spec_for(operation) is not None:
        found = {operation}
    else:
        found = through_inputs()
    memo[key] = found
    return found


def first_convolution(layers):
    """The first layer that computes on the input and is neither a Dense layer, a lookup
    table nor attention: the layer `protect="auto"` guards (see `tfprune.prune`).

    Args:
        layers: the model's layers, in model order.

    Returns:
        The layer, or `None`.

    Example:

    >>> inputs = keras.Input((6, 6, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv2")(x))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    >>> first_convolution(model.layers).name
    'conv1'
    """
    for layer in layers:
        spec = registry.spec_for(layer)
        computes = spec is not None and bool(spec.flops_weights) and not spec.internal_units
        if computes and not isinstance(layer, keras.layers.Dense):
            return layer
    return None


def _auto_protected(model):
    """Every classifier head (a registered layer that feeds an output through unregistered
    layers only, and whose filters are its outputs): pruning these costs most accuracy."""
    protected = set()
    memo = {}
    for output in model.outputs:
        # A layer pruned by units inside it (a transformer block's feed-forward units) keeps
        # its output channels: it is no classifier head even where it writes an output.
        heads = [layer for layer in _heads(output, memo) if not registry.unit_count(layer)]
        protected.update(id(layer) for layer in heads)
    return protected


def select_layers(model, layers, exclude, protect):
    """The layers `prune` wraps, before the channel graph has its say.

    Args:
        model: the model being pruned.
        layers: `prune`'s `layers=` (selectors), or `None` for every registered layer.
        exclude: `prune`'s `exclude=`, or `None`.
        protect: `"auto"` (the classifier heads; `prune` guards the first convolution by
            granularity), selectors, or `None`.

    Returns:
        The selected layers, in model order.

    Raises:
        ValueError: for names the model does not have, or a named layer that cannot be pruned.

    Example:

    >>> inputs = keras.Input((6, 6, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    >>> x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, name="conv2")(x))
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    >>> [layer.name for layer in select_layers(model, None, None, "auto")]
    ['conv1', 'conv2']
    """
    candidates = list(modelwalk.all_layers(model))
    chosen, exclude = as_list(layers), as_list(exclude)
    _check_names_exist(chosen, candidates, "layers")
    _check_names_exist(exclude, candidates, "exclude")
    for layer in candidates:
        explicit = any(matches(layer, s) for s in chosen if isinstance(s, str))
        if explicit and registry.spec_for(layer) is None:
            raise ValueError(
                f"layers: '{layer.name}' ({type(layer).__name__}) cannot be pruned. Prunable "
                f"types: {', '.join(registry.supported_types())}; register others with "
                "tfprune.register_layer."
            )
    if protect == "auto":
        protected = _auto_protected(model)
    else:
        protect = as_list(protect)
        _check_names_exist(protect, candidates, "protect")
        protected = {id(layer) for layer in candidates if any(matches(layer, s) for s in protect)}
    selected = []
    for layer in candidates:
        if registry.spec_for(layer) is None or any(matches(layer, s) for s in exclude):
            continue
        if chosen:
            if any(matches(layer, s) for s in chosen):
                selected.append(layer)
        elif id(layer) not in protected:
            selected.append(layer)
    return selected


def without_units(selected, chosen, granularity):
    """The selected layers without those whose filters are units inside them (attention
    heads), which only filter pruning removes.

    Args:
        selected: the layers `select_layers` chose.
        chosen: the user's `layers=` selectors, as a list.
        granularity: the `Granularity` asked for, for the message.

    Returns:
        The layers that stay selected.

    Raises:
        ValueError: for such a layer named in `chosen`.

    Example:

    >>> inputs = keras.Input((4, 8))
    >>> attention = keras.layers.MultiHeadAttention(2, 4, name="attention")
    >>> x = keras.layers.Dense(8, name="fc")(attention(inputs, inputs))
    >>> model = keras.Model(inputs, x)
    >>> [layer.name for layer in without_units(model.layers[1:], [], "unstructured")]
    ['fc']
    """
    kept = []
    for layer in selected:
        if registry.spec_for(layer).internal_units:
            if any(isinstance(s, str) and s == layer.name for s in chosen):
                raise ValueError(
                    f"layers: '{layer.name}' ({type(layer).__name__}) is pruned by whole units "
                    f"(heads), with granularity='filter', not '{granularity}'. Leave it out, or "
                    "use granularity='filter' to prune its heads."
                )
            continue
        kept.append(layer)
    return kept


def without_pinned(graph, selected, chosen):
    """The selected layers whose filters the graph lets filter pruning touch.

    A layer whose every channel is pinned (it writes a model output, or feeds a barrier) is
    dropped, or refused if the user named it.

    Args:
        graph: the model's `ChannelGraph`.
        selected: the layers `select_layers` chose.
        chosen: the user's `layers=` selectors, as a list.

    Returns:
        The layers that stay selected.

    Raises:
        ValueError: for a layer named in `chosen` whose channels are all pinned.

    Example:

    >>> from tfprune.graph.channel_graph import ChannelGraph
    >>> inputs = keras.Input((6, 6, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    >>> x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, name="conv2")(x))
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    >>> candidates = [model.get_layer(name) for name in ("conv1", "conv2", "head")]
    >>> [layer.name for layer in without_pinned(ChannelGraph(model), candidates, [])]
    ['conv1', 'conv2']
    """
    kept = []
    for layer in selected:
        if registry.spec_for(layer).internal_units:
            kept.append(layer)  # its units are inside it: no channel of the graph pins them
            continue
        calls = [c for c in graph.calls() if c.layer is layer]
        roots = [
            graph.root(c.outputs[0], i) for c in calls for i in range(graph.width(c.outputs[0]))
        ]
        if roots and all(graph.is_pinned(r) for r in roots):
            if any(isinstance(s, str) and s == layer.name for s in chosen):
                raise ValueError(
                    f"layers: the filters of '{layer.name}' cannot be pruned: "
                    f"{graph.pinned[roots[0]]}. Leave it out, or use granularity='unstructured'."
                )
            continue
        kept.append(layer)
    return kept


def followers(graph, selected):
    """Layers with maskable per-channel weights (BN) fed by a selected layer's filters.

    Args:
        graph: the model's `ChannelGraph`.
        selected: the layers filter pruning wraps.

    Returns:
        The `id`s of the layers to wrap in a `ChannelMaskWrapper`.

    Example:

    >>> from tfprune.graph.channel_graph import ChannelGraph
    >>> conv, bn = keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()
    >>> model = keras.Sequential([keras.Input((6, 6, 3)), conv, bn, keras.layers.Flatten()])
    >>> followers(ChannelGraph(model), [conv]) == {id(bn)}
    True
    """
    selected_ids = {id(layer) for layer in selected if not registry.spec_for(layer).internal_units}
    roots = set()
    for call in graph.calls():
        if id(call.layer) in selected_ids:
            out = call.outputs[0]
            roots.update(graph.root(out, c) for c in range(graph.width(out)))
    followers = set()
    for call in graph.calls():
        rule = call.rule
        if isinstance(rule, ChannelRule) and rule.masked:
            tensor = call.inputs[0]
            if any(graph.root(tensor, c) in roots for c in range(graph.width(tensor))):
                followers.add(id(call.layer))
    return followers
