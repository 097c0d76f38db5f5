"""`tfprune.prune`: a copy of the user's model with its prunable layers wrapped."""

from __future__ import annotations

import keras

from tfprune import checks, criteria, modelwalk, registry, schedules
from tfprune import granularity as granularities
from tfprune.graph import ChannelGraph
from tfprune.ranking import PruningPlan
from tfprune.wrappers import ChannelMaskWrapper, PruneWrapper, wrappers_of


def _matches(layer, selector) -> bool:
    if isinstance(selector, str):
        return layer.name == selector
    if isinstance(selector, type):
        return isinstance(layer, selector)
    if callable(selector):
        return bool(selector(layer))
    raise TypeError(f"Layer selectors are names, layer classes or predicates; got {selector!r}.")


def _as_list(selectors):
    if selectors is None:
        return []
    if isinstance(selectors, (str, type)) or callable(selectors):
        return [selectors]
    return list(selectors)


def _check_names_exist(selectors, layers, argument):
    names = {layer.name for layer in layers}
    for selector in selectors:
        if isinstance(selector, str) and selector not in names:
            raise ValueError(f"{argument}: the model has no layer named '{selector}'. Layers: {sorted(names)}.")


def _heads(tensor, memo):
    """Registered layers whose output reaches `tensor` through unregistered layers only."""
    operation, node_index, _ = tensor._keras_history
    key = (id(operation), node_index)
    if key in memo:
        return memo[key]
    memo[key] = set()
    if isinstance(operation, keras.Model):
        found = set().union(*(_heads(out, memo) for out in operation.outputs))
        if not found:
            node = operation._inbound_nodes[node_index]
            found = set().union(set(), *(_heads(t, memo) for t in node.input_tensors))
    elif isinstance(operation, keras.layers.InputLayer):
        found = set()
    elif registry.spec_for(operation) is not None:
        found = {operation}
    else:
        node = operation._inbound_nodes[node_index]
        found = set().union(set(), *(_heads(t, memo) for t in node.input_tensors))
    memo[key] = found
    return found


def _auto_protected(model, layers):
    """The first convolution and every classifier head (a registered layer that feeds an
    output through unregistered layers only): pruning these costs most accuracy."""
    protected = set()
    for layer in layers:
        if registry.spec_for(layer) is not None and not isinstance(layer, keras.layers.Dense):
            protected.add(id(layer))
            break
    memo = {}
    for output in model.outputs:
        protected.update(id(layer) for layer in _heads(output, memo))
    return protected


def _select(model, layers, exclude, protect):
    candidates = list(modelwalk.all_layers(model))
    chosen, exclude = _as_list(layers), _as_list(exclude)
    _check_names_exist(chosen, candidates, "layers")
    _check_names_exist(exclude, candidates, "exclude")
    for layer in candidates:
        explicit = any(_matches(layer, s) for s in chosen if isinstance(s, str))
        if explicit and registry.spec_for(layer) is None:
            raise ValueError(
                f"layers: '{layer.name}' ({type(layer).__name__}) cannot be pruned. Prunable types: "
                f"{', '.join(registry.supported_types())}; register others with tfprune.register_layer."
            )
    if protect == "auto":
        protected = _auto_protected(model, candidates)
    else:
        protect = _as_list(protect)
        _check_names_exist(protect, candidates, "protect")
        protected = {id(layer) for layer in candidates if any(_matches(layer, s) for s in protect)}
    selected = []
    for layer in candidates:
        if registry.spec_for(layer) is None or any(_matches(layer, s) for s in exclude):
            continue
        if chosen:
            if any(_matches(layer, s) for s in chosen):
                selected.append(layer)
        elif id(layer) not in protected:
            selected.append(layer)
    return selected


def _without_pinned(graph, selected, chosen):
    """Filter pruning cannot touch a layer whose every channel is pinned (it writes a model
    output, or feeds a barrier): drop it, or fail if the user named it."""
    kept = []
    for layer in selected:
        calls = [c for c in graph.calls() if c.layer is layer]
        roots = [graph.root(c.outputs[0], i) for c in calls for i in range(c.outputs[0].shape[-1])]
        if roots and all(graph.is_pinned(r) for r in roots):
            if any(isinstance(s, str) and s == layer.name for s in chosen):
                raise ValueError(
                    f"layers: the filters of '{layer.name}' cannot be pruned: {graph.pinned[roots[0]]}. "
                    "Leave it out, or use granularity='unstructured'."
                )
            continue
        kept.append(layer)
    return kept


