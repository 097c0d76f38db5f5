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

from tfprune.core import keras_internals
from tfprune.core.modelwalk import functional_of, weights_owner
from tfprune.core.unionfind import UnionFind
from tfprune.graph import tracing
from tfprune.layers import registry
from tfprune.layers.moves import Move, OpView
from tfprune.layers.spec import ChannelRule, LayerSpec
from tfprune.layers.traced import ShapedCall, template_tensors


@dataclasses.dataclass
class Call:
    """One call of a layer (or a Keras op such as `x + y`) in the (flattened) graph.

    Attributes:
        layer: the layer, wrapper or op called.
        inputs: its symbolic input tensors.
        outputs: its symbolic output tensors.
        rule: its `LayerSpec` or `ChannelRule`, or `None` for a barrier.
        arguments: the call's symbolic arguments, tensors and constants alike.
        moves: for an op whose rule computes where channels go: `(input tensor, output
            tensor, pairs)` per tie, `pairs` the `(input channel, output channel)` pairs.

    Example:

    >>> inputs = keras.Input((4, 4, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv")(inputs))
    >>> (call,) = ChannelGraph(model).calls()
    >>> call.layer.name, call.rule.weight
    ('conv', 'kernel')
    """

    layer: object
    inputs: list
    outputs: list
    rule: object
    arguments: object = None
    moves: list = dataclasses.field(default_factory=list)

    @property
    def operation(self):
        """The layer or op called (as `keras_internals.NodeCall` names it)."""
        return self.layer


@dataclasses.dataclass
class Link:
    """Identity between two tensors: the inside and outside of a nested model's call.

    Attributes:
        source: the tensor whose values flow.
        target: the tensor that carries the same values.

    Example:

    >>> inner_in = keras.Input((3,))
    >>> inner = keras.Model(inner_in, keras.layers.Dense(2)(inner_in))
    >>> inputs = keras.Input((3,))
    >>> graph = ChannelGraph(keras.Model(inputs, inner(inputs)))
    >>> sum(isinstance(step, Link) for step in graph.steps)  # into and out of `inner`
    2
    """

    source: object
    target: object


def width(tensor) -> int:
    """The channel count (last axis) of a symbolic tensor.

    A tensor whose last axis is unknown (token ids of shape `(batch, length)`) or that has no
    axes carries no channels the graph could tie, so its width is 0.

    Args:
        tensor: a `keras.KerasTensor`.

    Returns:
        The channel count, or 0.

    Example:

    >>> width(keras.Input((8, 8, 3))), width(keras.Input((None,), dtype="int32"))
    (3, 0)
    """
    if not tensor.shape or tensor.shape[-1] is None:
        return 0
    return int(tensor.shape[-1])


def _carries_channels(tensor) -> bool:
    return not any(kind in str(tensor.dtype) for kind in ("int", "bool"))


def _array_constants(call) -> list:
    """Arrays a Keras op was called with besides its tensors (`x + np.ones(8)`): they have
    the old channel count baked in, so only width-1 (broadcast) ones are harmless."""
    if call.arguments is None or isinstance(call.layer, keras.layers.Layer):
        return []
    return [np.asarray(a) for a in keras_internals.array_arguments(call.arguments)]


def _baked_constant(call, axis, name) -> str | None:
    """Why an array constant of the call (`x + np.ones(8)`) breaks removal along `axis`:
    it has the old channel count baked in; or `None`."""
    if axis is None:
        return None
    for constant in _array_constants(call):
        if constant.ndim >= -axis and constant.shape[axis] != 1:
            return f"{name} combines its input with a constant of {constant.shape[axis]} channels"
    return None


