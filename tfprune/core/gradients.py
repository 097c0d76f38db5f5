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


def value_and_gradient(function, x):
    """`function(x)` and the gradient of its sum with respect to `x`.

    Args:
        function: `x -> tensor`, written with Keras ops (a model call, a loss per example).
        x: the inputs, a tensor or array of floats.

    Returns:
        `(value, gradient)`: `function(x)` and a tensor of `x`'s shape, backend tensors.

    Raises:
        NotImplementedError: on a backend other than TensorFlow, JAX and PyTorch.

    Example:

    >>> value, gradient = value_and_gradient(lambda x: keras.ops.square(x), np.array([1.0, 3.0]))
    >>> keras.ops.convert_to_numpy(gradient)
    array([2., 6.])
    """
    backend = keras.backend.backend()
    if backend not in _BACKENDS:
        raise NotImplementedError(
            f"tfprune computes input gradients on {', '.join(_BACKENDS)}; the Keras backend is "
            f"'{backend}'."
        )
    module = importlib.import_module(f"{__package__}.gradients_{backend}")
    return module.value_and_gradient(function, keras.ops.convert_to_tensor(x))