def _followers(graph, selected):
    """Layers with maskable per-channel weights (BN) fed by a selected layer's filters."""
    selected_ids = {id(layer) for layer in selected}
    roots = set()
    for call in graph.calls():
        if id(call.layer) in selected_ids:
            out = call.outputs[0]
            roots.update(graph.root(out, c) for c in range(out.shape[-1]))
    followers = set()
    for call in graph.calls():
        rule = call.rule
        if isinstance(rule, registry.ChannelRule) and rule.masked:
            tensor = call.inputs[0]
            if any(graph.root(tensor, c) in roots for c in range(tensor.shape[-1])):
                followers.add(id(call.layer))
    return followers


def _check_round_to(round_to, selected):
    """A function layer name -> the multiple its filter count keeps."""
    if not isinstance(round_to, dict):
        return lambda name: round_to
    names = {layer.name for layer in selected}
    unknown = sorted(set(round_to) - names - {"*"})
    if unknown:
        raise ValueError(f"round_to names {unknown}, which are not pruned layers; pruned: {sorted(names)}.")
    return lambda name: round_to.get(name, round_to.get("*", 1))


def _check_rates(rates, selected, ranking_mode, target) -> dict:
    if rates is None:
        return {}
    if not isinstance(rates, dict):
        raise TypeError(f"rates must be a dict of layer name -> sparsity, got {type(rates).__name__}.")
    if ranking_mode != "local" or target != "sparsity":
        raise ValueError("rates are per-layer sparsities: use ranking='local' and target='sparsity'.")
    names = {layer.name for layer in selected}
    for name, rate in rates.items():
        if name not in names:
            raise ValueError(f"rates: '{name}' is not a layer being pruned; pruned layers: {sorted(names)}.")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"rates['{name}'] must be in [0, 1), got {rate!r}.")
    return dict(rates)


def _check_criterion(criterion, granularity, ranking_mode, target, model, selected):
    allowed = getattr(criterion, "granularities", None)
    if allowed is not None and str(granularity) not in allowed:
        raise ValueError(
            f"criterion {criterion!r} scores {' or '.join(allowed)} units and cannot rank '{granularity}'; "
            "use granularity='filter' or another criterion."
        )
    if getattr(criterion, "sequential", False) and (ranking_mode != "local" or target != "sparsity"):
        raise ValueError(f"criterion {criterion!r} prunes layer by layer: use ranking='local' and target='sparsity'.")
    if hasattr(criterion, "check"):
        criterion.check(model, selected)


def _check_policy(granularity, ranking_mode, target, min_filters, round_to, schedule, group_reduction):
    if group_reduction not in ("sum", "mean", "max", "first"):
        raise ValueError(f"group_reduction must be 'sum', 'mean', 'max' or 'first', got {group_reduction!r}.")
    if ranking_mode not in ("local", "global"):
        raise ValueError(f"ranking must be 'local' or 'global', got {ranking_mode!r}.")
    if target not in ("sparsity", "flops"):
        raise ValueError(f"target must be 'sparsity' or 'flops', got {target!r}.")
    values = [("min_filters", min_filters)]
    values += [(f"round_to[{k!r}]", v) for k, v in round_to.items()] if isinstance(round_to, dict) else [("round_to", round_to)]
    for name, value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if isinstance(granularity, granularities.NM):
        if ranking_mode == "global" or target == "flops":
            raise ValueError(
                f"granularity '{granularity}' fixes the sparsity of every group; use ranking='local' and target='sparsity'."
            )
        expected = 1 - granularity.n / granularity.m
        if abs(schedule.final_target - expected) > 1e-6:
            raise ValueError(
                f"granularity '{granularity}' ends at sparsity {expected:g}, but the schedule ends at "
                f"{schedule.final_target:g}. Use a schedule whose final target is {expected:g}."
            )