def state_channels(call, spec, layer) -> list:
    """The state tensors of a recurrent layer's call, each with the output channels its
    channels are: final states (outputs after the first) and initial states (inputs after
    the first) carry the layer's units; a Bidirectional layer's come per direction, in order.

    Args:
        call: the layer's `Call`.
        spec: its `LayerSpec` (with `states`).
        layer: the layer owning the weights.

    Returns:
        `[(tensor, output channel of each of its channels)]`.

    Example:

    >>> inputs = keras.Input((5, 3))
    >>> _, state = keras.layers.GRU(2, return_state=True, name="gru")(inputs)
    >>> (call,) = ChannelGraph(keras.Model(inputs, state)).calls()
    >>> [(t is state, c.tolist()) for t, c in state_channels(call, call.rule, call.layer)]
    [(True, [0, 1])]
    """
    whole = [(layer, np.arange(width(call.outputs[0])))]
    members = spec.members.of(layer) if spec.members else whole
    pairs = []
    for tensors in (call.outputs[1:], call.inputs[1:]):
        tensors = [t for t in tensors if _carries_channels(t)]
        per_member = len(tensors) // len(members)
        for d, (_, filters) in enumerate(members):
            pairs.extend((t, filters) for t in tensors[d * per_member : (d + 1) * per_member])
    return pairs


# A custom layer that returns its input in inference (stochastic depth): a pass-through.
_IN_INFERENCE_IDENTITY = ChannelRule("passthrough", any_axis=True)


def _data_format_ok(layer) -> bool:
    return getattr(weights_owner(layer), "data_format", "channels_last") in (None, "channels_last")


