"""`tfprune.core.gradients.value_and_gradient` on PyTorch: `torch.autograd.grad` on a
detached copy of the inputs, so the caller's tensors and the model's gradients stay as
they were."""

from __future__ import annotations

import torch


def value_and_gradient(function, x):
    """`function(x)` and the gradient of its sum with respect to `x` (see `gradients`).

    Args:
        function: `x -> tensor`.
        x: a float tensor.

    Returns:
        `(value, gradient)`, both detached.

    Example:

    ```python
    value_and_gradient(lambda x: 3 * x, torch.ones(1))[1]  # tensor([3.])
    ```
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = function(x)
        (gradient,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), gradient
