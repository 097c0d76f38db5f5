"""Per-layer-type knowledge: which weight is pruned and which of its axes is a filter.

Everything else in tfprune asks this registry instead of testing layer types itself, so
supporting a new layer type is one `register_layer` (or `register_channel_rule`) call. The
rules for Keras' own layers are in `tfprune.layers.builtin_rules`.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import ChannelRule, LayerSpec
from tfprune.layers.traced import KERAS_OPS, ShapedCall, fill_template, is_placeholder

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
    >>> channel_rule(Scale()).kind == "passthrough"
    True
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
    variable's unit axis: what a `Units.slicer` returns besides the config.

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
    kernel = named_variable(layer, "kernel")  # built: its input axis holds channels per group
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
    return spec.filter_count(named_variable(layer, spec.weight).shape)


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
