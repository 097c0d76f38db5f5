"""`tfprune.core.gradients.value_and_gradient` on TensorFlow: a gradient tape, which also
works inside a compiled `train_step`."""

from __future__ import annotations

import tensorflow as tf


def value_and_gradient(function, x):
    """`function(x)` and the gradient of its sum with respect to `x` (see `gradients`).

    Args:
        function: `x -> tensor`.
        x: a float tensor.

    Returns:
        `(value, gradient)`.

    Example:

    >>> value_and_gradient(lambda x: 3 * x, tf.constant([1.0]))[1].numpy()
    array([3.], dtype=float32)
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = function(x)
        total = tf.reduce_sum(value)
    return value, tape.gradient(total, x)
