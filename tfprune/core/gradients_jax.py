"""`tfprune.core.gradients.value_and_gradient` on JAX: `jax.value_and_grad`, which also
works inside a jitted step."""

from __future__ import annotations

import jax


def value_and_gradient(function, x):
    """`function(x)` and the gradient of the sum of its value with respect to `x` (see
    `gradients`).

    Args:
        function: `x -> (array, auxiliary)`, traced by `jax.value_and_grad`.
        x: a float array.

    Returns:
        `((value, auxiliary), gradient)`; inside `jax.jit` as well.

    Example:

    ```python
    value_and_gradient(lambda x: (3 * x, None), jax.numpy.ones(1))[1]  # Array([3.])
    ```
    """

    def total(inputs):
        value, aux = function(inputs)
        return jax.numpy.sum(value), (value, aux)

    (_, outputs), gradient = jax.value_and_grad(total, has_aux=True)(x)
    return outputs, gradient


def variable_gradients(function, variables) -> tuple:
    """`function()` and its gradient with respect to each variable (see `gradients`).

    Args:
        function: `() -> scalar`, run in a stateless scope that maps each variable to a
            traced value.
        variables: the Keras variables whose values become `jax.value_and_grad`'s argument.

    Returns:
        `(value, gradients)`: JAX arrays, one gradient per variable.

    Example:

    ```python
    v = keras.Variable(2.0)
    variable_gradients(lambda: v * v, [v])[1][0]  # Array(4.)
    ```
    """
    import keras

    def of_values(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return function()

    return jax.value_and_grad(of_values)([v.value for v in variables])
