"""`tfprune.prune`: a copy of the user's model with its prunable layers wrapped."""

from __future__ import annotations

import keras

from tfprune.core import checks, keras_internals, modelwalk
from tfprune.graph import tracing
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.latency import covered
from tfprune.layers import registry
from tfprune.layers.mask_layout import pruned_shape
from tfprune.masking.policies import Policy, check_layer_settings, layer_policies
from tfprune.masking.ranking import pruning_plans
from tfprune.masking.selection import (
    as_list,
    first_convolution,
    followers,
    select_layers,
    without_pinned,
    without_units,
)
from tfprune.masking.wrappers import ChannelMaskWrapper, PruneWrapper, wrappers_of


def _check_round_to(round_to, selected):
    """A function layer name -> its `round_to` (a multiple, or `"auto"`, which the ranking
    resolves per family: `tfprune.masking.families.family_multiple`)."""
    if not isinstance(round_to, dict):
        return lambda name: round_to
    names = {layer.name for layer in selected}
    unknown = sorted(set(round_to) - names - {"*"})
    if unknown:
        raise ValueError(
            f"round_to names {unknown}, which are not pruned layers; pruned: {sorted(names)}."
        )
    return lambda name: round_to.get(name, round_to.get("*", 1))


def _check_rates(rates, selected, ranking_mode, target) -> dict:
    if rates is None:
        return {}
    if not isinstance(rates, dict):
        raise TypeError(
            f"rates must be a dict of layer name -> sparsity, got {type(rates).__name__}."
        )
    if ranking_mode != "local" or target != "sparsity":
        raise ValueError(
            "rates are per-layer sparsities: use ranking='local' and target='sparsity'."
        )
    names = {layer.name for layer in selected}
    for name, rate in rates.items():
        if name not in names:
            raise ValueError(
                f"rates: '{name}' is not a layer being pruned; pruned layers: {sorted(names)}."
            )
        checks.check_fraction(f"rates['{name}']", rate)
    return dict(rates)


def _check_criterion(criterion, granularity, ranking_mode, target, model, selected):
    allowed = getattr(criterion, "granularities", None)
    if allowed is not None and str(granularity) not in allowed:
        raise ValueError(
            f"criterion {criterion!r} scores {' or '.join(allowed)} units and cannot rank "
            f"'{granularity}'; use granularity='filter' or another criterion."
        )
    if getattr(criterion, "sequential", False) and (
        ranking_mode != "local" or target != "sparsity"
    ):
        raise ValueError(
            f"criterion {criterion!r} prunes layer by layer: use ranking='local' and "
            "target='sparsity'."
        )
    if hasattr(criterion, "check"):
        criterion.check(model, selected)


