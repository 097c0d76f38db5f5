"""`robust_accuracy` and `robust_correct`: how many, and which, examples a classifier still gets
right under an attack."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks
from tfprune.core.classifier import output_kind
from tfprune.robustness.base import check_attack


def robust_correct(model, x, y, attack, batch_size=256) -> np.ndarray:
    """Which examples `model` still classifies correctly under `attack`, one flag each.

    The per-example form of `robust_accuracy`: two models (or one model before and after a
    change) probed on the same examples can be compared pair by pair, whose difference has
    far less sampling noise than the difference of two accuracies.

    Args:
        model: a classifier (see the module docstring for its output).
        x: inputs.
        y: integer labels, one per input.
        attack: a `tfprune` attack, `None` for clean accuracy, or a list of attacks for the
            worst case: an example counts only if every attack leaves it correct (as
            AutoAttack reports robust accuracy).
        batch_size: examples per batch. Defaults to 256.

    Returns:
        A boolean array of shape `(len(x),)`.

    Raises:
        ValueError: for no data, labels that do not match the inputs or the model's
            classes, or a model that is not a classifier.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> robust_correct(model, x, y, None).shape
    (8,)
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
    flags = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        survived = np.ones(len(xb), bool)
        for each in attacks:
            inputs = xb if each is None else each(model, xb, yb)
            predictions = keras.ops.convert_to_numpy(model(inputs, training=False))
            survived &= np.argmax(predictions, axis=1) == yb
        flags.append(survived)
    return np.concatenate(flags)


def robust_accuracy(model, x, y, attack, batch_size=256) -> float:
    """Accuracy of `model` on adversarial examples of `x` made by `attack`.

    Args:
        model: a classifier.
        x: inputs.
        y: integer labels, one per input.
        attack: an attack, `None` for clean accuracy, or a list for the worst case (as in
            `robust_correct`).
        batch_size: examples per batch. Defaults to 256.

    Returns:
        The fraction of examples still classified correctly.

    Raises:
        ValueError: as `robust_correct`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> 0 <= robust_accuracy(model, x, y, tfprune.PGD(eps=0.1, steps=5)) <= 1
    True
    """
    return float(robust_correct(model, x, y, attack, batch_size).mean())
