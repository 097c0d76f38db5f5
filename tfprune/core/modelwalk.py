"""Walking a model's layers: flattened, by type, or side by side with a clone of it."""

from __future__ import annotations

import inspect

import keras

from tfprune.core import keras_internals


def functional_of(model):
    """The functional graph behind a model (a built Sequential model keeps one inside).

    Args:
        model: a built functional or Sequential model.

    Returns:
        A functional model with the same layers, inputs and outputs.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> [tuple(t.shape) for t in functional_of(model).inputs]
    [(None, 4)]
    """
    return keras_internals.graph_of(model)


def trained_model(model):
    """The model a training wrapper trains, through any number of wrappers.

    `AdversarialTraining`, `Distillation` and tfprune's other training models expose the
    model they train as `inner_model`; they may wrap each other.

    Args:
        model: a model, or a training wrapper around one.

    Returns:
        The innermost `inner_model`, or `model` itself.

    Example:

    >>> plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> trained_model(plain) is plain
    True
    """
    while getattr(model, "inner_model", None) is not None:
        model = model.inner_model
    return model


def weights_owner(layer):
    """The layer holding the weights: a wrapper's inner layer, else the layer itself.

    Args:
        layer: a Keras layer, possibly a `keras.layers.Wrapper`.

    Returns:
        The layer whose variables are the weights.

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> weights_owner(keras.layers.TimeDistributed(dense)) is dense
    True
    """
    return layer.layer if isinstance(layer, keras.layers.Wrapper) else layer


def clone_layer(layer, config=None, layer_class=None):
    """A fresh, unbuilt layer rebuilt from a config.

    The user's own Lambda layers are trusted here: they come from the model in memory,
    not from a file, so Keras' safe mode (which refuses to rebuild Python lambdas) is off.
    A config holding entries the class's constructor refuses is rebuilt from the entries
    its constructor chain takes: KerasHub's `ViTPatchingAndEmbedding` reports the
    `num_patches` it computes, and a custom layer whose `__init__` takes no `**kwargs` is
    given Keras' base entries (`name`, `trainable`, `dtype`) that it never passes on. The
    copy then gets the original's name, trainability and dtype policy, and its `get_config`
    reports only what the constructor takes, so that a `.keras` file holding it loads.

    Args:
        layer: the layer to copy.
        config: the config to build from. Defaults to `layer.get_config()`.
        layer_class: the class to build. Defaults to `type(layer)`.

    Returns:
        A new layer.

    Raises:
        ValueError: for a layer that cannot be rebuilt from its config (its `get_config`
            lacks constructor arguments, or cannot describe them), naming the layer, its
            class and what to add.
        TypeError: for a config the constructor accepts but fails on.

    Example:

    >>> clone_layer(keras.layers.Dense(3, name="fc")).units
    3
    """
    layer_class = layer_class or type(layer)
    try:
        config = layer.get_config() if config is None else config
    except NotImplementedError as error:
        raise ValueError(_not_copyable(layer, layer_class, "it has no get_config()")) from error
    except Exception as error:  # the class's own bug (KerasHub's Llama block on some versions)
        why = f"its get_config() fails ({type(error).__name__}: {error})"
        raise ValueError(_not_copyable(layer, layer_class, why)) from error
    with keras_internals.unsafe_deserialization():
        try:
            return layer_class.from_config(config)
        except TypeError:
            accepted, required = _constructor_arguments(layer_class)
            missing = sorted(required - set(config))
            if missing:
                raise ValueError(
                    _not_copyable(layer, layer_class, f"its get_config() lacks {missing}")
                ) from None
            if set(config) <= accepted:
                raise
            clone = layer_class.from_config({k: v for k, v in config.items() if k in accepted})
    _restore_base_settings(clone, layer, config, accepted)
    # Saved as its constructor takes it, so that a `.keras` file holding it loads.
    keras_internals.filter_config(clone, accepted)
    return clone


def copy_layer(layer):
    """`layer` for a new model: rebuilt from its config (see `clone_layer`), or, for a
    layer that holds no weights and cannot be rebuilt, a shallow copy of it (with no state,
    the two act alike, and the original gains no nodes).

    Args:
        layer: the layer to copy.

    Returns:
        A new layer.

    Raises:
        ValueError: for a layer with weights that cannot be rebuilt from its config,
            naming it and what its `get_config` lacks.

    Example:

    >>> dense = keras.layers.Dense(3, name="fc")
    >>> copy_layer(dense) is dense
    False
    """
    try:
        return clone_layer(layer)
    except ValueError:
        if layer.weights:
            raise
        return keras_internals.detached_copy(layer)


