"""`tfprune.core.gradients.value_and_gradient` on TensorFlow: a gradient tape, which also
works inside a compiled `train_step`."""

from __future__ import annotations

import tensorflow as tf


def value_and_gradient(function, x):
    """`function(x)` and the gradient of the sum of its value with respect to `x` (see
    `gradients`).

    Args:
        function: `x -> (tensor, auxiliary)`, run under a gradient tape that watches `x`.
        x: a float tensor (a constant: the tape watches it itself).

    Returns:
        `((value, auxiliary), gradient)`; inside a `tf.function` as well.

    Example:

    >>> value_and_gradient(lambda x: (3 * x, None), tf.constant([1.0]))[1].numpy()
    array([3.], dtype=float32)
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        value, aux = function(x)
        total = tf.reduce_sum(value)
    return (value, aux), tape.gradient(total, x)


def variable_gradients(function, variables) -> tuple:
    """`function()` and its gradient with respect to each variable (see `gradients`).

    Args:
        function: `() -> scalar`, run under a gradient tape, which watches trainable
            variables by itself.
        variables: the Keras variables to ask the tape about.

    Returns:
        `(value, gradients)`: tensors, `None` for a variable the value does not depend on.

    Example:

    >>> import keras
    >>> v = keras.Variable(2.0)
    >>> float(variable_gradients(lambda: v * v, [v])[1][0])
    4.0
    """
    with tf.GradientTape() as tape:
        value = function()
    return value, tape.gradient(value, variables)


def replicas_in_sync() -> int:
    """The current `tf.distribute` strategy's replica count (1 without one).

    Returns:
        An integer.

    Example:

    >>> replicas_in_sync()
    1
    """
    return tf.distribute.get_strategy().num_replicas_in_sync


def compiled(function):
    """`function` as a `tf.function` (see `gradients.compiled`).

    Args:
        function: a step of TensorFlow-backed Keras ops.

    Returns:
        The `tf.function`.

    Example:

    >>> float(compiled(lambda x: 2 * x)(tf.constant(1.0)))
    2.0
    """
    return tf.function(function)
