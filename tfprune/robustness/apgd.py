"""APGD: the step-size-free PGD that opens AutoAttack, on the cross-entropy or DLR loss.

From "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (Croce and Hein, arXiv 2003.01690). PGD with a fixed step size can
overstate robustness: too large a step oscillates, too small a step stalls. APGD starts at
`2 * eps`, adds momentum, and halves each example's step at checkpoints where its loss has
stopped rising, restarting from the best point found; several random restarts keep the
worst case per example. The DLR loss (difference of logits ratio) does not saturate as
cross-entropy does on confident models, so attacking both catches more.
"""

from __future__ import annotations

import math

import keras

from tfprune.core.checks import check_choice, check_integer, check_number
from tfprune.core.gradients import value_and_gradient
from tfprune.robustness.attacks import per_example, scores
from tfprune.robustness.base import Attack

_MOMENTUM = 0.75  # the paper's alpha
_RISE_FRACTION = 0.75  # the paper's rho: halve the step where fewer steps than this rose


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve each example's step size.

    Args:
        steps: the attack's iterations.

    Returns:
        Increasing iteration indices, below `steps`.

    Example:

    >>> checkpoints(100)
    [0, 22, 41, 57, 70, 80, 87, 93, 99]
    """
    fractions = [0.0, 0.22]
    while fractions[-1] < 1:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    # Rounded first: 0.57 * 100 is 57.000000000000007 in floating point.
    return sorted({min(math.ceil(round(f * steps, 9)), steps - 1) for f in fractions[:-1]})


def per_example_loss(model, x, y, kind, loss):
    """Cross-entropy or DLR loss of each example (the quantity APGD raises).

    Args:
        model: the classifier.
        x: float32 inputs.
        y: int32 labels.
        kind: `"probabilities"` or `"logits"`.
        loss: `"ce"` or `"dlr"`.

    Returns:
        A `(batch,)` tensor.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> tuple(per_example_loss(model, x, y, "logits", "dlr").shape)
    (8,)
    """
    return _loss_of_scores(scores(model, x, kind), y, loss)


def _loss_of_scores(z, y, loss):
    if loss == "ce":
        return keras.losses.sparse_categorical_crossentropy(y, z, from_logits=True)
    # Log-probabilities differ from logits by a per-row constant, which DLR ignores.
    ordered = keras.ops.sort(z, axis=-1)  # ascending: the largest last
    true_class = keras.ops.one_hot(y, z.shape[-1])
    true = keras.ops.sum(z * true_class, axis=-1)
    others = keras.ops.where(true_class > 0, -math.inf, z)
    best_other = keras.ops.max(others, axis=-1)
    return -(true - best_other) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


@keras.saving.register_keras_serializable(package="tfprune")
class APGD(Attack):
    """Auto-PGD in the L-inf ball: adaptive step sizes, momentum and random restarts.

    From "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks" (Croce and Hein, arXiv 2003.01690); `loss="ce"` is APGD-CE, the
    first attack of AutoAttack, and `loss="dlr"` is APGD-DLR. Each example keeps the point
    with the highest loss, or the first one it is misclassified at; over restarts, a
    misclassified point wins.

    Args:
        eps: L-inf budget, >= 0. Defaults to 0.1.
        steps: iterations per restart, >= 1. Defaults to 100.
        restarts: random starts, >= 1; each example keeps its worst. Defaults to 1.
        loss: `"ce"` (cross-entropy) or `"dlr"` (needs 3 classes or more). Defaults to `"ce"`.
        seed: seed of the random starts. Defaults to 0.
        clip: `(min, max)` of valid inputs, or `None`. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see `tfprune.robustness.base`).
            Defaults to `"auto"`.

    Raises:
        ValueError: for eps < 0, steps or restarts < 1, an unknown loss or an empty clip
            range.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> x_adv = keras.ops.convert_to_numpy(APGD(eps=0.1, steps=10)(model, x, y))
    >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6), bool(x_adv.min() >= 0)
    (True, True)
    """

    def __init__(
        self, eps=0.1, steps=100, restarts=1, loss="ce", seed=0, clip=(0.0, 1.0), output="auto"
    ):
        super().__init__(clip, output)
        self.eps = check_number("eps", eps, low=0)
        self.steps = check_integer("steps", steps, minimum=1)
        self.restarts = check_integer("restarts", restarts, minimum=1)
        self.loss = check_choice("loss", loss, ("ce", "dlr"))
        self.seed = seed

    def _ball(self, x, point):
        return self.project(x + keras.ops.clip(point - x, -self.eps, self.eps))

    def _evaluate(self, model, x, y, kind):
        """Each example's loss, its gradient, and whether the example is misclassified."""

        def loss_and_scores(inputs):
            z = scores(model, inputs, kind)
            if self.loss == "dlr" and z.shape[-1] is not None and z.shape[-1] < 3:
                raise ValueError(
                    f"APGD(loss='dlr') needs 3 classes or more; the model has {z.shape[-1]}. "
                    "Use loss='ce'."
                )
            return _loss_of_scores(z, y, self.loss), z

        (loss, z), gradient = value_and_gradient(loss_and_scores, x, has_aux=True)
        predicted = keras.ops.cast(keras.ops.argmax(z, axis=-1), "int32")
        return loss, gradient, keras.ops.not_equal(predicted, y)

    def _one_run(self, model, x, y, kind, restart):
        def expand(v):
            return per_example(v, x)

        # One seed per restart, as each restart starts elsewhere.
        start = keras.random.uniform(
            keras.ops.shape(x), -self.eps, self.eps, seed=self.seed * 7919 + restart
        )
        current = self._ball(x, x + start)
        loss, gradient, fooled = self._evaluate(model, current, y, kind)
        step = keras.ops.ones_like(loss) * (2.0 * self.eps)
        best_loss, best = loss, current
        adversarial = current
        previous = current
        rises = keras.ops.zeros_like(loss)
        loss_at_checkpoint, step_was_halved = best_loss, keras.ops.zeros_like(fooled)
        marks = checkpoints(self.steps)
        last_mark = 0
        for k in range(self.steps):
            z = self._ball(x, current + expand(step) * keras.ops.sign(gradient))
            momentum = _MOMENTUM if k > 0 else 1.0
            candidate = self._ball(
                x, current + momentum * (z - current) + (1 - momentum) * (current - previous)
            )
            previous, current = current, candidate
            new_loss, gradient, now_fooled = self._evaluate(model, current, y, kind)
            rises += keras.ops.cast(new_loss > loss, "float32")
            loss = new_loss
            improved = loss > best_loss
            best = keras.ops.where(expand(improved), current, best)
            best_loss = keras.ops.where(improved, loss, best_loss)
            newly = keras.ops.logical_and(now_fooled, keras.ops.logical_not(fooled))
            adversarial = keras.ops.where(expand(newly), current, adversarial)
            fooled = keras.ops.logical_or(fooled, now_fooled)
            if k in marks and k > 0:
                window = float(k - last_mark)
                stalled = rises < _RISE_FRACTION * window
                unchanged = keras.ops.logical_and(
                    keras.ops.logical_not(step_was_halved), best_loss <= loss_at_checkpoint
                )
                halve = keras.ops.logical_or(stalled, unchanged)
                step = keras.ops.where(halve, step / 2.0, step)
                current = keras.ops.where(expand(halve), best, current)
                loss = keras.ops.where(halve, best_loss, loss)
                _, gradient, _ = self._evaluate(model, current, y, kind)
                rises = keras.ops.zeros_like(rises)
                loss_at_checkpoint, step_was_halved, last_mark = best_loss, halve, k
        return keras.ops.where(expand(fooled), adversarial, best), fooled, best_loss

    def generate(self, model, x, y, kind):
        if self.eps == 0:
            return self.project(x)
        result, fooled, best_loss = self._one_run(model, x, y, kind, 0)
        for restart in range(1, self.restarts):
            candidate, now_fooled, loss = self._one_run(model, x, y, kind, restart)
            newly = keras.ops.logical_and(now_fooled, keras.ops.logical_not(fooled))
            higher = keras.ops.logical_and(keras.ops.equal(now_fooled, fooled), loss > best_loss)
            better = keras.ops.logical_or(newly, higher)
            result = keras.ops.where(per_example(better, x), candidate, result)
            best_loss = keras.ops.where(better, loss, best_loss)
            fooled = keras.ops.logical_or(fooled, now_fooled)
        return result

    def get_config(self):
        return {
            "eps": self.eps,
            "steps": self.steps,
            "restarts": self.restarts,
            "loss": self.loss,
            "seed": self.seed,
            **super().get_config(),
        }