def _not_copyable(layer, layer_class, why: str) -> str:
    return (
        f"Cannot copy layer '{layer.name}' ({layer_class.__name__}): {why}. tfprune copies a "
        "model's layers from their configs; give the class a get_config() that returns every "
        "argument of its __init__ (and accept **kwargs in __init__, passing them to "
        "super().__init__)."
    )


def _restore_base_settings(clone, layer, config, accepted) -> None:
    """Give a layer built without Keras' base entries (a constructor without `**kwargs`)
    the name, trainability and dtype policy the config asked for."""
    if "name" not in accepted:
        clone.name = config.get("name", layer.name)
    if "trainable" not in accepted:
        clone.trainable = config.get("trainable", layer.trainable)
    if "dtype" not in accepted:
        clone.dtype_policy = layer.dtype_policy


def _constructor_arguments(layer_class) -> tuple[set, set]:
    """The keyword arguments the constructor chain of `layer_class` takes, and those it
    requires: each `__init__` along the class's bases (down to `keras.layers.Layer`) that
    the one before passes `**kwargs` on to."""
    accepted, required = set(), set()
    for cls in layer_class.__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        named = [p for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)][
            1:
        ]  # not `self`
        accepted |= {p.name for p in named}
        required |= {p.name for p in named if p.default is p.empty}
        if cls is keras.layers.Layer or not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return accepted, required


def all_layers(model):
    """Every layer of `model`, descending into nested models (which are not listed themselves).

    Args:
        model: a Keras model.

    Yields:
        Layers in `model.layers` order, depth first.

    Example:

    >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="inner_fc")])
    >>> outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2, name="head")])
    >>> [layer.name for layer in all_layers(outer)]
    ['inner_fc', 'head']
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        else:
            yield layer


def opaque_layers(model, readable) -> list[tuple]:
    """Custom layers that hold layers tfprune could prune, which it cannot reach inside them.

    A KerasHub `TransformerEncoder` is one layer in the model's graph with its attention and
    feed-forward `Dense` layers inside; `prune` sees only the outer layer.

    Args:
        model: a Keras model.
        readable: `layer -> bool`, whether tfprune can prune a layer of that type itself.

    Returns:
        `(layer, sorted type names of the prunable layers inside it)` pairs, for layers that
        are not readable themselves.

    Example:

    >>> inputs = keras.Input((3, 8))
    >>> attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")
    >>> model = keras.Model(inputs, attention(inputs, inputs))
    >>> [(layer.name, inside) for layer, inside in opaque_layers(
    ...     model, lambda layer: isinstance(layer, keras.layers.EinsumDense))]
    [('attention', ['EinsumDense'])]
    """
    found = []
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Wrapper) or readable(layer):
            continue
        inside = sorted({type(s).__name__ for s in keras_internals.sublayers(layer) if readable(s)})
        if inside:
            found.append((layer, inside))
    return found


def layers_of_type(model, cls) -> list:
    """All layers of type `cls` in `model`, nested models included, each once, in order.

    Args:
        model: a Keras model.
        cls: a layer class (or tuple of classes).

    Returns:
        A list of layers.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    >>> len(layers_of_type(model, keras.layers.Dense))
    2
    """
    found = {}
    for layer in model.layers:
        if isinstance(layer, cls):
            found[id(layer)] = layer
        elif isinstance(layer, keras.Model):
            found.update((id(inner), inner) for inner in layers_of_type(layer, cls))
    return list(found.values())


def _unwrapped(layer):
    """The layer that holds the weights: a tfprune wrapper's inner layer, else the layer."""
    return layer.layer if hasattr(layer, "masked_weights") else layer


def copy_weights(source, target, skip=()) -> None:
    """Copy weights from `source` into its clone `target`, level by level, by layer name.

    Either side may hold tfprune wrappers where the other holds the bare layer; a wrapper
    gives its weights with the mask applied.

    Args:
        source: the model to copy from.
        target: a clone of it (same layer names), possibly wrapped differently.
        skip: ids of `source` layers the clone has no twin of (layers written out as
            others, whose weights went with them). Defaults to none.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> twin = keras.models.clone_model(model)
    >>> copy_weights(model, twin)
    >>> bool(np.all(twin.layers[0].get_weights()[0] == model.layers[0].get_weights()[0]))
    True
    """
    by_name = {_unwrapped(layer).name: layer for layer in target.layers}
    for layer in source.layers:
        # Input layers are renamed by cloning, and hold nothing.
        if not layer.weights or id(layer) in skip:
            continue
        twin = by_name[_unwrapped(layer).name]
        if isinstance(layer, keras.Model):
            copy_weights(layer, twin, skip)
            continue
        weights = (
            layer.masked_weights() if hasattr(layer, "masked_weights") else layer.get_weights()
        )
        _unwrapped(twin).set_weights(weights)
