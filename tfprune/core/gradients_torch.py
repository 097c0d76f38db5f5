"""`tfprune.core.gradients.value_and_gradient` on PyTorch: `torch.autograd.grad` on a
detached copy of the inputs, so the caller's tensors and the model's gradients stay as
they were."""

from __future__ import annotations

import torch


def value_and_gradient(function, x):
    """`function(x)` and the gradient of the sum of its value with respect to `x` (see
    `gradients`).

    Args:
        function: `x -> (tensor, auxiliary)`, run with autograd on.
        x: a float tensor; a detached copy that requires gradients is differentiated.

    Returns:
        `((value, auxiliary), gradient)`, detached from the graph.

    Example:

    ```python
    value_and_gradient(lambda x: (3 * x, None), torch.ones(1))[1]  # tensor([3.])
    ```
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value, aux = function(x)
        (gradient,) = torch.autograd.grad(value.sum(), x)
    aux = aux.detach() if isinstance(aux, torch.Tensor) else aux
    return (value.detach(), aux), gradient


def variable_gradients(function, variables) -> tuple:
    """`function()` and its gradient with respect to each variable (see `gradients`),
    without touching the variables' `.grad`.

    Args:
        function: `() -> scalar`.
        variables: Keras variables (trainable: their tensors require gradients).

    Returns:
        `(value, gradients)`, detached.

    Example:

    ```python
    v = keras.Variable(2.0)
    variable_gradients(lambda: v * v, [v])[1][0]  # tensor(4.)
    ```
    """
    with torch.enable_grad():
        value = function()
        gradients = torch.autograd.grad(value, [v.value for v in variables])
    return value.detach(), list(gradients)
