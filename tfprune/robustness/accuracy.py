"""`robust_accuracy`: how many examples a classifier still gets right under an attack."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks
from tfprune.core.classifier import output_kind
from tfprune.robustness.base import check_attack


def robust_accuracy(model, x, y, attack, batch_size=256) -> float:
    """Accuracy of `model` on adversarial examples of `x` made by `attack`.

    Args:
        model: a classifier (see the module docstring for its output).
        x: inputs.
        y: integer labels, one per input.
        attack: a `tfprune` attack, or `None` for clean accuracy.
        batch_size: examples per batch. Defaults to 256.

    Returns:
        The fraction of adversarial examples still classified correctly.

    Raises:
        ValueError: for no data, labels that do not match the inputs or the model's
            classes, or a model that is not a classifier.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> 0 <= robust_accuracy(model, x, y, tfprune.PGD(eps=0.1, steps=5)) <= 1
    True
    """
    x = np.asarray(x, np.float32)
    if x.shape[0] == 0:
        raise ValueError("robust_accuracy needs at least one example; got empty x.")
    y = checks.check_labels(model, y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels.")
    check_attack(attack, allow_none=True)
    output_kind(model, attack.output if attack is not None else "auto")
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        inputs = xb if attack is None else attack(model, xb, yb)
        predictions = keras.ops.convert_to_numpy(model(inputs, training=False))
        correct += int(np.sum(np.argmax(predictions, axis=1) == yb))
    return correct / len(x)
