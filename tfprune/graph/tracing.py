"""Tracing: custom layers written out as the sublayers and `keras.ops` their `call` runs.

Calling a layer's `call` (not `__call__`) on symbolic Keras tensors records what it computes
as nodes of a functional graph: each sublayer it calls and each `keras.ops` function. A copy
of the model in which a custom layer's node is replaced by those nodes computes the same
function, and tfprune sees into it: the channels its sublayers write, the FLOPs of its ops.

What the `call` does besides calling sublayers and `keras.ops` is written out too:

- variables it reads directly (`ops.matmul(x, self.kernel)`) become `tfprune.layers.traced.
  Weight` layers, trainable weights of the written-out model;
- sizes it reads from shapes that are unknown until the model runs (`ops.shape(x)[0]`, the
  batch) become `Dimension` layers, and the `keras.ops` calls they feed `ShapedCall` layers,
  so the written-out model takes any batch size and sequence length the layer took;
- custom layers it calls are traced in turn; Keras' own layers, layers the registry knows,
  nested models, and layers without weights whose `call` takes `training` (stochastic depth,
  random augmentation: they may act differently in training) stay whole.

Each layer is traced once per model even when called several times (a block shared across
depth, as ALBERT's), so the written-out copies share weights as the calls did. Its sublayers
are named after it: `"<layer>_<sublayer>"`.

A layer is written out only if its trace computes what it computes: before writing it, a
standalone copy is traced and compared with the layer on random inputs at two batch sizes
and two lengths of every other unknown axis. A layer whose `call` branches on tensor values,
reads a weight other than through an attribute, or differs is left whole, with the reason
(`Tracer.refused`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re

import keras
import numpy as np

from tfprune.core import keras_internals, modelwalk
from tfprune.core.inference import state_kept
from tfprune.layers import registry
from tfprune.layers.traced import (
    CREATORS,
    KERAS_OPS,
    PORTABLE,
    Dimension,
    ShapedCall,
    Weight,
    call_template,
)

# Largest difference, relative to the outputs' scale, between a layer and its trace.
TOLERANCE = 1e-5
# Batch sizes and lengths of other unknown axes the standalone check runs at.
CHECK_SIZES = ((2, 5), (3, 7))


def is_custom(layer) -> bool:
    """Whether `layer` is a layer class defined outside Keras and tfprune (a user's,
    KerasHub's).

    Args:
        layer: any object.

    Returns:
        True for a `keras.layers.Layer` that is not a model and not one of Keras' or
        tfprune's own.

    Example:

    >>> is_custom(keras.layers.Dense(2))
    False
    """
    return (
        isinstance(layer, keras.layers.Layer)
        # A wrapper (tfprune's masks, Keras' TimeDistributed) is seen through to its layer.
        and not isinstance(layer, (keras.Model, keras.layers.Wrapper))
        and not type(layer).__module__.startswith(("keras.", "tfprune.layers."))
    )


def kept_whole(layer) -> bool:
    """Whether a layer met inside a traced `call` stays one node instead of being traced.

    Keras' own layers, models, layers the registry has a rule for or an unfolding of, and
    custom layers without weights whose `call` takes `training` stay whole.

    Args:
        layer: a layer.

    Returns:
        True if it stays whole.

    Example:

    >>> kept_whole(keras.layers.Dense(2))
    True
    """
    if not is_custom(layer) or registry.unfolds(layer):
        return True
    if registry.has_rule(layer) and registry.refusal_reason(layer) is None:
        return True
    return not layer.weights and "training" in inspect.signature(layer.call).parameters


def passes_through(layer, inputs) -> bool:
    """Whether a layer kept whole for acting differently in training (stochastic depth,
    random augmentation) returns its input unchanged in inference: its channels then pass
    through it (the pruned channels are zero either way; in training it scales or drops
    whole examples).

    Args:
        layer: a custom layer without weights.
        inputs: the symbolic inputs of one of its calls.

    Returns:
        True if its inference `call` is the identity on its first input.

    Example:

    >>> class DropPath(keras.layers.Layer):
    ...     def call(self, x, training=None):
    ...         return x * 0.5 if training else x
    >>> passes_through(DropPath(), [keras.Input((4,))])
    True
    """
    if not is_custom(layer) or layer.weights or len(inputs) != 1:
        return False
    x = keras.Input(batch_shape=inputs[0].shape, dtype=inputs[0].dtype)
    try:
        return layer.call(x, training=False) is x
    except Exception:  # the user's code on symbolic tensors: not a pass-through we can see
        return False


def _is_runtime_size(value) -> bool:
    """A size a trace reads from a shape when the model runs: an integer scalar tensor."""
    return isinstance(value, keras.KerasTensor) and value.shape == () and "int" in str(value.dtype)


def _symbolic(value) -> bool:
    return isinstance(value, keras.KerasTensor)


def _first_tensor(args, kwargs):
    return next((v for v in keras.tree.flatten((args, kwargs)) if _symbolic(v)), None)


def _direct_variables(layer) -> dict:
    """`{attribute: variable}` for the variables `layer` holds itself (not its sublayers')."""
    inner = {id(v) for sub in keras_internals.sublayers(layer) for v in sub.weights}
    return {
        name: value
        for name, value in vars(layer).items()
        if isinstance(value, keras.Variable) and id(value) not in inner
    }


def _sanitized(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name).strip("_")


@contextlib.contextmanager
def attributes_kept(layer):
    """Inside the block, a layer's attributes may be swapped or assigned (a trace puts
    `Weight` outputs in place of its variables; its `call` may keep its last scores);
    afterwards they are as they were.

    Args:
        layer: a layer.

    Yields:
        Nothing.

    Example:

    >>> layer = keras.layers.Dense(2)
    >>> with attributes_kept(layer):
    ...     layer.note = "kept for the call"
    >>> hasattr(layer, "note")
    False
    """
    attributes = dict(vars(layer))
    try:
        yield
    finally:
        for attribute in set(vars(layer)) - set(attributes):
            object.__delattr__(layer, attribute)
        for attribute, value in attributes.items():
            object.__setattr__(layer, attribute, value)


class _Block:
    """One custom layer traced. Its own `call` runs (on symbolic tensors), but each layer it
    calls that stays whole is a copy named after the block, and each variable it reads
    directly a `Weight` layer, so the written-out graph shares nothing with the original.

    `shared` maps `id(layer)` to the copy already made of it elsewhere in the model (a layer
    two blocks call, or the model calls too): the copies keep sharing it. `taken` holds the
    names already in use in the model.
    """

    def __init__(self, original, shared=None, taken=()):
        self.original = original
        self.prefix_of = {}  # id(sublayer) -> the name its copy or its trace's layers get
        self.taken = set(taken)
        self._name_inside(original, original.name)
        self.shared = {} if shared is None else shared
        self.copies = {}  # id(sublayer kept whole) -> (its copy, the sublayer)
        self.whole = {}  # id(custom sublayer whose trace failed) -> why, in words
        self.weights = {}  # id(variable read directly) -> (Weight layer, the variable)
        self.own = set()  # ids of the layers the trace made (copies, Weights, sizes)
        self.counts = {}
        self.anchors = []  # the first input of each `call` being traced, innermost last
        self.kept_depth = 0  # > 0 while a layer kept whole runs (Keras' own code)

    def _name_inside(self, layer, prefix):
        """`<prefix>_<name>` for each sublayer, `<that>_<name>` for its own, and so on."""
        for child in keras_internals.child_layers(layer):
            if id(child) not in self.prefix_of:
                # EfficientNet's blocks already name their parts after themselves.
                own = child.name.startswith(f"{prefix.rstrip('_')}_")
                base = child.name if own else f"{prefix}_{child.name}"
                name, copies = base, 0
                # Names meet across levels (a block's "attention_dropout" and its
                # "attention"'s own "dropout") and with the rest of the model.
                while name in self.taken:
                    copies += 1
                    name = f"{base}_{copies}"
                self.taken.add(name)
                self.prefix_of[id(child)] = name
                self._name_inside(child, name)

    def trace(self, args, kwargs):
        """The block's `call` on symbolic `args`, written out as nodes; the copies and
        `Weight` layers it made get the original weights."""
        with (
            keras_internals.intercepted_layer_calls(self._sublayer_call),
            _sized_ops(self),
        ):
            outputs = self._call(self.original, self.original.name, args, kwargs)
        for copy, sublayer in self.copies.values():
            if sublayer.weights:
                copy.set_weights(sublayer.get_weights())
        for weight, variable in self.weights.values():
            weight.value.assign(variable)
        return outputs

    def name(self, kind: str) -> str:
        """A fresh name for a layer the trace adds (`Dimension`, `ShapedCall`)."""
        self.counts[kind] = self.counts.get(kind, -1) + 1
        return f"{self.original.name}_{kind}_{self.counts[kind]}"

    def made(self, layer):
        """`layer`, noted as made by the trace (a layer it may call)."""
        self.own.add(id(layer))
        return layer

    def _weight(self, variable, name):
        """The `Weight` layer standing for a variable the block reads directly."""
        if id(variable) not in self.weights:
            weight = Weight(
                variable.shape,
                value_dtype=variable.dtype,
                trainable_value=variable.trainable,
                regularizer=getattr(variable, "regularizer", None),
                constraint=variable.constraint,
                name=name,
            )
            weight.build(None)
            self.weights[id(variable)] = (self.made(weight), variable)
        return self.weights[id(variable)][0]

    def _call(self, layer, prefix, args, kwargs):
        anchor = _first_tensor(args, kwargs)
        with attributes_kept(layer):
            for attribute, variable in _direct_variables(layer).items():
                weight = self._weight(variable, f"{prefix}_{_sanitized(attribute)}")
                object.__setattr__(layer, attribute, weight(anchor))
            self.anchors.append(anchor)
            try:
                return layer.call(*args, **kwargs)
            finally:
                self.anchors.pop()

    def _sublayer_call(self, layer, args, kwargs):
        if self.kept_depth or id(layer) in self.own:
            return NotImplemented
        if id(layer) not in self.prefix_of:
            if _first_tensor(args, kwargs) is None:
                return NotImplemented  # on values, not on the trace's tensors
            # A layer the block does not hold (made in `call`, or a global): the written-out
            # model would share it, and it would gain the trace's nodes.
            raise ValueError(
                f"it calls layer '{layer.name}' ({type(layer).__name__}), which it does not hold"
            )
        if not kept_whole(layer) and id(layer) not in self.whole:
            try:
                return self._call(layer, self.prefix_of[id(layer)], args, kwargs)
            except Exception as error:  # the user's code on symbolic tensors
                # What it wrote before failing feeds nothing: the graph leaves it out.
                self.whole[id(layer)] = f"{type(layer).__name__} '{layer.name}': {summary(error)}"
        self.kept_depth += 1  # copying (a nested model rebuilds itself) is Keras' own work
        try:
            if id(layer) not in self.copies:
                copy = self.shared.get(id(layer)) or _copy_named(layer, self.prefix_of[id(layer)])
                self.shared[id(layer)] = copy
                self.copies[id(layer)] = (self.made(copy), layer)
        finally:
            self.kept_depth -= 1
        if _first_tensor(args, kwargs) is None:
            # Called on values the block computed once (KerasHub's position ids, made in
            # `build`): as nodes, so that the copy's output is a node, not a constant.
            args, kwargs = keras.tree.map_structure(self._as_node, (args, kwargs))
        # Arguments left at None are the defaults; a subclass's extra ones (KerasHub's
        # attention caches) would trip the base class's symbolic call.
        args, kwargs = _positional(layer, args, {k: v for k, v in kwargs.items() if v is not None})
        self.kept_depth += 1
        try:
            return self.copies[id(layer)][0](*args, **kwargs)
        finally:
            self.kept_depth -= 1

    def _as_node(self, value):
        """A constant array as a node of the trace (anchored to the block's input)."""
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            return value
        array = keras.ops.convert_to_numpy(value)
        template = {"args": [array.tolist()], "kwargs": {"dtype": str(array.dtype)}}
        constant = ShapedCall("convert_to_tensor", template, name=self.name("constant"))
        return self.made(constant)([self.anchors[-1]])


def _positional(layer, args, kwargs):
    """Arguments given by keyword (`attention(query=x, value=x)`) as positions, as far as
    the call's leading parameters go: a wrapper tfprune puts around the copy takes its
    inputs by position."""
    parameters = list(inspect.signature(layer.call).parameters.values())
    args, kwargs = list(args), dict(kwargs)
    for parameter in parameters[len(args) :]:
        if parameter.kind is not parameter.POSITIONAL_OR_KEYWORD or not _symbolic(
            kwargs.get(parameter.name)
        ):
            break
        args.append(kwargs.pop(parameter.name))
    return tuple(args), kwargs


def _copy_named(layer, name):
    """A fresh copy of a layer kept whole inside a traced block, under `name`."""
    if isinstance(layer, keras.Model):
        copy = keras.models.clone_model(layer)
        copy.name = name
        return copy
    return modelwalk.clone_layer(layer, {**layer.get_config(), "name": name})


@contextlib.contextmanager
def _sized_ops(block):
    """`keras.ops` as a trace of `block` needs it: `shape` gives `Dimension` tensors for
    unknown sizes, a function given such a size becomes a `ShapedCall`, and so does a
    creator (`CREATORS`) given no tensor at all (anchored to the block's input) and a
    function Keras computes wrongly at such sizes (`PORTABLE`); and
    `keras.config.backend()` names no backend whose own functions the code would call."""

    def shape(x):
        if block.kept_depth or not _symbolic(x):
            return KERAS_OPS["shape"](x)
        return tuple(
            size
            if size is not None
            else block.made(Dimension(axis, name=block.name("dimension")))(x)
            for axis, size in enumerate(x.shape)
        )

    def sized(function_name, function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            leaves = keras.tree.flatten(_slices((args, kwargs)))
            created = function_name in CREATORS and not any(_symbolic(v) for v in leaves)
            portable = function_name in PORTABLE and any(_symbolic(v) for v in leaves)
            sized = any(_is_runtime_size(v) for v in leaves)
            if block.kept_depth or not (created or portable or sized):
                return function(*args, **kwargs)
            template, tensors = call_template(args, kwargs, _symbolic)
            layer = block.made(ShapedCall(function_name, template, name=block.name(function_name)))
            return layer(tensors or [block.anchors[-1]])

        return call

    replacements = {
        function_name: sized(function_name, function)
        for function_name, function in KERAS_OPS.items()
        if inspect.isfunction(function) and function_name != "shape"
    }
    replacements["shape"] = shape
    real_backend = keras.config.backend

    def backend():
        # Code that calls TensorFlow itself on the TensorFlow backend (KerasHub's
        # workarounds: `tf.gather`, `tf.linalg.band_part`) has a `keras.ops` branch for
        # the others, which a trace can record.
        return real_backend() if block.kept_depth else "numpy"

    indexing = keras.KerasTensor.__getitem__

    def get_item(tensor, key):  # `x[:length]`, with a length known when the model runs
        if block.kept_depth or not any(
            _is_runtime_size(v) for v in keras.tree.flatten(_slices(key))
        ):
            return indexing(tensor, key)
        return replacements["get_item"](tensor, key)

    with (
        keras_internals.patched_attributes(keras.ops, replacements),
        keras_internals.patched_attributes(keras.config, {"backend": backend}),
        keras_internals.patched_attributes(keras.KerasTensor, {"__getitem__": get_item}),
    ):
        yield


def _slices(structure):
    """`structure` with its slices opened up, so that the sizes in them can be looked for."""
    if isinstance(structure, slice):
        return [structure.start, structure.stop, structure.step]
    if isinstance(structure, (list, tuple)):
        return [_slices(item) for item in structure]
    if isinstance(structure, dict):
        return {key: _slices(item) for key, item in structure.items()}
    return structure


def _random_value(tensor, batch, length, rng):
    shape = [
        (batch if axis == 0 else length) if size is None else size
        for axis, size in enumerate(tensor.shape)
    ]
    dtype = str(tensor.dtype)
    if "int" in dtype or "bool" in dtype:
        return np.ones(shape, dtype)
    return (0.5 * rng.standard_normal(shape)).astype(dtype)


def _value_of(values, argument):
    return values[id(argument)] if _symbolic(argument) else argument


def _operation_kinds(model) -> list[str]:
    """The kinds of operation a written-out graph runs, in order (not their names)."""
    return [type(call.operation).__name__ for call in keras_internals.node_calls(model)]


def _captured_variables(model) -> list[str]:
    """Variables the trace recorded as constants of a node (read other than through an
    attribute): they would not be weights of the written-out model."""
    found = []
    for call in keras_internals.node_calls(model):
        for value in keras_internals.array_arguments(call.arguments):
            if isinstance(value, keras.Variable):
                found.append(value.path)
    return found


def standalone(layer, args, kwargs):
    """`layer`'s call written out as a model of its own: a fresh trace on inputs shaped
    like the symbolic tensors among `args` and `kwargs`.

    Args:
        layer: a built custom layer.
        args: symbolic positional arguments of a call of it.
        kwargs: its symbolic keyword arguments.

    Returns:
        `(model, inputs)`: the model takes its inputs in the order of `inputs`, which maps
        `id(tensor in args or kwargs)` to `(that tensor, the model's input)`.

    Raises:
        Exception: whatever the layer's code raises on symbolic tensors.

    Example:

    >>> class Double(keras.layers.Layer):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.dense = keras.layers.Dense(2, name="dense")
    ...     def call(self, x):
    ...         return 2.0 * self.dense(x)
    >>> layer = Double(name="double")
    >>> _ = layer(np.zeros((1, 3)))
    >>> model, _ = standalone(layer, (keras.Input((3,)),), {})
    >>> [layer.name for layer in model.layers[1:]]
    ['double_dense']
    """
    inputs = {}

    def placeholder(value):
        if not _symbolic(value):
            return value
        inputs.setdefault(
            id(value), (value, keras.Input(batch_shape=value.shape, dtype=value.dtype))
        )
        return inputs[id(value)][1]

    outputs = _Block(layer).trace(*keras.tree.map_structure(placeholder, (args, kwargs)))
    flat = [t for t in keras.tree.flatten(outputs) if _symbolic(t)]
    return keras.Model([i for _, i in inputs.values()], flat), inputs


def check_trace(layer, args, kwargs) -> str | None:
    """Why `layer`, called with `args` and `kwargs`, cannot be written out, or `None` if it can.

    A fresh copy is traced into a model of its own and compared with `layer` on random
    inputs (`CHECK_SIZES`), in inference mode; `layer` is left as it was.

    Args:
        layer: a built custom layer.
        args: the symbolic positional arguments of one of its calls.
        kwargs: its symbolic keyword arguments.

    Returns:
        A reason in words, or `None`.

    Example:

    >>> class Scale(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.scale = self.add_weight(shape=shape[-1:], initializer="ones")
    ...     def call(self, x):
    ...         return x * self.scale
    >>> layer = Scale()
    >>> _ = layer(np.zeros((1, 3)))
    >>> print(check_trace(layer, (keras.Input((3,)),), {}))
    None
    """
    try:
        model, inputs = standalone(layer, args, kwargs)
        if "training" in inspect.signature(layer.call).parameters:
            training, _ = standalone(layer, args, {**kwargs, "training": True})
            if _operation_kinds(training) != _operation_kinds(model):
                return "it acts otherwise in training (its call branches on `training`)"
    except Exception as error:  # any failure of the user's code on symbolic tensors
        return f"its call cannot run on symbolic tensors ({summary(error)})"
    captured = _captured_variables(model)
    if captured:
        return f"it reads weights other than through an attribute ({', '.join(captured)})"
    return _mismatch(layer, model, inputs, args, kwargs)


def _mismatch(layer, model, inputs, args, kwargs) -> str | None:
    """How `model` (`layer`'s standalone trace) computes otherwise than `layer` on random
    inputs at each of `CHECK_SIZES`, or `None`."""
    rng = np.random.default_rng(0)
    for batch, length in CHECK_SIZES:
        values = {
            key: _random_value(original, batch, length, rng)
            for key, (original, _) in inputs.items()
        }
        concrete = keras.tree.map_structure(functools.partial(_value_of, values), (args, kwargs))
        try:
            with state_kept(layer), attributes_kept(layer):
                expected = layer(*concrete[0], **{**concrete[1], "training": False})
            actual = model([values[key] for key in inputs], training=False)
        except Exception as error:
            return f"it fails at batch {batch}, length {length} ({summary(error)})"
        expected = [t for t in keras.tree.flatten(expected) if t is not None]
        actual = keras.tree.flatten(actual)
        if len(expected) != len(actual):
            return "its trace returns another number of tensors than its call"
        for e, a in zip(expected, actual):
            e, a = keras.ops.convert_to_numpy(e), keras.ops.convert_to_numpy(a)
            if e.shape != a.shape:
                return f"its trace gives an output of shape {a.shape} where it gives {e.shape}"
            scale = max(1.0, float(np.max(np.abs(e))) if e.size else 1.0)
            difference = float(np.max(np.abs(e.astype(np.float64) - a))) if e.size else 0.0
            if not difference <= TOLERANCE * scale:
                return (
                    f"its trace differs from it by {difference:.2g} (it branches on values, "
                    "or acts on something the trace does not see)"
                )
    return None


def summary(error) -> str:
    """An exception in one line: its type and the first line of its message, without
    Keras' terminal colours.

    Args:
        error: an exception.

    Returns:
        The line.

    Example:

    >>> summary(ValueError("bad shape"))
    'ValueError: bad shape'
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}"


def traceable(layer) -> bool:
    """Whether `prune` writes `layer` out: a custom layer (`is_custom`) holding layers that
    prune (at any depth) or weights of its own (a LayerScale, a position table), of a type
    the registry has no rule for or whose rule refuses this instance (a KerasHub decoder
    with cross-attention).

    Args:
        layer: a layer.

    Returns:
        True or False.

    Example:

    >>> traceable(keras.layers.Dense(2))
    False
    """
    return (
        is_custom(layer)
        and (not registry.has_rule(layer) or registry.refusal_reason(layer) is not None)
        and (
            bool(_direct_variables(layer))
            or any(registry.is_prunable(inner) for inner in keras_internals.sublayers(layer))
        )
    )


class Tracer:
    """Writes custom layers out while `keras.models.clone_model` copies a model.

    Pass `clone_function` to `clone_model`; a layer that `select` accepts is traced at each
    of its calls (checked first by `check_trace`); with `unfoldings`, a layer the registry
    has an unfolding for (`tfprune.layers.register_unfolding`) is written out by it instead; every
    other layer is copied. Afterwards, `traced` holds the ids of the layers written out
    (whose weights went with them) and `refused` the names of those that could not be, with
    why.

    Args:
        select: predicate `layer -> bool`: which layers of the model to trace.
        unfoldings: whether registered unfoldings apply. Defaults to `False`.

    Example:

    >>> class Block(keras.layers.Layer):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.inner = keras.layers.Dense(4, name="inner")
    ...     def call(self, x):
    ...         return self.inner(x) + x
    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, Block(name="block")(inputs))
    >>> tracer = Tracer(is_custom)
    >>> twin = keras.models.clone_model(model, clone_function=tracer.clone_function)
    >>> [layer.name for layer in twin.layers[1:]], tracer.refused
    (['block_inner'], {})
    """

    def __init__(self, select, unfoldings=False, names=()):
        self.select = select
        self.unfoldings = unfoldings
        self.traced = set()
        self.refused = {}
        self.names = set(names)  # every name the copy's layers may not take
        self.shared = {}  # id(layer) -> its copy, wherever it is called
        self._blocks = {}
        self._refusals = {}  # id(layer) -> why its trace cannot stand for it

    @property
    def weighted(self) -> set:
        """Ids of the layers whose copies have their weights: those written out, and those
        a written-out layer calls (its copies got them from the trace)."""
        called = {i for block in self._blocks.values() for i in block.copies}
        return self.traced | called

    def clone_function(self, layer):
        """What `clone_model` calls `layer` as in the copy: a tracing function or a copy.

        Args:
            layer: a layer of the model being copied.

        Returns:
            A callable taking the layer's call arguments.
        """
        # A hand-written unfolding makes fresh layers at each call: a block shared across
        # depth (ALBERT's) is traced instead, so that its calls keep sharing weights.
        shared = len(keras_internals.calls_of(layer)) > 1
        if self.unfoldings and registry.unfolds(layer) and not shared:
            self.traced.add(id(layer))
            return functools.partial(self._unfold, layer, registry.unfolding_for(layer)(layer))
        if self.select(layer) or (self.unfoldings and registry.unfolds(layer)):
            return functools.partial(self._call, layer)
        if id(layer) not in self.shared:
            self.shared[id(layer)] = modelwalk.copy_layer(layer)
        return self.shared[id(layer)]

    def _unfold(self, layer, unfolding, *args, **kwargs):
        """A registered unfolding's form of the call; where it refuses the call (a block
        called with an explicit attention mask), the trace's."""
        try:
            return unfolding(*args, **kwargs)
        except ValueError:
            self.traced.discard(id(layer))
            return self._call(layer, *args, **kwargs)

    def _call(self, layer, *args, **kwargs):
        # Every call is checked: a block shared across depth may be called otherwise.
        if id(layer) not in self._refusals:
            reason = check_trace(layer, args, kwargs)
            if reason is not None:
                self._refusals[id(layer)] = reason
                self.refused[layer.name] = f"{type(layer).__name__}: {reason}"
        if id(layer) in self._refusals:
            self.traced.discard(id(layer))
            if id(layer) not in self.shared:
                self.shared[id(layer)] = modelwalk.copy_layer(layer)
            return self.shared[id(layer)](*args, **kwargs)
        if id(layer) not in self._blocks:
            self._blocks[id(layer)] = _Block(layer, self.shared, self.names)
            self.traced.add(id(layer))
        return self._blocks[id(layer)].trace(args, kwargs)


def written_out(model, select=traceable, unfoldings=False):
    """A copy of `model` in which the layers `select` accepts are written out (traced), and
    the tracer that did it (its `refused` says which could not be, and why).

    Args:
        model: a built Keras 3 functional or Sequential model (nested models allowed; a
            Sequential model comes back functional).
        select: which layers to trace. Defaults to `traceable`.
        unfoldings: whether registered unfoldings apply too. Defaults to `False`.

    Returns:
        `(copy, tracer)`; the copy is `model` itself when nothing was written out, and never
        shares a weight with `model` otherwise.

    Example:

    >>> class Scaled(keras.layers.Layer):
    ...     def build(self, shape):
    ...         self.dense = keras.layers.Dense(shape[-1], name="dense")
    ...         self.scale = self.add_weight(shape=shape[-1:], initializer="ones")
    ...     def call(self, x):
    ...         return self.dense(x) * self.scale
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, Scaled(name="scaled")(inputs))
    >>> copy, tracer = written_out(model)
    >>> [layer.name for layer in copy.layers[1:]]
    ['scaled_dense', 'scaled_scale']
    """
    tracer = Tracer(select, unfoldings, [layer.name for layer in modelwalk.all_layers(model)])
    wanted = [
        layer
        for layer in modelwalk.all_layers(model)
        if select(layer) or (unfoldings and registry.unfolds(layer))
    ]
    if not wanted:
        return model, tracer
    graph = keras_internals.graph_of(model)
    copy = keras.models.clone_model(graph, clone_function=tracer.clone_function, recursive=True)
    if not tracer.traced:
        return model, tracer
    modelwalk.copy_weights(model, copy, skip=tracer.weighted)
    return copy, tracer
