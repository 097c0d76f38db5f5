"""The layers a traced custom layer is written out with, besides its own sublayers.

`tfprune.trace` writes a custom layer out as the sublayers and `keras.ops` its `call` runs.
Three things in such a `call` are not layers of a functional graph, and become these:

- `Weight`: a variable the layer reads directly (`ops.matmul(x, self.kernel)`,
  `x + self.position_embedding`). Written out, it stays a trainable weight of the model.
- `Dimension`: a size the `call` read from a tensor's shape that is unknown until it runs
  (the batch, a sequence length): `ops.shape(x)[0]`.
- `ShapedCall`: a `keras.ops` function called with such a size among its arguments
  (`ops.reshape(x, (batch, length, heads, size))`, `ops.arange(length)`), which recomputes
  the size on every call.
"""

from __future__ import annotations

import keras
import numpy as np

# The functions as Keras defines them, before a trace wraps them (see tfprune.graph.tracing).
KERAS_OPS = {name: getattr(keras.ops, name) for name in dir(keras.ops) if not name.startswith("_")}
# `keras.ops` functions that create a tensor from sizes alone: a trace runs them when the
# model runs (so that what they feed stays in the graph), and what they make carries no
# channels.
CREATORS = (
    "arange", "ones", "zeros", "full", "empty", "eye", "tri", "tril", "triu", "linspace",
    "identity", "convert_to_tensor",
)  # fmt: skip
_TENSOR = "__tfprune_tensor__"
_SLICE = "__tfprune_slice__"
_ELLIPSIS = "__tfprune_ellipsis__"


