"""`tfprune.summary`: per-layer params, sparsity, filters and FLOPs, as a table or a dict."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.core import checks
from tfprune.graph import flops
from tfprune.layers import registry
from tfprune.layers.mask_layout import pruned_array


@dataclasses.dataclass
class LayerRow:
    """One layer's line in a `Summary`.

    Attributes:
        name: the layer's name.
        type: its class name.
        params: its weights' element count.
        nonzero_params: how many of them are nonzero.
        sparsity: of the prunable weight; `None` for layers tfprune cannot prune.
        filters_kept: filters with a nonzero weight, or `None`.
        filters_total: filters, or `None`.
        flops: FLOPs per example, or `None`.
        effective_flops: FLOPs of the nonzero weights, or `None`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    >>> row = tfprune.summary(model).rows[0]
    >>> row.name, row.params, row.filters_total, row.flops
    ('fc', 10, 2, 16)
    """

    name: str
    type: str
    params: int
    nonzero_params: int
    sparsity: float | None  # of the prunable weight; None for layers tfprune cannot prune
    filters_kept: int | None
    filters_total: int | None
    flops: int | None
    effective_flops: int | None


@dataclasses.dataclass
class Summary:
    """Per-layer pruning statistics of a model; `str()` gives a table, `to_dict()` data.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")], name="tiny")
    >>> print(tfprune.summary(model))  # the bias starts at zero
    Model: tiny
    layer  type   params  nonzero  sparsity  filters  MFLOPs  eff. MFLOPs
    ---------------------------------------------------------------------
    fc     Dense      10        8      0.0%      2/2   0.000        0.000
    ---------------------------------------------------------------------
    total             10        8     20.0%            0.000        0.000
    >>> tfprune.summary(model).to_dict()["total"]["flops"]
    16
    """

    model_name: str
    rows: list
    events: list = dataclasses.field(default_factory=list)
    uncounted: dict = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> dict:
        """Model totals: params, nonzero params, sparsity over all params, FLOPs."""
        params = sum(r.params for r in self.rows)
        nonzero = sum(r.nonzero_params for r in self.rows)
        dense = sum(r.flops or 0 for r in self.rows)
        effective = sum(r.effective_flops or 0 for r in self.rows)
        return {
            "params": params,
            "nonzero_params": nonzero,
            "sparsity": 1.0 - nonzero / params if params else 0.0,
            "flops": dense,
            "effective_flops": effective,
        }

    def to_dict(self) -> dict:
        """`{"model": name, "layers": [row dicts], "total": totals}`, JSON-ready."""
        return {
            "model": self.model_name,
            "layers": [dataclasses.asdict(r) for r in self.rows],
            "total": self.total,
            "events": list(self.events),
            "uncounted": dict(self.uncounted),
        }

    def __str__(self):
        header = (
            "layer",
            "type",
            "params",
            "nonzero",
            "sparsity",
            "filters",
            "MFLOPs",
            "eff. MFLOPs",
        )
        lines = []
        for r in self.rows:
            filters = f"{r.filters_kept}/{r.filters_total}" if r.filters_total else "-"
            lines.append(
                (
                    r.name,
                    r.type,
                    f"{r.params:,}",
                    f"{r.nonzero_params:,}",
                    "-" if r.sparsity is None else f"{r.sparsity:.1%}",
                    filters,
                    "-" if r.flops is None else f"{r.flops / 1e6:.3f}",
                    "-" if r.effective_flops is None else f"{r.effective_flops / 1e6:.3f}",
                )
            )
        t = self.total
        lines.append(
            (
                "total",
                "",
                f"{t['params']:,}",
                f"{t['nonzero_params']:,}",
                f"{t['sparsity']:.1%}",
                "",
                f"{t['flops'] / 1e6:.3f}",
                f"{t['effective_flops'] / 1e6:.3f}",
            )
        )
        widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]

        def fmt(row):
            return "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            )

        rule = "-" * len(fmt(header))
        table = [
            f"Model: {self.model_name}",
            fmt(header),
            rule,
            *map(fmt, lines[:-1]),
            rule,
            fmt(lines[-1]),
        ]
        return "\n".join(table + self._uncounted_lines() + self._event_lines())

    def _uncounted_lines(self) -> list:
        if not self.uncounted:
            return []
        return ["", "FLOPs not counted (counted as 0):"] + [
            f"  {reason}" for reason in self.uncounted.values()
        ]

    def _event_lines(self) -> list:
        measured = [e for e in self.events if "instability" in e]
        if not measured:
            return []
        lines = [
            "",
            "Pruning events (instability = (acc before - acc after) / acc before; stability = 100 "
            "(1 - instability)):",
        ]
        recalibrated = any("instability_recalibrated" in e for e in measured)
        lines.append(
            f"{'step':>7} {'epoch':>5} {'target':>7} {'applied':>7} {'acc before':>10} "
            f"{'acc after':>9} {'instability':>11} {'stability':>9}"
            + (f" {'recalibrated':>12} {'instability':>11}" if recalibrated else "")
        )
        for e in measured:
            line = (
                f"{e['step']:>7} {e['epoch']:>5} {e['target']:>7.3f} "
                f"{e.get('applied_target', e['target']):>7.3f} {e['accuracy_before']:>10.3f} "
                f"{e['accuracy_after']:>9.3f} {e['instability']:>11.4f} "
                f"{100 * (1 - e['instability']):>9.1f}"
            )
            if recalibrated:  # the accuracy once BatchNormalization was recalibrated
                line += (
                    f" {e.get('accuracy_recalibrated', float('nan')):>12.3f} "
                    f"{e.get('instability_recalibrated', float('nan')):>11.4f}"
                )
            lines.append(line)
        return lines


def _row(layer, node_layer, calls) -> LayerRow:
    weights = [keras.ops.convert_to_numpy(v) for v in layer.weights]
    spec = registry.spec_for(layer)
    row = LayerRow(
        name=layer.name,
        type=type(layer).__name__,
        params=int(sum(w.size for w in weights)),
        nonzero_params=int(sum(np.count_nonzero(w) for w in weights)),
        sparsity=None,
        filters_kept=None,
        filters_total=None,
        flops=None,
        effective_flops=None,
    )
    if spec is not None:
        kernel = pruned_array(layer, spec)
        per_filter = spec.to_canonical(kernel).reshape(spec.filter_count(kernel.shape), -1)
        row.sparsity = float(1.0 - np.count_nonzero(kernel) / kernel.size)
        row.filters_total = per_filter.shape[0]
        row.filters_kept = int(np.count_nonzero(np.abs(per_filter).max(axis=1)))
        dense, effective = (
            flops.layer_flops(layer, node_layer),
            flops.layer_flops(layer, node_layer, effective=True),
        )
        row.flops = None if dense is None else dense * calls
        row.effective_flops = None if effective is None else effective * calls
    return row


def summary(model, events=None) -> Summary:
    """Per-layer table of params, nonzero params, sparsity, filters kept and FLOPs.

    Works on plain, pruned (wrapped) and stripped models. Layers without weights are left
    out; layers tfprune cannot prune (BatchNormalization...) show params only. FLOPs are per
    example (see `tfprune.flops`); effective FLOPs count nonzero weights only.

    Args:
        model: a built Keras 3 functional or Sequential model.
        events: optionally a `PruningCallback`'s `events`; those measured with
            `validation_data` are listed with their instability after the table. Defaults to `None`.

    Returns:
        A `Summary`: `print()` it for a table, `.to_dict()` for data.

    Raises:
        TypeError: for tf_keras models and subclassed models without a graph of layers.
        ValueError: for an unbuilt model.

    Example:

    >>> inputs = keras.Input((8, 8, 1))
    >>> x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    >>> x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    >>> pruned = tfprune.prune(model, schedule=0.5)
    >>> plan = tfprune.apply_target(pruned, 0.5)
    >>> total = tfprune.summary(pruned).to_dict()["total"]
    >>> round(total["effective_flops"] / total["flops"], 3)  # conv1 and conv2 at half
    0.501
    """
    checks.check_model(model, "summary")
    compute = {
        id(node_layer): (layer, node_layer, calls)
        for layer, node_layer, calls in flops.compute_layers(model)
    }
    rows, uncounted, products = [], {}, [0, 0]
    traced = {}  # id(custom layer) -> its calls, counted on their traces
    for call, calls in flops.graph_calls(model):
        if flops.counted_on_trace(call):
            traced.setdefault(id(call.operation), []).append((call, calls))
        elif isinstance(call.operation, keras.layers.Layer) and not call.operation.weights:
            continue
        else:  # a product of tensors at the top of the graph (einsum, matmul)
            products[0] += flops.op_flops(call) * calls
            products[1] += flops.op_flops(call) * calls

    def visit(m):
        for item in m.layers:
            if isinstance(item, keras.Model):
                visit(item)
            elif id(item) in compute:
                rows.append(_row(*compute[id(item)]))
            elif item.weights or id(item) in traced:
                row = _row(item, item, 1)
                _count_on_traces(row, traced.get(id(item), []), uncounted)
                rows.append(row)

    visit(model)
    if products[0]:
        rows.append(LayerRow("(products of tensors)", "ops", 0, 0, None, None, None, *products))
    return Summary(model.name, rows, list(events or []), uncounted)


def _count_on_traces(row, calls, uncounted) -> None:
    """A custom layer's FLOPs, counted on the traces of its calls; where a call cannot be
    traced, its FLOPs are left out and `uncounted` says why."""
    if not calls:
        return
    row.flops = row.effective_flops = 0
    for call, times in calls:
        try:
            dense, missed = flops.custom_layer_flops(call)
            effective, _ = flops.custom_layer_flops(call, effective=True)
        except ValueError as error:
            uncounted[row.name] = str(error)
            row.flops = row.effective_flops = None
            return
        uncounted.update(missed)
        row.flops += dense * times
        row.effective_flops += effective * times
