"""Calling a layer with some of its variables read as other values, on every backend."""

from __future__ import annotations


def call_with_values(layer, values: dict, *args, **kwargs):
    """Call `layer` with some of its variables read as other values, keeping the updates its
    call makes to the others (BatchNormalization's statistics, a dropout seed).

    It goes through `Layer.stateless_call`, which maps every variable of the layer, so it
    also works inside Keras' stateless JAX train step, where a nested `StatelessScope` that
    maps only some variables would read the others' purged values.

    Args:
        layer: a built Keras layer or model.
        values: `{id(variable): value}` for the variables to read differently (a weight
            times its mask).
        *args: the layer's call arguments.
        **kwargs: the layer's call keyword arguments (`training`).

    Returns:
        The layer's outputs.

    Example:

    >>> dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    >>> x = np.ones((1, 2), "float32")
    >>> _ = dense(x)
    >>> halved = {id(dense.kernel): 0.5 * dense.kernel.value}
    >>> keras.ops.convert_to_numpy(call_with_values(dense, halved, x)).tolist()
    [[1.0]]
    """
    trainable = [values.get(id(v), v.value) for v in layer.trainable_variables]
    non_trainable = [values.get(id(v), v.value) for v in layer.non_trainable_variables]
    outputs, updated = layer.stateless_call(trainable, non_trainable, *args, **kwargs)
    for variable, before, after in zip(layer.non_trainable_variables, non_trainable, updated):
        # Only what the call changed: an attack's gradient trace must leave no value behind.
        if id(variable) not in values and after is not before:
            variable.assign(after)
    return outputs
