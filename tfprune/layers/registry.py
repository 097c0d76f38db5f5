"""Per-layer-type knowledge: which weight is pruned and which of its axes is a filter.

Everything else in tfprune asks this registry instead of testing layer types itself, so
supporting a new layer type is one `register_layer` (or `register_channel_rule`) call. The
rules for Keras' own layers are in `tfprune.layers.builtin_rules`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.layers.traced import KERAS_OPS, ShapedCall, fill_template, is_placeholder


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
        flops_weights: `(variable name, "output" | "input")` pairs; each weight element is
            one multiply-add per spatial position of the layer's output (or input, for
            transposed convolutions, which scatter every input position).
        slices: `(variable name, axis, role)` triples telling `shrink` how to cut each
            weight: role `"out"` (indexed by output channels), `"in"` (by input channels) or
            `"in_expanded"` (by input channel x depth multiplier, channel-major). A weight
            created without a name is given by its position in `layer.weights` instead.
        config_key: the config entry holding the output channel count (`"filters"`,
            `"units"`), or `None` when outputs follow inputs (depthwise).
        coupled: outputs follow inputs (depthwise): input channel `c` owns outputs
            `c * multiplier ... c * multiplier + multiplier - 1`.
        fold: how a removed input channel that carries a constant can be folded into the
            bias: `"always"` (dense), `"valid"` (convolutions without zero padding, or 1x1)
            or `"zero"` (only channels that are exactly zero can go).
        groups_key: for coupled specs, a config entry holding one group per input channel
            (`groups` of a depthwise convolution written as a grouped `Conv2D`).
        depthwise_form: the spec that applies instead when the layer is a grouped
            convolution with one group per input channel, i.e. a depthwise convolution (as
            keras.applications' ConvNeXt writes them). Other grouped convolutions are barriers.
        unit_flops: for layers whose filters are units inside the layer (attention heads)
            rather than output channels: `(layer, input shapes) -> FLOPs of one unit per
            example`. Such a layer is a barrier for the channels around it, and each of its
            units is a group of its own that filter pruning may remove.
        applies: optional predicate `layer -> bool`: the spec holds only for layers it
            accepts (an EinsumDense whose equation is a dense layer's); others are barriers.
        unit_slicer: with `unit_flops`: `(layer, kept units) -> (config, weights, cuts)`, the
            layer's config with `config_key` lowered, its weights in `layer.weights` order cut
            to the kept units, and `{weight position: [(axis, kept indices)]}`; what `shrink`
            rebuilds the layer from.
        fixed_flops: with `unit_flops`: optional `(layer, input shapes) -> FLOPs per example`
            of the part of the layer that no unit owns (a transformer block's attention when
            only its feed-forward units are pruned); counted, never removed. Defaults to
            `None` (every FLOP belongs to a unit).
        gates: how many gates share the filter axis (LSTM 4, GRU 3): it holds one block of
            filters per gate, gate-major, so filter `j` of gate `g` is at `g * filters + j`,
            and a filter is all its gates' entries. The bias follows the same layout.
        joined: names of weights joined to `weight` along its input axis into the one matrix
            that masks and criteria see: a recurrent layer's `recurrent_kernel`, so that its
            state is pruned with its inputs, and a filter is the unit's every column.
        states: whether the layer has recurrent states (final states it returns, initial
            states it is called with) whose channels are its units, tied to them.
        dead_output: what a filter whose weights are all zero outputs: `"bias"` (its bias,
            as a convolution does) or `"zero"` (zero if its bias is zero too, and a value that
            varies otherwise, as a recurrent unit's state does).
        resolve: optional `layer -> LayerSpec | None`, choosing the spec for one instance (a
            generic `keras.layers.RNN` by its cell).
        layout: optional `layer -> MaskLayout`, for layers whose mask covers variables laid
            out otherwise than `weight` and `joined` (a Bidirectional layer's two directions).
        members: optional `layer -> [(sublayer, filters)]`: the layers inside it that hold
            its weights, each with the indices of the layer's filters its units are (in unit
            order; members whose units are the same filters lose them together). Each member
            keeps at least one unit; FLOPs and `shrink` work member by member.
        rebuilt_as: optional `(layer, kept units per member) -> layer class`, for layers
            with `members`: the class `shrink` rebuilds the layer as. Defaults to `None`:
            the layer's own class.
        reason: why a layer of this type is a barrier where `applies` or `resolve` refuse
            it, for `explain`.
        output_axis: the axis of the layer's output its filters lie on. Defaults to -1.
        input_channel_axis: the axis of its input whose channels `input_axis` reads.
            Defaults to -1.
        output_axes: further axes of the weight that index the output besides the filter
            axes (an `EinsumDense` projecting into heads keeps each head's size): each
            element then costs one multiply-add per position of the rest of the output.
            Defaults to `()`.

    Example:

    >>> spec = LayerSpec("kernel", filter_axes=(3,), input_axis=2)
    >>> spec.filter_count((3, 3, 8, 16))
    16
    """

    weight: str
    filter_axes: tuple
    input_axis: int | None
    bias: str | None = "bias"
    flops_weights: tuple = (("kernel", "output"),)
    slices: tuple = ()
    config_key: str | None = "filters"
    coupled: bool = False
    fold: str = "valid"
    groups_key: str | None = None
    depthwise_form: LayerSpec | None = None
    unit_flops: object = None
    unit_slicer: object = None
    fixed_flops: object = None
    applies: object = None
    gates: int = 1
    joined: tuple = ()
    states: bool = False
    dead_output: str = "bias"
    resolve: object = None
    layout: object = None
    members: object = None
    rebuilt_as: object = None
    reason: str = ""
    output_axis: int = -1
    input_channel_axis: int = -1
    output_axes: tuple = ()

    @property
    def internal_units(self) -> bool:
        """Whether the filters are units inside the layer, not output channels."""
        return self.unit_flops is not None

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
        """The layer rebuilt without its dead units (see `dead_units`), by `unit_slicer`.

        At least one unit stays, as a layer needs one.

        Args:
            layer: a built layer whose spec has units inside it.

        Returns:
            `(config, weights, cuts)` as `unit_slicer` gives them, or `None` if no unit is
            dead.
        """
        alive = ~self.dead_units(layer)
        if alive.all():
            return None
        alive[0] |= not alive.any()
        return self.unit_slicer(layer, np.flatnonzero(alive))

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


