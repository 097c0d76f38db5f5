"""Gradients with respect to inputs, on every Keras backend.

Keras has no backend-neutral gradient: each backend computes them its own way
(`tf.GradientTape`, `jax.grad`, `torch.autograd`). The attacks and the gradient criteria ask
this module, which hands the question to the module of the backend in use
(`gradients_tensorflow`, `gradients_jax`, `gradients_torch`), so that only that backend's
library is imported.
"""

from __future__ import annotations

import importlib

import keras

_BACKENDS = ("tensorflow", "jax", "torch")


def _module():
    """The gradient module of the backend in use."""
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise NotImplementedError(
            f"tfprune computes gradients on {', '.join(_BACKENDS)}; the Keras backend is "
            f"'{backend}'."
        )
    return importlib.import_module(f"{__package__}.gradients_{backend}")


def value_and_gradient(function, x, has_aux=False):
    """`function(x)` and the gradient of its sum with respect to `x`.

    Args:
        function: `x -> tensor`, written with Keras ops (a model call, a loss per example);
            with `has_aux`, `x -> (tensor, auxiliary)`, the auxiliary value not
            differentiated (the scores a loss came from).
        x: the inputs, a tensor or array of floats.
        has_aux: whether `function` returns an auxiliary value too. Defaults to `False`.

    Returns:
        `(value, gradient)`: `function(x)` and a tensor of `x`'s shape, backend tensors;
        with `has_aux`, `((value, auxiliary), gradient)`.

    Raises:
        NotImplementedError: on a backend other than TensorFlow, JAX and PyTorch.

    Example:

    >>> value, gradient = value_and_gradient(lambda x: keras.ops.square(x), np.array([1.0, 3.0]))
    >>> keras.ops.convert_to_numpy(gradient)
    array([2., 6.])
    """
    module = _module()
    with_aux = function if has_aux else lambda inputs: (function(inputs), None)
    (value, aux), gradient = module.value_and_gradient(with_aux, keras.ops.convert_to_tensor(x))
    return ((value, aux) if has_aux else value), gradient


def variable_gradients(function, variables) -> tuple:
    """`function()` and its gradient with respect to each of `variables`.

    Args:
        function: `() -> scalar`, reading the variables (a model's loss on a batch).
        variables: the Keras variables to differentiate with respect to.

    Returns:
        `(value, gradients)`: the scalar and one backend tensor per variable, of its shape.

    Raises:
        NotImplementedError: on a backend other than TensorFlow, JAX and PyTorch.

    Example:

    >>> dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    >>> x = np.array([[1.0, 2.0]], "float32")
    >>> _ = dense(x)
    >>> value, (gradient,) = variable_gradients(lambda: keras.ops.sum(dense(x)), [dense.kernel])
    >>> keras.ops.convert_to_numpy(gradient).ravel()
    array([1., 2.], dtype=float32)
    """
    return _module().variable_gradients(function, list(variables))


def replicas_in_sync() -> int:
    """How many replicas sum their gradients in the training step running now.

    Under `tf.distribute`, Keras' `compute_loss` divides the loss by the replica count so
    that the summed gradients are right; a loss term added beside it divides the same way.
    Keras' JAX and PyTorch trainers take the mean over the global batch: 1 there.

    Returns:
        The replica count (1 outside a `tf.distribute` strategy).

    Example:

    >>> replicas_in_sync()
    1
    """
    # Only TensorFlow's strategies split the loss by replica.
    count = getattr(_module(), "replicas_in_sync", None)
    return 1 if count is None else count()


def compiled(function):
    """`function` compiled as the backend compiles a training step, where that is safe for
    a step that updates Keras variables: a `tf.function` on TensorFlow; as it is on JAX and
    PyTorch, which run it eagerly.

    Args:
        function: a step of Keras ops, gradients and optimizer updates.

    Returns:
        A callable with `function`'s signature.

    Example:

    >>> double = compiled(lambda x: 2 * x)
    >>> float(keras.ops.convert_to_numpy(double(keras.ops.ones(()))))
    2.0
    """
    compile_step = getattr(_module(), "compiled", None)
    return function if compile_step is None else compile_step(function)
