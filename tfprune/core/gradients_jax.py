"""`tfprune.core.gradients.value_and_gradient` on JAX: `jax.value_and_grad`, which also
works inside a jitted step."""

from __future__ import annotations

import jax


def value_and_gradient(function, x):
    """`function(x)` and the gradient of its sum with respect to `x` (see `gradients`).

    Args:
        function: `x -> array`.
        x: a float array.

    Returns:
        `(value, gradient)`.

    Example:

    ```python
    value_and_gradient(lambda x: 3 * x, jax.numpy.ones(1))[1]  # Array([3.], dtype=float32)
    ```
    """

    def total(inputs):
        value = function(inputs)
        return jax.numpy.sum(value), value

    (_, value), gradient = jax.value_and_grad(total, has_aux=True)(x)
    return value, gradient