RULE_KINDS = (
    "passthrough",
    "grouped",
    "elementwise",
    "concat",
    "split",
    "flatten",
    "reshape",
    "weight",
    "moves",
)


@dataclasses.dataclass(frozen=True)
class ChannelRule:
    """How a layer without a prunable weight moves channels, for the dependency graph.

    Args:
        kind: `"passthrough"` (channel `c` in is channel `c` out: BN, activations, pooling,
            padding...), `"elementwise"` (Add, Multiply...: all same-width inputs share one
            channel set; width-1 inputs broadcast), `"concat"` (channels of the inputs
            follow each other), `"flatten"` (feature `i` belongs to channel `i % C`), or
            `"reshape"` (a pass-through when the last axis keeps its size, else a barrier), or
            `"grouped"` (a pass-through whose channels go in whole groups of
            `channels / layer.groups`, as GroupNormalization's statistics do; `shrink` lowers
            `groups`), `"split"` (the inverse of `"concat"`: each output takes the next
            channels of the input) or `"weight"` (a traced layer's `Weight`: channels of its
            own, which meet others where it is used).
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

    Example:

    >>> rule = ChannelRule("passthrough", slices=(("scale", -1, "in"),))  # a per-channel scale
    >>> rule.kind, rule.masked
    ('passthrough', ())
    """

    kind: str
    slices: tuple = ()
    config_key: str | None = None
    applies: object = None
    masked: tuple = ()
    reason: str = ""
    any_axis: bool = False
    moves: object = None
    structural: bool = False
    shrunk_as: object = None


_REGISTRY: dict[type | str, LayerSpec] = {}
# Composite layers `tfprune.unfold` writes out as the Keras layers they hold.
_UNFOLDINGS: dict[type | str, object] = {}
_CHANNEL_RULES: dict[type, ChannelRule] = {}
_OP_FLOPS: dict = {}


class _RuntimeSizes:
    """Stands for every tensor of a `ShapedCall`'s template in `op_parameters`: a size known
    only when the model runs reads as a placeholder a rule can tell from a number."""

    def __getitem__(self, index):
        return RUNTIME_SIZE


RUNTIME_SIZE = "<size known when the model runs>"
RUNTIME_SIZES = _RuntimeSizes()
# Keras wrappers that apply their inner layer as is (TimeDistributed, to every step): the
# inner layer's spec or rule describes them.
_DELEGATING: set[type] = set()


def register_delegating_wrapper(wrapper_class: type) -> None:
    """Describe a Keras wrapper by its inner layer's spec or rule (it applies that layer as is,
    as `TimeDistributed` does at every step).

    Args:
        wrapper_class: a `keras.layers.Wrapper` subclass.

    Raises:
        TypeError: for a class that is not a Keras wrapper.

    Example:

    >>> register_delegating_wrapper(keras.layers.TimeDistributed)
    >>> spec_for(keras.layers.TimeDistributed(keras.layers.Dense(4))).weight
    'kernel'
    """
    if not (isinstance(wrapper_class, type) and issubclass(wrapper_class, keras.layers.Wrapper)):
        raise TypeError(
            f"register_delegating_wrapper needs a Wrapper class, got {wrapper_class!r}."
        )
    _DELEGATING.add(wrapper_class)