@keras.saving.register_keras_serializable(package="tfprune")
class Weight(keras.layers.Layer):
    """One variable as a layer: it outputs its value, whatever it is called on.

    Args:
        shape: the variable's shape.
        value_dtype: its dtype. Defaults to `"float32"`.
        trainable_value: whether an optimizer trains it. Defaults to `True`.
        regularizer: its regularizer, as the layer it came from gave it. Defaults to `None`.
        constraint: its constraint, likewise. Defaults to `None`.
        **kwargs: `keras.layers.Layer` arguments (`name`, ...).

    Example:

    >>> weight = Weight((3,), name="scale")
    >>> weight.build(None)
    >>> _ = weight.value.assign([1.0, 2.0, 3.0])
    >>> keras.ops.convert_to_numpy(weight(np.zeros((2, 5)))).tolist()
    [1.0, 2.0, 3.0]
    """

    def __init__(
        self,
        shape,
        value_dtype="float32",
        trainable_value=True,
        regularizer=None,
        constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.value_shape = tuple(int(d) for d in shape)
        self.value_dtype = value_dtype
        self.trainable_value = bool(trainable_value)
        self.regularizer = keras.regularizers.get(regularizer)
        self.constraint = keras.constraints.get(constraint)

    def build(self, input_shape=None):
        self.value = self.add_weight(
            shape=self.value_shape,
            dtype=self.value_dtype,
            initializer="zeros",
            trainable=self.trainable_value,
            regularizer=self.regularizer,
            constraint=self.constraint,
            name="value",
        )

    def call(self, anchor):
        return keras.ops.convert_to_tensor(self.value)

    def compute_output_spec(self, anchor):
        """The variable's shape and dtype, whatever the anchor's."""
        return keras.KerasTensor(self.value_shape, dtype=self.value_dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "shape": self.value_shape,
            "value_dtype": self.value_dtype,
            "trainable_value": self.trainable_value,
            "regularizer": keras.regularizers.serialize(self.regularizer),
            "constraint": keras.constraints.serialize(self.constraint),
        }


@keras.saving.register_keras_serializable(package="tfprune")
class Dimension(keras.layers.Layer):
    """The size of one axis of a tensor, as an int32 scalar, read when the model runs.

    Args:
        axis: the axis.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> int(keras.ops.convert_to_numpy(Dimension(1)(np.zeros((2, 7, 3)))))
    7
    """

    def __init__(self, axis, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, x):
        return keras.ops.cast(KERAS_OPS["shape"](x)[self.axis], "int32")

    def compute_output_spec(self, x):
        """An int32 scalar."""
        return keras.KerasTensor((), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def is_placeholder(item) -> bool:
    """Whether a template entry stands for a tensor (see `call_template`).

    Args:
        item: an entry of a template.

    Returns:
        True for a tensor placeholder.

    Example:

    >>> is_placeholder({"__tfprune_tensor__": 0}), is_placeholder(3)
    (True, False)
    """
    return isinstance(item, dict) and set(item) == {_TENSOR}


def template_tensors(template) -> set:
    """The indices of the tensors a template names (a `ShapedCall` anchored to an input it
    does not read names none).

    Args:
        template: a template, as `call_template` makes it.

    Returns:
        A set of indices into the call's tensors.

    Example:

    >>> template_tensors({"args": [{"__tfprune_tensor__": 1}, 3], "kwargs": {}})
    {1}
    """
    if is_placeholder(template):
        return {template[_TENSOR]}
    items = template.values() if isinstance(template, dict) else template
    if not isinstance(template, (dict, list, tuple)):
        return set()
    return set().union(*(template_tensors(item) for item in items))


def fill_template(template, tensors):
    """`template` (as `call_template` makes it) with each placeholder replaced by its tensor.

    Args:
        template: a template or part of one.
        tensors: the tensors, in placeholder order.

    Returns:
        The filled structure.

    Example:

    >>> fill_template([1, {"__tfprune_tensor__": 0}], ["x"])
    [1, 'x']
    """

    def fill(item):
        if isinstance(item, dict) and set(item) == {_TENSOR}:
            return tensors[item[_TENSOR]]
        if isinstance(item, dict) and set(item) == {_SLICE}:
            return slice(*(fill(part) for part in item[_SLICE]))
        if isinstance(item, dict) and set(item) == {_ELLIPSIS}:
            return Ellipsis
        if isinstance(item, dict):
            return {k: fill(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(fill(v) for v in item)
        return item

    return fill(template)


def call_template(args, kwargs, is_tensor) -> tuple[dict, list]:
    """A call's arguments as a JSON-friendly template, and the tensors taken out of it.

    Args:
        args: positional arguments.
        kwargs: keyword arguments.
        is_tensor: predicate telling which leaves are tensors to take out.

    Returns:
        `(template, tensors)`; `ShapedCall(function, template)(tensors)` makes the call.

    Example:

    >>> template, tensors = call_template((1, (2, "x")), {}, lambda v: v == "x")
    >>> template["args"], tensors
    ([1, [2, {'__tfprune_tensor__': 0}]], ['x'])
    """
    tensors = []

    def strip(item):
        if is_tensor(item):
            tensors.append(item)
            return {_TENSOR: len(tensors) - 1}
        if isinstance(item, slice):  # an index, as `x[:length]` takes one
            return {_SLICE: [strip(item.start), strip(item.stop), strip(item.step)]}
        if item is Ellipsis:
            return {_ELLIPSIS: True}
        if isinstance(item, dict):
            return {k: strip(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [strip(v) for v in item]
        if isinstance(item, np.generic):
            return item.item()
        return item

    return {"args": strip(list(args)), "kwargs": strip(dict(kwargs))}, tensors


def _band(x, k, upper):
    """`x` with entries below (`upper`) or above the `k`-th diagonal set to zero, written
    with comparisons of positions, which run at sizes known only when the model runs (Keras'
    own `triu`/`tril` do not on TensorFlow; KerasHub works around it with TensorFlow's
    `band_part`)."""
    shape = KERAS_OPS["shape"](x)
    rows = keras.ops.expand_dims(keras.ops.arange(shape[-2]), -1)
    columns = keras.ops.expand_dims(keras.ops.arange(shape[-1]), 0)
    keep = (columns - rows >= k) if upper else (columns - rows <= k)
    return keras.ops.where(keep, x, keras.ops.zeros_like(x))


def triu(x, k=0):
    """`keras.ops.triu` at any size known only when the model runs.

    Args:
        x: a tensor of at least two axes.
        k: the diagonal above which entries stay. Defaults to 0.

    Returns:
        The upper triangle of `x`.

    Example:

    >>> keras.ops.convert_to_numpy(triu(np.ones((3, 3)), 1)).tolist()
    [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    return _band(x, k, upper=True)


def tril(x, k=0):
    """`keras.ops.tril` at any size known only when the model runs.

    Args:
        x: a tensor of at least two axes.
        k: the diagonal below which entries stay. Defaults to 0.

    Returns:
        The lower triangle of `x`.

    Example:

    >>> keras.ops.convert_to_numpy(tril(np.ones((2, 2)))).tolist()
    [[1.0, 0.0], [1.0, 1.0]]
    """
    return _band(x, k, upper=False)


# Functions a trace computes its own way: what Keras' own does not at unknown sizes.
PORTABLE = {"triu": triu, "tril": tril}


@keras.saving.register_keras_serializable(package="tfprune")
class ShapedCall(keras.layers.Layer):
    """A `keras.ops` function called on tensors and sizes known only when the model runs.

    Args:
        function: the name of the `keras.ops` function (`"reshape"`, `"arange"`, ...).
        template: its arguments, as `call_template` gives them.
        **kwargs: `keras.layers.Layer` arguments.

    Example:

    >>> template, _ = call_template(({"t": 0},), {}, lambda v: False)
    >>> template = {"args": [{"__tfprune_tensor__": 0}, [-1, {"__tfprune_tensor__": 1}]],
    ...             "kwargs": {}}
    >>> reshape = ShapedCall("reshape", template)
    >>> tuple(reshape([np.zeros((2, 6)), np.int32(3)]).shape)
    (4, 3)
    """

    def __init__(self, function, template, **kwargs):
        super().__init__(**kwargs)
        if function not in KERAS_OPS:
            raise ValueError(f"ShapedCall: keras.ops has no function '{function}'.")
        self.function = function
        self.template = template

    def call(self, tensors):
        args = fill_template(self.template["args"], list(tensors))
        kwargs = fill_template(self.template["kwargs"], list(tensors))
        return PORTABLE.get(self.function, KERAS_OPS[self.function])(*args, **kwargs)

    def get_config(self):
        return {**super().get_config(), "function": self.function, "template": self.template}