def prune(
    model,
    granularity="filter",
    criterion="l1",
    schedule=None,
    *,
    ranking="local",
    target="sparsity",
    layers=None,
    exclude=None,
    protect="auto",
    min_filters=1,
    round_to=1,
    group_reduction="sum",
    rates=None,
):
    """Return a copy of `model` whose prunable layers carry masks, ready for `fit`.

    The user's model and its weights are left untouched. Train the result with
    `tfprune.PruningCallback()`; everything the callback needs is stored in the wrappers
    (and so in `.keras` files).

    Args:
        model: a built Keras 3 functional or Sequential model (nested models allowed).
        granularity: `"filter"` (whole output channels, the default), `"unstructured"`,
            `"n:m"` or `"N:M"` like `"2:4"`, `"block"` or `"block:RxC"` like `"block:1x16"`,
            or a `tfprune.Granularity`.
        criterion: `"l1"`, `"l2"`, `"magnitude"` or a callable `(weight, layer) -> scores`
            (see `tfprune.criteria`).
        schedule: a `tfprune` schedule (`PolynomialDecay`, `ConstantSparsity`, `Iterative`,
            `OneShot`), or a number meaning `ConstantSparsity(number)`. Default 0.5.
        ranking: `"local"`: every layer pruned to the target; `"global"`: units ranked across
            layers by score normalised by each layer's mean.
        target: what the schedule's numbers mean: `"sparsity"` (fraction of the prunable
            weights) or `"flops"` (fraction of the whole model's FLOPs to remove).
        layers: prune only these layers: names, layer classes, or predicates
            `layer -> bool`. Default: every registered layer that is not protected.
        exclude: never prune these (same forms as `layers`).
        protect: `"auto"` protects the first convolution and the classifier head(s); or a
            list in the forms above; or `None`. Layers named in `layers=` override it.
        min_filters: the fewest filters a filter mask keeps (at least 1).
        round_to: filter masks keep a multiple of this many filters (e.g. 8 for SIMD); or
            `{layer name: multiple}` per layer, with `"*"` for the others (default 1), e.g.
            coarse multiples where the kernels want them and a fine one where a FLOPs target
            needs the last few percent.
        group_reduction: filter pruning ranks channel groups (filters that write the same
            channel, e.g. the convolutions meeting at a residual Add); their scores combine
            by `"sum"`, `"mean"`, `"max"` or `"first"`.
        rates: `{layer name: final sparsity}` per layer, e.g. `tfprune.layerwise_rates(...).rates`;
            each layer reaches its rate as the schedule reaches its final target (local
            ranking, sparsity target). Layers not listed follow the schedule.

    Filter pruning also wraps each BatchNormalization fed by a pruned layer, so that a
    pruned channel's gamma and beta are zeroed with its filter and `shrink` can remove it.

    Returns:
        A new Keras model with `PruneWrapper` layers.

    Raises:
        TypeError: for a tf_keras or subclassed model, or arguments of the wrong type.
        ValueError: for an unbuilt or already pruned model, unknown or unprunable layer names,
            nothing to prune, a granularity a layer cannot take, or a target the safeguards
            make impossible.

    Example:

    >>> pruned = tfprune.prune(model, granularity="filter", criterion="l1",
    ...     schedule=tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300, frequency=25))
    >>> pruned.compile("adam", "sparse_categorical_crossentropy")
    >>> pruned.fit(x, y, epochs=3, callbacks=[tfprune.PruningCallback()])
    """
    checks.check_model(model, "prune")
    if wrappers_of(model):
        raise ValueError("prune: this model is already pruned (it has PruneWrapper layers). Call tfprune.strip first.")
    granularity = granularities.get(granularity)
    criterion = criteria.get(criterion)
    schedule = schedules.get(0.5 if schedule is None else schedule)
    _check_policy(granularity, ranking, target, min_filters, round_to, schedule, group_reduction)
    selected = _select(model, layers, exclude, protect)
    graph = ChannelGraph(model) if granularity.structured else None
    if graph is not None:
        selected = _without_pinned(graph, selected, _as_list(layers))
    if not selected:
        raise ValueError(
            "prune: no layer to prune. The model's prunable layers are all excluded or protected; "
            "pass layers=[...] or protect=None."
        )
    for layer in selected:
        spec = registry.spec_for(layer)
        granularity.check(layer.name, tuple(registry.variable(layer, spec.weight).shape), spec)
    _check_criterion(criterion, granularity, ranking, target, model, selected)
    selected_ids = {id(layer) for layer in selected}
    policy = dict(
        granularity=granularity,
        criterion=criterion,
        schedule=schedule,
        ranking=ranking,
        target=target,
        min_filters=min_filters,
        round_to=round_to,
        group_reduction=group_reduction,
    )
    followers = _followers(graph, selected) if graph is not None else set()

    rates = _check_rates(rates, selected, ranking, target)

    round_to_of = _check_round_to(round_to, selected)

    def clone(layer):
        fresh = modelwalk.clone_layer(layer)
        if id(layer) in selected_ids:
            return PruneWrapper(fresh, rate=rates.get(layer.name), **{**policy, "round_to": round_to_of(layer.name)})
        return ChannelMaskWrapper(fresh) if id(layer) in followers else fresh

    pruned = keras.models.clone_model(model, clone_function=clone, recursive=True)
    modelwalk.copy_weights(model, pruned)
    reachable = PruningPlan(pruned).max_removable()
    if not rates and schedule.final_target > reachable + 1e-9:
        raise ValueError(
            f"prune: the schedule's final {target} target {schedule.final_target:g} is impossible: with "
            f"min_filters={min_filters}, round_to={round_to} and the protected layers, at most "
            f"{reachable:.3f} can be removed. Lower the target, or prune more layers (protect=None)."
        )
    return pruned