def _described_layer(layer):
    """The layer whose type the registry describes: a delegating wrapper's inner layer."""
    while type(layer) in _DELEGATING:
        layer = layer.layer
    return layer


def register_channel_rule(layer_class: type, rule: ChannelRule) -> None:
    """Teach the dependency graph how a layer type (and its subclasses) moves channels.

    Layers with neither a `LayerSpec` nor a `ChannelRule` are barriers: no channel is
    removed across them.

    Args:
        layer_class: a `keras.layers.Layer` subclass, or a `keras.Operation` subclass for
            the ops that expressions such as `x + y` or `keras.ops.relu(x)` put into a
            functional graph, or `"keras.ops.<function>"` for a `keras.ops` function however
            it appears (an op node, or a traced layer's `ShapedCall`).
        rule: a `ChannelRule`.

    Raises:
        TypeError: for a class that is neither a layer nor an op, or a rule of the wrong type.
        ValueError: for an unknown rule kind.

    Example:

    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.scale = self.add_weight(shape=input_shape[-1:], name="scale")
    ...     def call(self, x):
    ...         return x * self.scale
    >>> channel_rule(Scale()) is None  # unknown layers are barriers
    True
    >>> register_channel_rule(Scale, ChannelRule("passthrough", slices=(("scale", -1, "in"),)))
    >>> channel_rule(Scale()).kind
    'passthrough'
    """
    is_op_name = isinstance(layer_class, str) and layer_class.startswith("keras.ops.")
    if not is_op_name and not (
        isinstance(layer_class, type) and issubclass(layer_class, keras.Operation)
    ):
        raise TypeError(
            "register_channel_rule: expected a keras.layers.Layer or keras.Operation subclass, "
            f"or a 'keras.ops.<function>' name, got {layer_class!r}."
        )
    if not isinstance(rule, ChannelRule):
        raise TypeError(
            "register_channel_rule: rule must be a tfprune.layers.ChannelRule, got "
            f"{type(rule).__name__}."
        )
    if rule.kind not in RULE_KINDS:
        raise ValueError(f"Unknown channel rule kind {rule.kind!r}.")
    _CHANNEL_RULES[layer_class] = rule


def _keys(layer):
    """What a layer's registration may be keyed by, most specific first: each class of its
    MRO, then that class's Keras registered name ("keras_hub>TransformerEncoder") and its
    import path ("keras_hub.src.models.vit.vit_layers.ViTEncoder", for classes a library
    does not register), which let tfprune describe a library's layers without importing
    the library."""
    function = op_function_of(layer)
    if function is not None:
        yield f"keras.ops.{function}"
    for cls in type(layer).__mro__:
        yield cls
        name = keras.saving.get_registered_name(cls)
        if ">" in name:
            yield name
        yield f"{cls.__module__}.{cls.__qualname__}"


def op_function_of(layer) -> str | None:
    """The `keras.ops` function a graph node computes: an op node's (`"einsum"`), or the one
    a traced layer's `ShapedCall` calls; `None` for other layers.

    Args:
        layer: a node's operation.

    Returns:
        The function's name, or `None`.

    Example:

    >>> op_function_of(ShapedCall("reshape", {"args": [], "kwargs": {}}))
    'reshape'
    """
    if isinstance(layer, ShapedCall):
        return layer.function
    return keras_internals.op_function(layer)


def op_parameters(layer, arguments=None) -> dict:
    """The parameters of a `keras.ops` call in a graph, by name (`{"axis": -1}`): an op
    node's config (and an indexing's `key`, from the call's `arguments`), or a `ShapedCall`'s
    arguments bound to its function's signature, tensor arguments left out and sizes known
    only when the model runs as `RUNTIME_SIZE`; for a layer, its config.

    Args:
        layer: a node's operation.
        arguments: the call's arguments (`NodeCall.arguments`), if any. Defaults to `None`.

    Returns:
        A dict.

    Example:

    >>> x = keras.Input((4, 8))
    >>> model = keras.Model(x, keras.ops.expand_dims(x, 1))
    >>> op = keras_internals.node_calls(model)[0].operation
    >>> op_parameters(op)
    {'axis': 1}
    """
    if isinstance(layer, ShapedCall):
        signature = inspect.signature(KERAS_OPS[layer.function])
        template = layer.template
        filled = fill_template(template, RUNTIME_SIZES)
        bound = signature.bind_partial(*filled["args"], **filled["kwargs"])
        placeholders = signature.bind_partial(*template["args"], **template["kwargs"]).arguments
        return {k: v for k, v in bound.arguments.items() if not is_placeholder(placeholders[k])}
    function = keras_internals.op_function(layer)
    if function is None and not isinstance(layer, keras.layers.Layer):
        return {}
    parameters = {k: v for k, v in layer.get_config().items() if k != "name"}
    if function == "get_item" and arguments is not None:
        parameters["key"] = arguments.args[1]
    return parameters


