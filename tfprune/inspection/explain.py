"""`tfprune.explain`: which filters of each layer the channel graph lets `shrink` remove,
and why not."""

from __future__ import annotations

from tfprune.core import checks
from tfprune.core.modelwalk import opaque_layers, weights_owner
from tfprune.graph import flops, tracing
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.layers import registry

#: What `explain` says of a layer whose units prune but whose attention heads only prune
#: once `tfprune.unfold` has written it out (KerasHub's transformer blocks).
UNFOLD_HINT = (
    "its attention heads stay inside it (only its feed-forward units are counted here): "
    "tfprune.unfold(model) writes it out as Keras layers whose heads prune too"
)


def opaque_reason(layer, inside) -> str:
    """Why the prunable layers inside a custom layer stay as they are, in words.

    Args:
        layer: a custom layer holding prunable layers (see `modelwalk.opaque_layers`).
        inside: the type names of those layers.

    Returns:
        The reason.

    Example:

    >>> opaque_reason(keras.layers.Layer(name="block"), ["Dense"])
    'a custom Layer holding Dense layers, which tfprune cannot prune inside it'
    """
    return (
        f"a custom {type(layer).__name__} holding {', '.join(inside)} layers, which tfprune "
        "cannot prune inside it"
    )


def _untraced(reason) -> str | None:
    return None if reason is None else f"it cannot be traced: {reason}"


def explain(model, trace=True) -> list[dict]:
    """Which filters of each convolution or dense layer the graph could remove, and why not.

    Args:
        model: a built Keras 3 functional or Sequential model.
        trace: explain the model as `tfprune.prune` sees it, with custom layers written out
            (their rows named after their block); a custom layer that cannot be traced gets
            a row saying why. Defaults to `True`.

    Returns:
        One dict per layer with a prunable weight: `layer`, `filters`, `removable` (filters
        in groups that are free to go, if they are zero) and `reasons` (why the others are
        pinned: a barrier layer's name, a model output...). A custom layer that holds
        prunable layers inside it gets a row too, with `filters` 0 and the reason, and so
        does one whose FLOPs cannot be counted. For an
        attention layer, `filters` are its heads; for a KerasHub transformer block, its
        feed-forward units, and `reasons` says that `tfprune.unfold` makes its heads prune.

    Raises:
        TypeError, ValueError: as `tfprune.prune` for models it cannot read.

    Example:

    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    >>> x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    >>> for row in tfprune.explain(model):
    ...     print(row["layer"], row["removable"], "/", row["filters"], row["reasons"])
    conv1 8 / 8 []
    conv2 16 / 16 []
    head 0 / 3 ["a model output (its width is the model's interface)"]
    """
    checks.check_model(model, "explain")
    refused = {}
    if trace:
        model, tracer = tracing.written_out(model, unfoldings=True)
        refused = tracer.refused
    graph = ChannelGraph(model)
    rows, seen = [], set()
    for call, _ in graph.producers():
        layer = weights_owner(call.layer)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out = call.outputs[0]
        roots = [graph.root(out, c) for c in range(graph.width(out))]
        reasons = graph.pin_reasons(out)
        rows.append(
            {
                "layer": layer.name,
                "filters": len(roots),
                "removable": int(sum(not graph.is_pinned(r) for r in roots)),
                "reasons": reasons,
            }
        )
    for call in graph.calls():
        layer = weights_owner(call.layer)
        units = registry.unit_count(layer) if id(layer) not in seen else 0
        if units:
            seen.add(id(layer))
            # Units inside the layer (heads) are groups of their own: nothing outside pins them.
            reasons = [UNFOLD_HINT] if registry.unfolds(layer) else []
            rows.append(
                {"layer": layer.name, "filters": units, "removable": units, "reasons": reasons}
            )
    listed = {row["layer"] for row in rows}
    for layer, inside in opaque_layers(model, registry.is_prunable):
        listed.add(layer.name)
        rows.append(
            {
                "layer": layer.name,
                "filters": 0,
                "removable": 0,
                "reasons": [
                    _untraced(refused.get(layer.name))
                    or registry.refusal_reason(layer)
                    or opaque_reason(layer, inside)
                ],
            }
        )
    for name, (_, why) in flops.uncounted_layers(model).items():
        if name not in listed:
            reason = f"its FLOPs are not counted (FLOPs targets leave them out): {why}"
            rows.append({"layer": name, "filters": 0, "removable": 0, "reasons": [reason]})
    return rows
