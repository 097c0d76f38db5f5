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
        attack: a `tfprune` attack, `None` for clean accuracy, or a list of attacks for the
            worst case: an example counts only if every attack leaves it correct (as
            AutoAttack reports robust accuracy).
        batch_size: examples per batch. Defaults to 256.

    Returns:
        The fraction of examples still classified correctly.

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
    attacks = list(attack) if isinstance(attack, (list, tuple)) else [attack]
    if not attacks:
        raise ValueError("robust_accuracy: attack is an empty list; give at least one attack.")
    for each in attacks:
        check_attack(each, allow_none=True)
        output_kind(model, each.output if each is not None else "auto")
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        survived = np.ones(len(xb), bool)
        for each in attacks:
            inputs = xb if each is None else each(model, xb, yb)
            predictions = keras.ops.convert_to_numpy(model(inputs, training=False))
            survived &= np.argmax(predictions, axis=1) == yb
        correct += int(survived.sum())
    return correct / len(x)