# The parameter of a `keras.ops` function that spells out its output's shape, which
# `shrink` rewrites where the channels it carries get fewer.
_SHAPE_PARAMETERS = {"reshape": "newshape", "broadcast_to": "shape", "slice": "shape"}


def resized_op(layer, axis: int, count: int):
    """A copy of an op node or `ShapedCall` whose output carries `count` channels on `axis`
    (a reshape into fewer heads), or `None` if its parameters name no output shape.

    Args:
        layer: the node's operation.
        axis: the output's channel axis (negative).
        count: the channels it keeps.

    Returns:
        A new operation, or `None`.

    Example:

    >>> x = keras.Input((8, 8))
    >>> model = keras.Model(x, keras.ops.reshape(x, (-1, 8, 2, 4)))
    >>> op = keras_internals.node_calls(model)[0].operation
    >>> resized_op(op, -2, 1).get_config()["newshape"]
    (-1, 8, 1, 4)
    """
    if isinstance(layer, keras.layers.Reshape):  # its target shape leaves the batch out
        key = "target_shape"
    else:
        key = _SHAPE_PARAMETERS.get(op_function_of(layer))
    if key is None:
        return None

    def resized(shape):
        shape = list(shape)
        if isinstance(shape[axis], (int, np.integer)) and shape[axis] > 0:
            shape[axis] = count
        return shape

    if isinstance(layer, ShapedCall):
        signature = inspect.signature(KERAS_OPS[layer.function])
        bound = signature.bind_partial(*layer.template["args"], **layer.template["kwargs"])
        bound.arguments[key] = resized(bound.arguments[key])
        template = {"args": list(bound.args), "kwargs": dict(bound.kwargs)}
        return ShapedCall(layer.function, template, name=layer.name)
    config = layer.get_config()
    return type(layer).from_config({**config, key: tuple(resized(config[key]))})


def _registered_rule(layer):
    """The `LayerSpec` or `ChannelRule` of `layer`'s most specific registered class, or `None`."""
    layer = _described_layer(layer)
    for key in _keys(layer):
        if key in _REGISTRY:
            return _REGISTRY[key]
        if key in _CHANNEL_RULES:
            return _CHANNEL_RULES[key]
    return None


def has_rule(layer) -> bool:
    """Whether `layer`'s type (or a base of it) is registered, as prunable or with a channel
    rule; such a layer stays whole where tracing writes custom layers out.

    Args:
        layer: a Keras layer.

    Returns:
        True if registered.

    Example:

    >>> has_rule(keras.layers.Dense(2)), has_rule(keras.layers.Lambda(lambda x: x))
    (True, False)
    """
    return _registered_rule(layer) is not None


def register_op_flops(function: str, flops) -> None:
    """Teach FLOPs counting the cost of a `keras.ops` function that multiplies tensors
    (`einsum`, `matmul`): in a graph (a traced custom layer's) it holds no weight, so no
    `LayerSpec` counts it.

    Args:
        function: the `keras.ops` function's name; or a layer class or registered name
            (`"package>ClassName"`), for the FLOPs of its calls that its spec does not
            count (see `call_flops_rule`).
        flops: `(*arguments) -> FLOPs per example`, called with the function's arguments,
            each tensor replaced by its shape (`None` for the batch); for a layer,
            `(layer, *arguments)`.

    Raises:
        TypeError: for a name that is neither a string nor a class, or `flops` that is not
            callable.

    Example:

    >>> register_op_flops("my_contraction", lambda a, b: 2 * a[-1] * b[-1])
    >>> op_flops_rule("my_contraction")((None, 3), (None, 4))
    24
    """
    if not isinstance(function, (str, type)) or not callable(flops):
        raise TypeError(
            "register_op_flops takes a keras.ops function's name (or a layer class or "
            f"registered name) and a callable, got {function!r} and {flops!r}."
        )
    _OP_FLOPS[function] = flops


def op_flops_rule(function: str):
    """The FLOPs function registered for a `keras.ops` function, or `None` (not counted).

    Args:
        function: the function's name.

    Returns:
        The callable, or `None`.

    Example:

    >>> op_flops_rule("add") is None
    True
    """
    return _OP_FLOPS.get(function)


