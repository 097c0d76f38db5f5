"""What a registry entry is: `LayerSpec`, which weight of a layer type is pruned and which of
its axes are filters, and `ChannelRule`, how a layer without a prunable weight moves channels.

Their modes are enums (`Fold`, `DeadOutput`, `Side`, `Role`, `RuleKind`) whose members equal
their string values, so that `fold="zero"` and `fold=Fold.ZERO` are one setting, and a value
that is neither fails when the entry is built. The callables that go together are one object:
`Units` for filters that are units inside a layer, `Members` for layers built of sublayers.

`tfprune.layers.registry` holds the entries by layer type; `tfprune.layers.mask_layout` says
where the variables a mask covers sit in it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable

import numpy as np

from tfprune.layers.mask_layout import pruned_array, pruned_bias


class Mode(str, enum.Enum):
    """A setting with a few named values; each member equals its string value.

    Example:

    >>> Fold("zero") is Fold.ZERO, Fold.ZERO == "zero", f"{Fold.ZERO}"
    (True, True, 'zero')
    """

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec) -> str:
        return format(self.value, spec)


class Fold(Mode):
    """How a removed input channel that carries a constant can be folded into the bias.

    Example:

    >>> LayerSpec("kernel", filter_axes=(-1,), input_axis=0, fold="always").fold
    <Fold.ALWAYS: 'always'>
    """

    ALWAYS = "always"  # dense: every input position reads it
    VALID = "valid"  # convolutions without zero padding, or 1x1
    ZERO = "zero"  # only channels that are exactly zero can go


class DeadOutput(Mode):
    """What a filter whose weights are all zero outputs.

    Example:

    >>> [str(d) for d in DeadOutput]
    ['bias', 'zero']
    """

    BIAS = "bias"  # its bias, as a convolution does
    ZERO = "zero"  # zero if its bias is zero too (a recurrent unit's state)


class Side(Mode):
    """Where a weight's multiply-adds are counted: per position of the output or the input.

    Example:

    >>> LayerSpec("kernel", filter_axes=(-1,), input_axis=0).flops_weights
    (('kernel', <Side.OUTPUT: 'output'>),)
    """

    OUTPUT = "output"
    INPUT = "input"  # transposed convolutions scatter every input position


class Role(Mode):
    """Which channels index an axis `shrink` cuts.

    Example:

    >>> LayerSpec("kernel", filter_axes=(-1,), input_axis=0, slices=(("kernel", 0, "up"),))
    Traceback (most recent call last):
    ...
    ValueError: LayerSpec(slices='up'): expected one of 'out', 'out_gates', 'in', 'in_expanded'.
    """

    OUT = "out"  # output channels
    OUT_GATES = "out_gates"  # gate-major blocks of output channels (LSTM, GRU)
    IN = "in"  # input channels
    IN_EXPANDED = "in_expanded"  # input channel x depth multiplier, channel-major


class RuleKind(Mode):
    """How a `ChannelRule` moves channels (see `ChannelRule`).

    Example:

    >>> ChannelRule("elementwise").kind
    <RuleKind.ELEMENTWISE: 'elementwise'>
    """

    PASSTHROUGH = "passthrough"
    GROUPED = "grouped"
    ELEMENTWISE = "elementwise"
    CONCAT = "concat"
    SPLIT = "split"
    FLATTEN = "flatten"
    RESHAPE = "reshape"
    WEIGHT = "weight"
    MOVES = "moves"


def _mode(kind: type[Mode], value, owner: str, argument: str) -> Mode:
    """`value` as a member of `kind`, or a ValueError naming the argument and the choices."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{owner}({argument}={value!r}): expected one of {choices}.") from None


def _with_roles(entries, kind: type[Mode], owner: str, argument: str) -> tuple:
    """Entries whose last element is a mode, that element checked and made a member."""
    return tuple((*entry[:-1], _mode(kind, entry[-1], owner, argument)) for entry in tuple(entries))