def _nothing_to_prune(model, graph, candidates, refused) -> str:
    """Why `prune` found no layer to wrap, in words: what hides the prunable layers (and why
    tracing could not write them out), what pins their filters, or what the user excluded."""
    hidden = modelwalk.opaque_layers(model, registry.is_prunable)
    if hidden:
        names = "; ".join(
            f"'{layer.name}' ({refused.get(layer.name, type(layer).__name__)})"
            for layer, _ in hidden
        )
        if all(registry.unfolds(layer) for layer, _ in hidden):
            remedy = "tfprune.unfold(model) writes them out as their inner layers, which prune"
        else:
            remedy = (
                "Make its call traceable (keras.ops on its inputs, no branching on tensor "
                "values), teach tfprune the custom layer's type with tfprune.register_layer "
                "(or tfprune.layers.register_unfolding), or build the model from its inner layers"
            )
        return (
            f"prune: no layer to prune. The prunable layers are inside custom layers that "
            f"tfprune cannot prune into: {names}. {remedy}."
        )
    why = {}
    if graph is not None:
        for call in graph.calls():
            if any(call.layer is layer for layer in candidates):
                why.setdefault(call.layer.name, set()).update(graph.pin_reasons(call.outputs[0]))
    chosen = {id(layer) for layer in candidates}

    def state(layer):
        if id(layer) not in chosen:
            return "excluded or protected"
        return ", ".join(sorted(why.get(layer.name, ()))) or "pinned"

    described = [
        f"'{layer.name}' ({state(layer)})"
        for layer in modelwalk.all_layers(model)
        if registry.is_prunable(layer)
    ]
    return (
        f"prune: no layer to prune. Prunable layers: {'; '.join(described) or 'none'}. Pass "
        "layers=[...] or protect=None for protected layers; for pinned filters use "
        "granularity='unstructured' (or 'n:m', 'block'); tfprune.explain(model) shows every "
        "layer."
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
    round_to="auto",
    group_reduction="sum",
    rates=None,
    policies=None,
    latency_table=None,
    trace=True,
):
    """Return a copy of `model` whose prunable layers carry masks, ready for `fit`.

    The user's model and its weights are left untouched. Train the result with
    `tfprune.PruningCallback()`; everything the callback needs is stored in the wrappers
    (and so in `.keras` files).

    Custom layers that hold prunable layers (a KerasHub decoder block, a keras.io transformer
    block) are written out first, as `tfprune.unfold` writes them: by their registered
    unfolding (KerasHub's transformer encoders and decoders, ViT's encoder, EfficientNetV2's
    blocks), else as the sublayers and ops their `call` runs (`tfprune.graph.tracing`).
    Their units, filters and heads then prune like any others, and the pruned model names
    them after their block (`"transformer_layer_0_attention"`). A custom layer whose trace
    does not compute what it computes stays whole; `explain` says why.

    Args:
        model: a built Keras 3 functional or Sequential model (nested models allowed).
        granularity: `"filter"` (whole output channels), `"unstructured"`, `"n:m"` or
            `"N:M"` like `"2:4"`, `"block"` or `"block:RxC"` like `"block:1x16"`, or a
            `tfprune.masking.Granularity`. Defaults to `"filter"`.
        criterion: a name (`"l1"`, `"l2"`, `"magnitude"`, `"lap"`, `"fpgm"`...; see
            `tfprune.criteria`) or a callable `(weight, layer) -> scores`. Defaults to `"l1"`.
        schedule: a `tfprune` schedule (`PolynomialDecay`, `ConstantSparsity`, `Iterative`,
            `OneShot`), or a number meaning `ConstantSparsity(number)`. Defaults to `None`,
            which means 0.5.
        ranking: `"local"`: every layer pruned to the target; `"global"`: units ranked across
            layers by score normalised by each layer's mean. Defaults to `"local"`.
        target: what the schedule's numbers mean: `"sparsity"` (fraction of the prunable
            weights), `"flops"` (fraction of the whole model's FLOPs to remove) or
            `"latency"` (fraction of its LiteRT latency to remove, as `latency_table`
            predicts it; filter granularity). Defaults to `"sparsity"`.
        layers: prune only these layers: names, layer classes, or predicates
            `layer -> bool`. Defaults to `None`: every registered layer that is not protected.
        exclude: never prune these (same forms as `layers`). Defaults to `None`.
        protect: `"auto"` protects the classifier head(s) and guards the first convolution:
            filter pruning keeps at least half its filters (as the same net built at half
            width would), other granularities leave it whole. Or a list in the forms above
            (protected layers stay whole); or `None`. Layers named in `layers=` override it.
            Defaults to `"auto"`.
        min_filters: the fewest filters a filter mask keeps (at least 1). Defaults to 1.
        round_to: filter masks keep a multiple of this many filters (e.g. 8 for SIMD);
            `"auto"`: widths that are fast on the device. A layer keeps whole channel tiles
            of its kernels (`latency_table.tile` as measured, else 16, whole tiles for
            XNNPACK on ARM and x86), a narrow one multiples of the largest power of two
            that leave it 4 widths (`tfprune.graph.latency.auto_multiple`: 16 filters keep
            multiples of 4), and where a target would be missed by more than 2 % the
            narrowest layers go down to single filters, one at a time, until it is met. Or
            `{layer name: multiple or "auto"}` per layer, with `"*"` for the others (1 if
            absent). `round_to=1` prunes filter by filter. Defaults to `"auto"`.
        group_reduction: filter pruning ranks channel groups (filters that write the same
            channel, e.g. the convolutions meeting at a residual Add); their scores combine
            by `"sum"`, `"mean"`, `"max"` or `"first"`. Defaults to `"sum"`.
        rates: `{layer name: final sparsity}` per layer, e.g.
            `tfprune.methods.layerwise_rates(...).rates`; each layer reaches its rate as the
            schedule reaches its final target (local ranking, sparsity target). Layers not
            listed follow the schedule. Defaults to `None`.
        policies: several pruning policies in one model: `{selector: settings}`, a selector
            as in `layers=` (a name, a class, a predicate, or a tuple of them), settings a
            dict of some of `granularity`, `criterion`, `schedule`, `ranking`, `target`,
            `min_filters`, `round_to`, `group_reduction` and `latency_table` (the others as
            given to `prune`), or just a granularity. A layer follows the first selector that
            matches it, else `prune`'s own arguments; which layers are pruned at all is still
            up to `layers`, `exclude` and `protect`. Each policy ranks its own layers and runs
            its own schedule (`tfprune.pruning_plans`); a channel group written by layers of
            two policies is not removed. Defaults to `None`: one policy.
        latency_table: for `target="latency"`: a `tfprune.LatencyTable`, measured here by
            `tfprune.measure_latency_table(model)` or on the device and loaded with
            `tfprune.LatencyTable.load`. It is stored with the wrappers (and in `.keras`
            files). Defaults to `None`.
        trace: write custom layers holding prunable layers out first (see above); `False`
            prunes the model's layers as they are (a KerasHub transformer block then prunes
            its feed-forward units only, inside it). Defaults to `True`.

    Filter pruning also wraps each BatchNormalization fed by a pruned layer, so that a
    pruned channel's gamma and beta are zeroed with its filter and `shrink` can remove it.

    Returns:
        A new Keras model with `PruneWrapper` layers.

    Raises:
        TypeError: for a tf_keras model, a subclassed model without a graph of layers, or
            arguments of the wrong type.
        ValueError: for an unbuilt or already pruned model, unknown or unprunable layer names,
            nothing to prune, a granularity a layer cannot take, or a target the safeguards
            make impossible.

    Example:

    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    >>> x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    >>> schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300, frequency=25)
    >>> pruned = tfprune.prune(model, granularity="filter", criterion="l1", schedule=schedule)
    >>> [(w.layer.name, w.min_filters) for w in tfprune.wrappers_of(pruned)]  # head protected
    [('conv1', 4), ('conv2', 1)]
    """
    checks.check_model(model, "prune")
    if wrappers_of(model):
        raise ValueError(
            "prune: this model is already pruned (it has PruneWrapper layers). Call tfprune.strip "
            "first."
        )
    refused = {}
    if trace:
        model, tracer = tracing.written_out(model, unfoldings=True)
        refused = tracer.refused
    base = dict(
        granularity=granularity,
        criterion=criterion,
        schedule=schedule,
        ranking=ranking,
        target=target,
        min_filters=min_filters,
        round_to=round_to,
        group_reduction=group_reduction,
        latency_table=latency_table,
    )
    settings, policy_of = layer_policies(model, base, policies)
    for policy in settings:
        check_layer_settings(policy["min_filters"], policy["round_to"])
    # One value per policy, shared by its wrappers: equal policies are one plan. Building it
    # checks that its settings go together.
    policy_objects = [Policy.from_settings(policy) for policy in settings]
    candidates = select_layers(model, layers, exclude, protect)
    structured = any(p["granularity"].structured for p in settings)
    graph = ChannelGraph(model) if structured else None
    chosen = as_list(layers)
    # The model's own first convolution, also when the user excluded it (then nothing is).
    guarded = (
        first_convolution(modelwalk.all_layers(model)) if protect == "auto" and not chosen else None
    )
    selected, follower_ids, round_to_of, min_filters_of = [], set(), {}, {}
    for index, policy in enumerate(settings):
        members = [layer for layer in candidates if policy_of(layer) == index]
        g = policy["granularity"]
        members = (
            without_pinned(graph, members, chosen)
            if g.structured
            else without_units(members, chosen, g)
        )
        if guarded is not None and any(layer is guarded for layer in members):
            if g.structured:
                # Half its filters at most: the net built narrow from scratch halves it too,
                # and at full resolution its output is memory traffic that FLOPs do not show.
                spec = registry.spec_for(guarded)
                half = -(-spec.filter_count(pruned_shape(guarded, spec)) // 2)
                min_filters_of[id(guarded)] = max(policy["min_filters"], half)
            else:  # a few weights that every example's features start from
                members = [layer for layer in members if layer is not guarded]
        for layer in members:
            spec = registry.spec_for(layer)
            g.check(layer.name, pruned_shape(layer, spec), spec)
            if policy["target"] == "latency" and not covered(layer):
                raise ValueError(
                    f"target='latency': '{layer.name}' ({type(layer).__name__}) has no entry "
                    "kind in a latency table (it covers convolutions, dense and depthwise "
                    f"layers, channels last). Exclude it (exclude=['{layer.name}']) or use "
                    "target='flops'."
                )
        if members:
            _check_criterion(
                policy["criterion"], g, policy["ranking"], policy["target"], model, members
            )
        of_policy = _check_round_to(policy["round_to"], members)
        round_to_of.update({id(layer): of_policy(layer.name) for layer in members})
        if g.structured:
            follower_ids |= followers(graph, members)
        selected += members
    if not selected:
        raise ValueError(_nothing_to_prune(model, graph, candidates, refused))
    if latency_table is not None and all(p["target"] != "latency" for p in settings):
        raise ValueError(
            "prune: latency_table is given but no policy has target='latency'; pass "
            "target='latency' (or leave latency_table out)."
        )
    rates = _check_rates(rates, selected, ranking, target)
    index_by_layer = {id(layer): policy_of(layer) for layer in selected}

    def clone(layer):
        fresh = modelwalk.copy_layer(layer)
        if id(layer) in index_by_layer:
            keras_internals.build_like(fresh, layer)
            index = index_by_layer[id(layer)]
            return PruneWrapper(
                fresh,
                policy=policy_objects[index],
                round_to=round_to_of[id(layer)],
                min_filters=min_filters_of.get(id(layer), settings[index]["min_filters"]),
                rate=rates.get(layer.name),
            )
        return ChannelMaskWrapper(fresh) if id(layer) in follower_ids else fresh

    pruned = keras.models.clone_model(model, clone_function=clone, recursive=True)
    modelwalk.copy_weights(model, pruned)
    plans = pruning_plans(pruned)
    for plan in plans:
        reachable = plan.max_removable()
        if not rates and plan.schedule.final_target > reachable + 1e-9:
            names = ", ".join(f"'{w.layer.name}'" for w in plan.wrappers)
            shared = (
                " (a channel written by layers of two policies is never removed)"
                if len(plans) > 1
                else ""
            )
            raise ValueError(
                f"prune: the schedule's final {plan.target} target {plan.schedule.final_target:g} "
                f"of {names} is impossible: with their min_filters, round_to and the protected "
                f"layers{shared}, at most {reachable:.3f} can be removed. Lower the target, or "
                "prune more layers (protect=None)."
            )
    return pruned