def call_flops_rule(layer):
    """The FLOPs function registered for calls of `layer`'s type beyond what its spec
    counts (a KerasHub `ReversibleEmbedding` called with `reverse=True` is the output layer
    of a language model: a product with the whole table), or `None`.

    Args:
        layer: a Keras layer.

    Returns:
        `(layer, *arguments) -> FLOPs per example`, or `None`.

    Example:

    >>> call_flops_rule(keras.layers.Dense(2)) is None
    True
    """
    return next((_OP_FLOPS[key] for key in _keys(layer) if key in _OP_FLOPS), None)


def channel_rule(layer, input_shape=None):
    """The `LayerSpec` or `ChannelRule` that describes `layer`'s channels, or `None` (a barrier).

    Args:
        layer: a Keras layer instance.
        input_shape: the shape of its (first) input in this call, if known; some rules
            depend on it (which axis a LayerNormalization normalises). Defaults to `None`.

    Returns:
        The spec or rule, or `None` where the layer is a barrier.

    Example:

    >>> channel_rule(keras.layers.Activation("softmax")) is None
    True
    """
    layer = _described_layer(layer)
    rule = _registered_rule(layer)
    if isinstance(rule, LayerSpec) and rule.internal_units:
        return None
    if isinstance(rule, LayerSpec):
        spec = spec_for(layer, input_shape)
        # A grouped convolution other than a depthwise one mixes channels within each group.
        return None if getattr(layer, "groups", 1) != 1 and not spec.coupled else spec
    if (
        isinstance(rule, ChannelRule)
        and rule.applies is not None
        and not rule.applies(layer, input_shape)
    ):
        return None
    return rule


def barrier_reason(layer) -> str:
    """Why `layer` is a barrier, in words for `explain` (after `channel_rule` returned `None`).

    Args:
        layer: a Keras layer.

    Returns:
        The reason.

    Example:

    >>> barrier_reason(keras.layers.Activation("softmax"))
    'a softmax over channels mixes them'
    """
    rule = _registered_rule(layer)
    if isinstance(rule, ChannelRule) and rule.reason:
        return rule.reason
    if isinstance(rule, LayerSpec) and rule.internal_units:
        return "it mixes channels inside its units (attention heads), which are pruned as units"
    if isinstance(rule, LayerSpec) and rule.reason:
        return rule.reason
    if getattr(layer, "groups", 1) != 1:
        return "a grouped convolution with several input channels per group"
    return "tfprune cannot see how it maps channels"


def units_kept(layer, unit_axis: dict, units) -> tuple:
    """A layer's weights (in `layer.weights` order) with only `units` left along each listed
    variable's unit axis: what a `unit_slicer` returns besides the config.

    Args:
        layer: a built layer.
        unit_axis: `{id(variable): axis}` for the variables that hold the units.
        units: the indices of the units that stay.

    Returns:
        `(weights, cuts)`: the arrays, and `{weight position: [(axis, kept indices)]}`.

    Example:

    >>> dense = keras.layers.Dense(3)
    >>> dense.build((None, 2))
    >>> weights, cuts = units_kept(dense, {id(dense.kernel): 1}, [0, 2])
    >>> [w.shape for w in weights], list(cuts)
    ([(2, 2), (3,)], [0])
    """
    units = np.asarray(units)
    weights, cuts = [], {}
    for position, weight in enumerate(layer.weights):
        array = keras.ops.convert_to_numpy(weight)
        if id(weight) in unit_axis:
            array = np.take(array, units, axis=unit_axis[id(weight)])
            cuts[position] = [(unit_axis[id(weight)], units)]
        weights.append(array)
    return weights, cuts


def refusal_reason(layer) -> str | None:
    """Why a layer of a registered type is not pruned (its spec's `applies` or `resolve`
    refused this instance), or `None` if its type is not registered or it is pruned.

    Args:
        layer: a Keras layer.

    Returns:
        The spec's `reason`, or `None`.

    Example:

    >>> rnn = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(2)] * 2))
    >>> refusal_reason(rnn) is not None, refusal_reason(keras.layers.Dense(2))
    (True, None)
    """
    rule = _registered_rule(layer)
    if isinstance(rule, LayerSpec) and spec_for(layer) is None:
        return rule.reason or "tfprune cannot prune this configuration of it"
    return None


def masked_weights(layer) -> tuple:
    """Names of the per-channel weights of `layer` that filter pruning masks (BN's gamma, beta).

    Args:
        layer: a Keras layer.

    Returns:
        A tuple of variable names, empty for layers without such weights.

    Example:

    >>> masked_weights(keras.layers.BatchNormalization())
    ('gamma', 'beta')
    """
    rule = _registered_rule(layer)
    return rule.masked if isinstance(rule, ChannelRule) else ()