@dataclasses.dataclass(frozen=True)
class Units:
    """Filters that are units inside a layer (attention heads, a block's feed-forward units)
    rather than its output channels.

    Such a layer is a barrier for the channels around it, and each of its units is a group
    of its own that filter pruning may remove.

    Args:
        flops: `(layer, input shapes) -> FLOPs of one unit per example`.
        slicer: `(layer, kept units) -> (config, weights, cuts)`: the layer's config with the
            spec's `config_key` lowered, its weights in `layer.weights` order cut to the kept
            units, and `{weight position: [(axis, kept indices)]}`; what `shrink` rebuilds the
            layer from.
        fixed_flops: optional `(layer, input shapes) -> FLOPs per example` of the part of the
            layer that no unit owns (a transformer block's attention when only its
            feed-forward units are pruned); counted, never removed. Defaults to `None` (every
            FLOP belongs to a unit).

    Example:

    >>> units = Units(flops=lambda layer, shapes: 2 * shapes[0][-1], slicer=None)
    >>> units.flops(None, [(1, 8)]), units.fixed_flops
    (16, None)
    """

    flops: Callable
    slicer: Callable | None
    fixed_flops: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Members:
    """Layers inside a layer that hold its weights (a Bidirectional layer's two directions).

    Args:
        of: `layer -> [(sublayer, filters)]`: each member with the indices of the layer's
            filters its units are (in unit order; members whose units are the same filters
            lose them together). Each member keeps at least one unit; FLOPs and `shrink` work
            member by member.
        rebuilt_as: optional `(layer, kept units per member) -> layer class`, the class
            `shrink` rebuilds the layer as. Defaults to `None`: the layer's own class.

    Example:

    >>> members = Members(of=lambda layer: [(layer.forward_layer, np.arange(4))])
    >>> members.rebuilt_as is None
    True
    """

    of: Callable
    rebuilt_as: Callable | None = None


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """How tfprune sees one layer type.

    Args:
        weight: name of the prunable variable (`variable.name`), e.g. `"kernel"`.
        filter_axes: axes of that weight that index output channels ("filters"). Several
            axes are flattened in C order, as DepthwiseConv2D's `(in, multiplier)` pair is.
        input_axis: axis indexing input channels, along which N:M groups and blocks run
            (TFLite stores weights with this axis innermost), or `None` if the layer has no
            input-channel reduction (depthwise convolutions).
        bias: name of the per-filter bias variable that follows a filter mask, or `None`.
        flops_weights: `(variable name, Side)` pairs; each weight element is one multiply-add
            per spatial position of the layer's output (`"output"`), or input (`"input"`, for
            transposed convolutions, which scatter every input position).
        slices: `(variable name, axis, Role)` triples telling `shrink` how to cut each
            weight: role `"out"` (indexed by output channels), `"out_gates"` (by one block of
            output channels per gate, gate-major), `"in"` (by input channels) or
            `"in_expanded"` (by input channel x depth multiplier, channel-major). A weight
            created without a name is given by its position in `layer.weights` instead.
        config_key: the config entry holding the output channel count (`"filters"`,
            `"units"`), or `None` when outputs follow inputs (depthwise).
        coupled: outputs follow inputs (depthwise): input channel `c` owns outputs
            `c * multiplier ... c * multiplier + multiplier - 1`.
        fold: a `Fold`, how a removed input channel that carries a constant can be folded
            into the bias: `"always"` (dense), `"valid"` (convolutions without zero padding,
            or 1x1) or `"zero"` (only channels that are exactly zero can go).
        groups_key: for coupled specs, a config entry holding one group per input channel
            (`groups` of a depthwise convolution written as a grouped `Conv2D`).
        depthwise_form: the spec that applies instead when the layer is a grouped
            convolution with one group per input channel, i.e. a depthwise convolution (as
            keras.applications' ConvNeXt writes them). Other grouped convolutions are barriers.
        units: `Units`, for layers whose filters are units inside the layer (attention
            heads) rather than output channels. Defaults to `None`.
        applies: optional predicate `layer -> bool`: the spec holds only for layers it
            accepts (an EinsumDense whose equation is a dense layer's); others are barriers.
        gates: how many gates share the filter axis (LSTM 4, GRU 3): it holds one block of
            filters per gate, gate-major, so filter `j` of gate `g` is at `g * filters + j`,
            and a filter is all its gates' entries. The bias follows the same layout.
        joined: names of weights joined to `weight` along its input axis into the one matrix
            that masks and criteria see: a recurrent layer's `recurrent_kernel`, so that its
            state is pruned with its inputs, and a filter is the unit's every column.
        states: whether the layer has recurrent states (final states it returns, initial
            states it is called with) whose channels are its units, tied to them.
        dead_output: a `DeadOutput`, what a filter whose weights are all zero outputs:
            `"bias"` (its bias, as a convolution does) or `"zero"` (zero if its bias is zero
            too, and a value that varies otherwise, as a recurrent unit's state does).
        resolve: optional `layer -> LayerSpec | None`, choosing the spec for one instance (a
            generic `keras.layers.RNN` by its cell).
        layout: optional `layer -> MaskLayout`, for layers whose mask covers variables laid
            out otherwise than `weight` and `joined` (a Bidirectional layer's two directions).
        members: `Members`, for layers whose weights sublayers hold. Defaults to `None`.
        reason: why a layer of this type is a barrier where `applies` or `resolve` refuse
            it, for `explain`.
        output_axis: the axis of the layer's output its filters lie on. Defaults to -1.
        input_channel_axis: the axis of its input whose channels `input_axis` reads.
            Defaults to -1.
        output_axes: further axes of the weight that index the output besides the filter
            axes (an `EinsumDense` projecting into heads keeps each head's size): each
            element then costs one multiply-add per position of the rest of the output.
            Defaults to `()`.

    Raises:
        ValueError: if a mode (`fold`, `dead_output`, a side or a role) is not one of its
            values.

    Example:

    >>> spec = LayerSpec("kernel", filter_axes=(3,), input_axis=2)
    >>> spec.filter_count((3, 3, 8, 16)), spec.fold
    (16, <Fold.VALID: 'valid'>)
    """

    weight: str
    filter_axes: tuple
    input_axis: int | None
    bias: str | None = "bias"
    flops_weights: tuple = (("kernel", Side.OUTPUT),)
    slices: tuple = ()
    config_key: str | None = "filters"
    coupled: bool = False
    fold: Fold = Fold.VALID
    groups_key: str | None = None
    depthwise_form: LayerSpec | None = None
    units: Units | None = None
    applies: Callable | None = None
    gates: int = 1
    joined: tuple = ()
    states: bool = False
    dead_output: DeadOutput = DeadOutput.BIAS
    resolve: Callable | None = None
    layout: Callable | None = None
    members: Members | None = None
    reason: str = ""
    output_axis: int = -1
    input_channel_axis: int = -1
    output_axes: tuple = ()

    def __post_init__(self):
        checked = {
            "fold": _mode(Fold, self.fold, "LayerSpec", "fold"),
            "dead_output": _mode(DeadOutput, self.dead_output, "LayerSpec", "dead_output"),
            "flops_weights": _with_roles(self.flops_weights, Side, "LayerSpec", "flops_weights"),
            "slices": _with_roles(self.slices, Role, "LayerSpec", "slices"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def internal_units(self) -> bool:
        """Whether the filters are units inside the layer, not output channels."""
        return self.units is not None

    def dead_units(self, layer) -> np.ndarray:
        """Which filters of `layer` are all zero, in the weight and in its bias.

        Args:
            layer: a built layer of this spec's type.

        Returns:
            One boolean per filter.
        """
        weight = pruned_array(layer, self)
        dead = ~np.any(
            self.to_canonical(weight).reshape(self.filter_count(weight.shape), -1), axis=1
        )
        bias = pruned_bias(layer, self) if self.bias else None
        if bias is not None:
            dead &= ~np.any(self.bias_per_filter(bias, len(dead)) != 0, axis=1)
        return dead

    def bias_per_filter(self, bias: np.ndarray, filters: int) -> np.ndarray:
        """A bias as one row per filter: `(filters, entries)`, its gates' entries gathered.

        Args:
            bias: the bias array (an attention head's `(heads, dims)`, an LSTM's `(4 * units,)`
                or a GRU's `(2, 3 * units)`).
            filters: the layer's filter count.

        Returns:
            A 2-D array, row `j` holding every entry that belongs to filter `j`.
        """
        if self.gates == 1 and bias.shape[0] == filters:
            return bias.reshape(filters, -1)
        gated = bias.reshape(-1, self.gates, filters)
        return np.moveaxis(gated, -1, 0).reshape(filters, -1)

    def bias_mask(self, kept: np.ndarray, shape) -> np.ndarray:
        """A bias mask from per-filter keep flags (the inverse layout of `bias_per_filter`).

        Args:
            kept: one value per filter, 1 = kept.
            shape: the bias's shape.

        Returns:
            An array of `shape`.
        """
        kept = np.asarray(kept, np.float32)
        if self.gates == 1 and shape[0] == kept.size:
            return np.broadcast_to(kept.reshape(kept.shape + (1,) * (len(shape) - 1)), shape)
        return np.broadcast_to(np.tile(kept, math.prod(shape) // kept.size).reshape(shape), shape)

    def sliced_units(self, layer):
        """The layer rebuilt without its dead units (see `dead_units`), by `units.slicer`.

        At least one unit stays, as a layer needs one.

        Args:
            layer: a built layer whose spec has units inside it.

        Returns:
            `(config, weights, cuts)` as `units.slicer` gives them, or `None` if no unit is
            dead.
        """
        alive = ~self.dead_units(layer)
        if alive.all():
            return None
        alive[0] |= not alive.any()
        return self.units.slicer(layer, np.flatnonzero(alive))

    def filter_count(self, shape) -> int:
        """Number of filters a weight of `shape` has."""
        return math.prod(shape[a] for a in self.filter_axes) // self.gates

    def _gated(self, shape) -> tuple:
        """`shape` with the filter axis split into `(gates, filters)` (unchanged if ungated)."""
        if self.gates == 1:
            return tuple(shape)
        axis = self.filter_axes[0] % len(shape)
        return (*shape[:axis], self.gates, shape[axis] // self.gates, *shape[axis + 1 :])

    def _gated_axes(self, ndim):
        """Filter axes and input axis of the gated view of a weight with `ndim` axes."""
        if self.gates == 1:
            return self.filter_axes, self.input_axis
        axis = self.filter_axes[0] % ndim
        inputs = None if self.input_axis is None else self.input_axis % ndim
        return (axis + 1,), None if inputs is None else inputs + (inputs > axis)

    def outputs_per_input(self, layer) -> int:
        """For coupled specs: how many output channels each input channel owns."""
        if self.groups_key:
            return layer.filters // getattr(layer, self.groups_key)
        return getattr(layer, "depth_multiplier", 1)

    def _moved(self, ndim):
        """Axis order of the gated view (`ndim` axes) that puts filter axes first and the
        input axis last."""
        filter_axes, input_axis = self._gated_axes(ndim - (self.gates > 1))
        filters = [a % ndim for a in filter_axes]
        last = [] if input_axis is None else [input_axis % ndim]
        middle = [a for a in range(ndim) if a not in filters and a not in last]
        return filters + middle + last

    def canonical_shape(self, shape) -> tuple:
        """The shape `to_canonical` gives a weight of `shape`, without building the array.

        Args:
            shape: the weight's shape.

        Returns:
            `(filters, spatial, inputs)`.
        """
        n_filters = self.filter_count(shape)
        n_inputs = 1 if self.input_axis is None else shape[self.input_axis]
        return n_filters, math.prod(shape) // max(n_filters * n_inputs, 1), n_inputs

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        """View a weight as `(filters, spatial, inputs)`.

        Args:
            array: an array of the weight's shape.

        Returns:
            A 3-D array; `inputs` is 1 for layers without an input axis.
        """
        gated = np.reshape(array, self._gated(array.shape))
        moved = np.transpose(gated, self._moved(gated.ndim))
        n_inputs = 1 if self.input_axis is None else array.shape[self.input_axis]
        return moved.reshape(self.filter_count(array.shape), -1, n_inputs)

    def from_canonical(self, canonical: np.ndarray, shape) -> np.ndarray:
        """Inverse of `to_canonical` for a weight of `shape`."""
        gated = self._gated(shape)
        order = self._moved(len(gated))
        moved = canonical.reshape([gated[a] for a in order])
        return np.transpose(moved, np.argsort(order)).reshape(shape)


@dataclasses.dataclass(frozen=True)
class ChannelRule:
    """How a layer without a prunable weight moves channels, for the dependency graph.

    Args:
        kind: a `RuleKind`: `"passthrough"` (channel `c` in is channel `c` out: BN,
            activations, pooling, padding...), `"elementwise"` (Add, Multiply...: all
            same-width inputs share one channel set; width-1 inputs broadcast), `"concat"`
            (channels of the inputs follow each other), `"flatten"` (feature `i` belongs to
            channel `i % C`), `"reshape"` (a pass-through when the last axis keeps its size,
            else a barrier), `"grouped"` (a pass-through whose channels go in whole groups of
            `channels / layer.groups`, as GroupNormalization's statistics do; `shrink`
            lowers `groups`), `"split"` (the inverse of `"concat"`: each output takes the
            next channels of the input), `"weight"` (a traced layer's `Weight`: channels of
            its own, which meet others where it is used) or `"moves"` (see `moves`).
        slices: per-channel weights, as in `LayerSpec.slices` (e.g. BN's gamma).
        config_key: a config entry to update with the new channel count: an integer
            (`projection_dim`), or Reshape's `target_shape`, whose last entry is the count.
        applies: optional predicate `(layer, input_shape) -> bool` (`input_shape` may be
            `None` when unknown); where it is False the layer is a barrier (e.g. an
            `Activation` that is a softmax over channels).
        masked: per-channel weights that filter pruning zeroes along with the filter that
            feeds them (BN's gamma and beta), so that the channel leaves the layer exactly
            zero and `shrink` can remove it whatever the padding after it.
        reason: why the layer is a barrier where `applies` is False, for `explain`.
        any_axis: whether the layer acts on each entry alone (an activation, an elementwise
            op), so that channels on any axis pass (heads included); otherwise they must lie
            on the last axis. Defaults to `False`.
        moves: for kind `"moves"`: `OpView -> Move | str`, where the op puts channels
            (`tfprune.layers.moves`).
        structural: with `moves`, whether the op only rearranges entries (a reshape, a
            transpose, a repeat), so that a channel holding a constant still holds it.
        shrunk_as: for layers whose statistics pool over all channels (LayerNormalization):
            a function `(layer, removed_values) -> (layer_class, config)` building the smaller
            layer that still counts the removed channels. `shrink` removes a channel from
            such a layer only if its input there is a constant, which it hands over.

    Raises:
        ValueError: if `kind` or a role in `slices` is not one of its values.

    Example:

    >>> rule = ChannelRule("passthrough", slices=(("scale", -1, "in"),))  # a per-channel scale
    >>> rule.kind == "passthrough", rule.masked
    (True, ())
    """

    kind: RuleKind
    slices: tuple = ()
    config_key: str | None = None
    applies: Callable | None = None
    masked: tuple = ()
    reason: str = ""
    any_axis: bool = False
    moves: Callable | None = None
    structural: bool = False
    shrunk_as: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "kind", _mode(RuleKind, self.kind, "ChannelRule", "kind"))
        object.__setattr__(self, "slices", _with_roles(self.slices, Role, "ChannelRule", "slices"))
