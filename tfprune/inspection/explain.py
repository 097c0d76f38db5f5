"""`tfprune.explain`: which filters of each layer the channel graph lets `shrink` remove,
and why not."""

from __future__ import annotations

from tfprune.core import checks
from tfprune.core.modelwalk import weights_owner
from tfprune.graph.channel_graph import ChannelGraph, width


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
    graph = ChannelGraph(model)
    rows, seen = [], set()
    for call, _ in graph.producers():
        layer = weights_owner(call.layer)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        out = call.outputs[0]
        roots = [graph.root(out, c) for c in range(width(out))]
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