def register_layer(layer_class: type | str, spec: LayerSpec) -> None:
    """Teach tfprune how to prune a layer type (and its subclasses).

    Args:
        layer_class: a `keras.layers.Layer` subclass, or the Keras registered name of one
            (`"package>ClassName"`, as `keras.saving.get_registered_name` gives it), or its
            import path (`"package.module.ClassName"`, for a class the library does not
            register), which describe a library's layer without importing the library.
        spec: a `LayerSpec` describing its prunable weight.

    Raises:
        TypeError: if `layer_class` is neither a Keras layer class nor a registered name, or
            `spec` is not a `LayerSpec`.

    Example:

    >>> class Projection(keras.layers.Layer):
    ...     def __init__(self, units, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.units = units
    ...     def build(self, input_shape):
    ...         self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
    ...     def call(self, x):
    ...         return x @ self.kernel
    ...     def get_config(self):
    ...         return {**super().get_config(), "units": self.units}
    >>> spec = LayerSpec("kernel", filter_axes=(-1,), input_axis=0, bias=None, config_key="units",
    ...                  slices=(("kernel", -1, "out"), ("kernel", 0, "in")))
    >>> register_layer(Projection, spec)
    >>> spec_for(Projection(4)) is spec
    True
    """
    named = isinstance(layer_class, str) and (">" in layer_class or "." in layer_class)
    if not named and not (
        isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)
    ):
        raise TypeError(
            "register_layer: layer_class must be a keras.layers.Layer subclass, a registered "
            'name such as "keras_hub>TransformerEncoder" or an import path such as '
            f'"keras_hub.src.models.vit.vit_layers.ViTEncoder", got {layer_class!r}.'
        )
    if not isinstance(spec, LayerSpec):
        raise TypeError(
            f"register_layer: spec must be a tfprune.layers.LayerSpec, got {type(spec).__name__}."
        )
    _REGISTRY[layer_class] = spec


def register_unfolding(layer_class: type | str, unfolding) -> None:
    """Teach `tfprune.unfold` to write a composite layer type out as the layers it holds.

    Args:
        layer_class: a layer class, its Keras registered name or its import path, as in
            `register_layer`.
        unfolding: `layer -> callable | None`. The callable stands for the layer in its
            model's graph: it is called with that call's arguments, builds fresh Keras layers
            holding the layer's weights on them and returns what the layer returned. `None`
            leaves this instance as it is.

    Raises:
        TypeError: if `unfolding` is not callable.

    Example:

    >>> class Twice(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.inner = keras.layers.Dense(input_shape[-1], name="inner")
    ...         self.inner.build(input_shape)
    ...     def call(self, x):
    ...         return self.inner(self.inner(x))
    >>> def written_out(layer):
    ...     def call(x):
    ...         first = keras.layers.Dense.from_config({**layer.inner.get_config(), "name": "a"})
    ...         second = keras.layers.Dense.from_config({**layer.inner.get_config(), "name": "b"})
    ...         y = second(first(x))
    ...         first.set_weights(layer.inner.get_weights())
    ...         second.set_weights(layer.inner.get_weights())
    ...         return y
    ...     return call
    >>> register_unfolding(Twice, written_out)
    >>> unfolding_for(Twice()) is written_out
    True
    """
    if not callable(unfolding):
        raise TypeError(f"register_unfolding: unfolding must be callable, got {unfolding!r}.")
    _UNFOLDINGS[layer_class] = unfolding


def unfolding_for(layer):
    """The registered unfolding of `layer`'s type (see `register_unfolding`), or `None`.

    Args:
        layer: a Keras layer.

    Returns:
        The `layer -> callable | None` function, or `None`.

    Example:

    >>> unfolding_for(keras.layers.Dense(2)) is None
    True
    """
    return next((_UNFOLDINGS[key] for key in _keys(layer) if key in _UNFOLDINGS), None)


def unfolds(layer) -> bool:
    """Whether `tfprune.unfold` writes `layer` out (its type has an unfolding that accepts
    this instance).

    Args:
        layer: a Keras layer.

    Returns:
        True or False.

    Example:

    >>> unfolds(keras.layers.Dense(2))
    False
    """
    unfolding = unfolding_for(layer)
    return unfolding is not None and unfolding(layer) is not None


def _one_group_per_input(layer, input_shape) -> bool:
    if input_shape is not None:
        return layer.groups == input_shape[-1]
    kernel = variable(layer, "kernel")  # built: its input axis holds channels per group
    return kernel is not None and kernel.shape[-2] == 1