class ChannelGraph:
    """The channel groups of a model.

    Each tensor's channels lie along one axis (`axis`): the last one, unless a layer or op
    put them elsewhere (heads of a traced attention, `tfprune.layers.moves`).

    Args:
        model: a built Keras 3 functional or Sequential model (nested models allowed;
            tfprune wrappers are seen through).

    Example:

    >>> inputs = keras.Input((6, 6, 3))
    >>> a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    >>> b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Add()([a, b]))
    >>> graph = ChannelGraph(model)
    >>> graph.root(a, 2) == graph.root(b, 2)  # an Add ties the same channel of its inputs
    True
    >>> graph.is_pinned(graph.root(a, 2))  # ... and it is the model's output
    True
    """

    def __init__(self, model):
        self.model = model
        self.steps = []  # Calls and Links, in topological order
        self.tensors = {}
        self.axes = {}  # id(tensor) -> its channel axis (negative), or None: no channels
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
    def _register(self, tensor, axis=-1):
        """Record a tensor; one seen for the first time has its channels on `axis`."""
        self.tensors[id(tensor)] = tensor
        if id(tensor) not in self.axes:
            shape = tuple(tensor.shape)
            has_channels = (
                axis is not None
                and _carries_channels(tensor)
                and -axis <= len(shape)
                and bool(shape[axis])
            )
            self.axes[id(tensor)] = axis if has_channels else None

    def _pin_tensor(self, tensor, reason):
        self._register(tensor)
        for c in range(self.width(tensor)):
            self._pins.append(((id(tensor), c), reason))

    def _tie(self, a, ca, b, cb):
        self._uf.union((id(a), ca), (id(b), cb))

    def _tie_all(self, a, b):
        for c in range(min(self.width(a), self.width(b))):
            self._tie(a, c, b, c)

    def _walk(self, functional):
        for node in keras_internals.node_calls(functional):
            for tensor in node.inputs:
                self._register(tensor)
            if isinstance(node.operation, keras.Model):
                self._walk_nested(node.operation, node.inputs, node.outputs)
            else:
                self._add_call(node.operation, node.inputs, node.outputs, node.arguments)

    def _walk_nested(self, model, inputs, outputs):
        inner = functional_of(model)
        for outer, inside in zip(inputs, inner.inputs):
            self._register(inside, self.axes.get(id(outer), -1))
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
            self._register(outer, self.axes.get(id(inside), -1))
            self._tie_all(inside, outer)
            self.steps.append(Link(inside, outer))

    def _steps_of(self, functional):
        inner_ids = {id(node.operation) for node in keras_internals.node_calls(functional)}
        return [s for s in self.steps if isinstance(s, Call) and id(s.layer) in inner_ids]

    def _add_call(self, layer, inputs, outputs, arguments=None):
        rule = registry.channel_rule(weights_owner(layer), inputs[0].shape if inputs else None)
        if rule is None and tracing.passes_through(layer, inputs):
            rule = _IN_INFERENCE_IDENTITY
        if not _data_format_ok(layer):
            rule = None
        call = Call(layer, inputs, outputs, rule, arguments)
        self.steps.append(call)
        reason = self._tie_call(call)
        if reason:
            call.rule = None
            call.moves = []
            for tensor in outputs:
                self._register(tensor)
            for tensor in _read_inputs(call) + outputs:
                self._pin_tensor(tensor, reason)

    def _tie_call(self, call) -> str | None:
        """Tie the call's channels and give its outputs their channel axes; return a reason
        to pin them instead, if any."""
        layer, rule = weights_owner(call.layer), call.rule
        name = f"{type(layer).__name__} '{layer.name}'"
        if rule is None:
            return f"{name} is a barrier: {registry.barrier_reason(layer)}"
        if isinstance(rule, ChannelRule) and rule.kind == "moves":
            return self._apply_move(call, rule, name)
        # Integer tensors are token ids, not channels: an embedding reads them whatever their
        # length. A layer that acts on each entry alone reads channels on any axis.
        last_axis = not (isinstance(rule, ChannelRule) and rule.any_axis)
        if last_axis and any(
            t.shape[-1] is None for t in call.inputs + call.outputs if _carries_channels(t)
        ):
            return f"{name} has an unknown channel count"
        if isinstance(rule, LayerSpec):
            return self._tie_producer(call, rule, layer, name)
        return self._tie_layer(call, rule, layer, name)

    def _tie_producer(self, call, spec, layer, name) -> str | None:
        """A prunable layer: its output channels are new (on the spec's output axis), its
        inputs read on the spec's input axis."""
        read = [t for t in call.inputs[:1] if self.axes.get(id(t)) is not None]
        if read and self.axes[id(read[0])] != spec.input_channel_axis:
            return f"{name} reads channels on another axis than they lie on"
        out = call.outputs[0]
        self._register(out, spec.output_axis)
        for tensor in call.outputs[1:]:
            self._register(tensor)
        if spec.states:
            reason = self._tie_states(call, spec, layer, name)
            if reason:
                return reason
        if spec.coupled:
            multiplier = spec.outputs_per_input(layer)
            for c in range(self.width(call.inputs[0])):
                for m in range(multiplier):
                    self._tie(call.inputs[0], c, out, c * multiplier + m)
        return None

    def _tie_layer(self, call, rule, layer, name) -> str | None:
        """A layer (or op) described by a `ChannelRule` of a fixed kind."""
        out = call.outputs[0]
        axes = {self.axes.get(id(t)) for t in call.inputs if self.axes.get(id(t)) is not None}
        if rule.kind == "weight":
            self._register(out, -1)
            return None
        if len(axes) > 1:
            return f"{name} combines tensors whose channels lie on different axes"
        axis = axes.pop() if axes else -1
        if axis != -1 and not rule.any_axis:
            return f"{name} works on the last axis, and these channels lie on another"
        for tensor in call.outputs:
            self._register(tensor, axis)
        baked = _baked_constant(call, axis, name)
        if baked:
            return baked
        if rule.kind in ("passthrough", "reshape", "grouped"):
            if self.width(call.inputs[0]) != self.width(out):
                return f"{name} changes the channel count"
            self._tie_all(call.inputs[0], out)
            if rule.kind == "grouped":
                # Statistics pool over each group: a channel goes only with its whole group.
                size = self.width(out) // layer.groups
                for c in range(self.width(out)):
                    self._tie(out, c, out, c - c % size)
        elif rule.kind == "elementwise":
            for tensor in call.inputs:
                if self.width(tensor) == self.width(out):
                    self._tie_all(tensor, out)
                elif self.width(tensor) > 1:
                    return f"{name} broadcasts a tensor of {self.width(tensor)} channels"
        elif rule.kind == "concat":
            position = layer.axis % len(out.shape)
            if position != len(out.shape) - 1:
                for tensor in call.inputs:
                    self._tie_all(tensor, out)
            else:
                offset = 0
                for tensor in call.inputs:
                    for c in range(self.width(tensor)):
                        self._tie(tensor, c, out, offset + c)
                    offset += self.width(tensor)
        elif rule.kind == "flatten":
            channels = self.width(call.inputs[0])
            for i in range(self.width(out)):
                self._tie(call.inputs[0], i % channels, out, i)
        return None

    def _apply_move(self, call, rule, name) -> str | None:
        """An op whose rule computes where channels go (`tfprune.layers.moves`)."""
        inputs = _read_inputs(call)
        view = OpView(
            registry.op_parameters(call.layer, call.arguments),
            [tuple(t.shape) for t in inputs],
            [self.axes.get(id(t)) for t in inputs],
            [tuple(t.shape) for t in call.outputs],
        )
        # Sizes, masks, positions: an op on tensors without channels makes none.
        move = Move([None] * len(call.outputs), [])
        if any(a is not None for a in view.axes):
            try:
                move = rule.moves(view)
            except (KeyError, TypeError):  # a parameter known only when the model runs
                move = "it takes a parameter known only when the model runs"
        if isinstance(move, str):
            return f"{name}: {move}"
        baked = _baked_constant(call, move.axes[0] if move.axes else None, name)
        if baked:
            return baked
        for tensor, axis in zip(call.outputs, move.axes):
            self._register(tensor, axis)
        call.moves = []
        for index, output, pairs in move.ties:
            source, target = inputs[index], call.outputs[output]
            call.moves.append((source, target, pairs))
            for c_in, c_out in pairs:
                self._tie(source, int(c_in), target, int(c_out))
        return None

    def _tie_states(self, call, spec, layer, name) -> str | None:
        """A recurrent layer's states carry its units (see `state_channels`). A Bidirectional
        layer's directions tie nothing more: concatenated, each writes channels of its own."""
        out = call.outputs[0]
        for tensor, filters in state_channels(call, spec, layer):
            if self.width(tensor) != len(filters):
                return f"{name} is called with a state of {self.width(tensor)} channels"
            for unit, channel in enumerate(filters):
                self._tie(tensor, unit, out, int(channel))
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
                if a is not b and self.width(a) == self.width(b):
                    self._tie_all(a, b)

    # ------------------------------------------------------------------ queries
    def axis(self, tensor) -> int | None:
        """The axis `tensor`'s channels lie on (negative), or `None` if it carries none."""
        return self.axes.get(id(tensor), -1 if width(tensor) else None)

    def width(self, tensor) -> int:
        """How many channels `tensor` carries (along `axis`); 0 for none.

        Args:
            tensor: a symbolic tensor of the graph.

        Returns:
            The channel count.
        """
        axis = self.axis(tensor)
        if axis is None or -axis > len(tensor.shape) or tensor.shape[axis] is None:
            return 0
        return int(tensor.shape[axis])

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
            if isinstance(c.rule, LayerSpec) and not c.rule.coupled
        ]

    def is_pinned(self, root) -> bool:
        """Whether a group can never be removed."""
        return root in self.pinned

    def pin_reasons(self, tensor) -> list[str]:
        """Why channels of `tensor` can never be removed: the distinct reasons, sorted."""
        roots = (self.root(tensor, c) for c in range(self.width(tensor)))
        return sorted({self.pinned[r] for r in roots if self.is_pinned(r)})


def _read_inputs(call) -> list:
    """The inputs an op reads: all of them, but for a traced layer's `ShapedCall` only the
    tensors its arguments name (not the input it is anchored to)."""
    if isinstance(call.layer, ShapedCall):
        used = template_tensors(call.layer.template)
        return [t for i, t in enumerate(call.inputs) if i in used]
    return list(call.inputs)