def spec_for(layer, input_shape=None) -> LayerSpec | None:
    """The `LayerSpec` for `layer` (its most specific registered class), or `None`.

    A grouped convolution with one group per input channel gets its class's
    `depthwise_form`. Whether it has one is read from `input_shape`, or from the built
    kernel; an unbuilt layer without a shape gets the class's spec, whose filter masks
    are the same.

    Args:
        layer: a Keras layer instance.
        input_shape: the shape it is called on, if known. Defaults to `None`.

    Returns:
        The spec, or `None` if the layer type is not prunable.

    Example:

    >>> spec_for(keras.layers.Dense(4)).weight
    'kernel'
    """
    layer = _described_layer(layer)
    for key in _keys(layer):
        if key in _REGISTRY:
            spec = _REGISTRY[key]
            if spec.resolve is not None:
                spec = spec.resolve(layer)
                if spec is None:
                    return None
            if spec.applies is not None and not spec.applies(layer):
                return None
            if (
                spec.depthwise_form is not None
                and getattr(layer, "groups", 1) != 1
                and _one_group_per_input(layer, input_shape)
            ):
                return spec.depthwise_form
            return spec
    return None


def is_prunable(layer) -> bool:
    """Whether tfprune can prune `layer` itself (its type, or a base class, is registered).

    Args:
        layer: a Keras layer instance.

    Returns:
        True for a registered type.

    Example:

    >>> is_prunable(keras.layers.Dense(4)), is_prunable(keras.layers.ReLU())
    (True, False)
    """
    return spec_for(layer) is not None


def unit_count(layer) -> int:
    """How many units inside `layer` (attention heads) filter pruning sees; 0 for layers
    whose filters are output channels, or that tfprune does not prune.

    Args:
        layer: a built Keras layer.

    Returns:
        The unit count.

    Example:

    >>> attention = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4)
    >>> _ = attention(np.zeros((1, 2, 8)), np.zeros((1, 2, 8)))
    >>> unit_count(attention), unit_count(keras.layers.Dense(2))
    (3, 0)
    """
    spec = spec_for(layer) if isinstance(layer, keras.layers.Layer) else None
    if spec is None or not spec.internal_units:
        return 0
    return spec.filter_count(variable(layer, spec.weight).shape)


def supported_types() -> list[str]:
    """Names of the registered layer types, for error messages and docs.

    Returns:
        The class names, sorted.

    Example:

    >>> "Conv2D" in supported_types()
    True
    """
    return sorted(
        key.replace(">", ".").split(".")[-1] if isinstance(key, str) else key.__name__
        for key in _REGISTRY
    )


def variable(layer, name: str):
    """The layer's variable called `name` (e.g. "kernel"), or `None`.

    Looked up by variable name rather than attribute, because attributes such as
    `Dense.kernel` may return a derived tensor (LoRA, quantization) instead of the variable.
    A name with a slash (`"value/kernel"`) is the end of the variable's path: a variable of
    a sublayer, as in MultiHeadAttention's projections.

    Args:
        layer: a built Keras layer.
        name: the variable's name, or the end of its path.

    Returns:
        The `keras.Variable`, or `None`.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> tuple(variable(dense, "kernel").shape), variable(dense, "gamma")
    ((3, 2), None)
    """
    for var in layer.weights:
        if var.name == name or ("/" in name and var.path.endswith("/" + name)):
            return var
    return None


@dataclasses.dataclass(frozen=True)
class MaskLayout:
    """Where the variables a layer's mask covers sit in the one matrix the mask is.

    Most layers have one prunable weight, which is the matrix. A recurrent layer joins its
    recurrent kernel below its kernel (rows along the input axis), so that a mask covers its
    state too; a Bidirectional layer interleaves its two directions' columns gate by gate.

    Attributes:
        shape: the matrix's shape.
        kernels: `(variable, rows, columns)` per covered variable: `rows` a tuple of slices
            indexing the matrix's leading axes, `columns` the matrix columns (last axis) the
            variable's columns are, in order, or `None` for all of them.
        bias_shape: the shape of the per-filter bias laid out the same way, or `None`.
        biases: `(variable, columns)` per bias variable, as for kernels (last axis).

    Example:

    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> layout = mask_layout(lstm, spec_for(lstm))
    >>> layout.shape, [rows for _, rows, _ in layout.kernels]
    ((5, 12), [(slice(0, 2, None),), (slice(2, 5, None),)])
    """

    shape: tuple
    kernels: tuple
    bias_shape: tuple | None = None
    biases: tuple = ()

    def share(self, matrix, rows, columns):
        """One variable's part of `matrix` (a NumPy array or a tensor of `shape`).

        Args:
            matrix: an array of this layout's shape (or of `bias_shape`, with `rows` `()`).
            rows: the part's `rows`, as in `kernels`.
            columns: the part's `columns`.

        Returns:
            The part, shaped as the variable.
        """
        part = matrix[rows] if rows else matrix
        if columns is None:
            return part
        if isinstance(part, np.ndarray):
            return part[..., columns]
        return keras.ops.take(part, columns, axis=-1)

    def assemble(self, arrays, bias=False) -> np.ndarray:
        """The matrix (or the laid-out bias) from one array per variable, in layout order.

        Args:
            arrays: arrays shaped as the kernels' (or the biases') variables.
            bias: assemble the bias instead of the kernels. Defaults to `False`.

        Returns:
            An array of `shape` (or `bias_shape`).
        """
        parts = self.biases if bias else self.kernels
        matrix = np.zeros(self.bias_shape if bias else self.shape, np.float64)
        for array, part in zip(arrays, parts):
            rows, columns = ((), part[1]) if bias else part[1:]
            target = matrix[rows] if rows else matrix
            if columns is None:
                target[...] = array
            else:
                target[..., columns] = array
        return matrix


def mask_layout(layer, spec: LayerSpec) -> MaskLayout:
    """The `MaskLayout` of a built layer: its spec's `layout`, or its weight with the `joined`
    weights appended along the input axis, and its bias.

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A `MaskLayout`.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> layout = mask_layout(dense, spec_for(dense))
    >>> layout.shape, layout.bias_shape
    ((3, 2), (2,))
    """
    if spec.layout is not None:
        return spec.layout(layer)
    variables = [variable(layer, name) for name in (spec.weight, *spec.joined)]
    shape = tuple(variables[0].shape)
    bias = variable(layer, spec.bias) if spec.bias else None
    biases = () if bias is None else ((bias, None),)
    bias_shape = None if bias is None else tuple(bias.shape)
    if len(variables) == 1:
        return MaskLayout(shape, ((variables[0], (), None),), bias_shape, biases)
    axis = spec.input_axis % len(shape)
    kernels, start = [], 0
    for v in variables:
        rows = (*(slice(None),) * axis, slice(start, start + v.shape[axis]))
        kernels.append((v, rows, None))
        start += v.shape[axis]
    return MaskLayout(
        (*shape[:axis], start, *shape[axis + 1 :]), tuple(kernels), bias_shape, biases
    )


def pruned_variables(layer, spec: LayerSpec) -> list:
    """The variables a layer's mask covers (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A list of `keras.Variable`s.

    Example:

    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> [v.name for v in pruned_variables(lstm, spec_for(lstm))]
    ['kernel', 'recurrent_kernel']
    """
    return [v for v, _, _ in mask_layout(layer, spec).kernels]


def pruned_shape(layer, spec: LayerSpec) -> tuple:
    """The shape of the matrix a layer's mask covers (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A shape tuple.

    Example:

    >>> lstm = keras.layers.LSTM(3)
    >>> lstm.build((None, 5, 2))
    >>> pruned_shape(lstm, spec_for(lstm))  # 2 inputs + 3 recurrent rows, 4 gates x 3 units
    (5, 12)
    """
    return mask_layout(layer, spec).shape


def pruned_array(layer, spec: LayerSpec) -> np.ndarray:
    """The values a layer's mask covers, as one matrix (see `MaskLayout`).

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A NumPy array of `pruned_shape(layer, spec)`.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> pruned_array(dense, spec_for(dense)).shape
    (3, 2)
    """
    layout = mask_layout(layer, spec)
    arrays = [keras.ops.convert_to_numpy(v) for v, _, _ in layout.kernels]
    if len(arrays) == 1 and layout.kernels[0][2] is None:
        return arrays[0]
    return layout.assemble(arrays).astype(arrays[0].dtype)


def pruned_bias(layer, spec: LayerSpec) -> np.ndarray | None:
    """The per-filter bias laid out as the mask's columns (see `MaskLayout`), or `None`.

    Args:
        layer: a built layer of `spec`'s type.
        spec: its `LayerSpec`.

    Returns:
        A NumPy array of the layout's `bias_shape`, or `None` for a layer without a bias.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> dense.build((None, 3))
    >>> pruned_bias(dense, spec_for(dense))
    array([0., 0.], dtype=float32)
    """
    layout = mask_layout(layer, spec)
    if not layout.biases:
        return None
    arrays = [keras.ops.convert_to_numpy(v) for v, _ in layout.biases]
    if len(arrays) == 1 and layout.biases[0][1] is None:
        return arrays[0]
    return layout.assemble(arrays, bias=True).astype(arrays[0].dtype)
