"""Adversarial examples: FGSM, PGD, DeepFool and BAP's cut-off-scale.

Every attack is a serializable `tfprune.robustness.Attack` (see `tfprune.robustness.base` for the
output kinds it handles); `attack(model, x, y)` returns adversarial inputs in the valid input
range (`clip`), for a whole batch, with Keras ops and the backend's own input gradients
(`tfprune.core.gradients`), so attacks run on TensorFlow, JAX and PyTorch, and inside a
compiled `train_step`.
"""

from __future__ import annotations

import keras

from tfprune.core.checks import check_choice, check_integer, check_number
from tfprune.core.gradients import value_and_gradient
from tfprune.robustness.base import Attack, check_attack


def scores(model, x, kind):
    """Log-probabilities (or logits): the quantity whose gradient the attacks follow.

    Args:
        model: the classifier.
        x: inputs.
        kind: `"probabilities"` or `"logits"`.

    Returns:
        Per-class scores, `(batch, classes)`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> tuple(scores(model, x, "probabilities").shape)
    (8, 3)
    """
    y = model(x, training=False)
    return keras.ops.log(keras.ops.clip(y, 1e-12, 1.0)) if kind == "probabilities" else y


def loss_gradient(model, x, y, kind):
    """Gradient of the cross-entropy loss with respect to the inputs.

    Args:
        model: the classifier.
        x: float32 inputs.
        y: int32 labels.
        kind: `"probabilities"` or `"logits"`.

    Returns:
        A tensor of `x`'s shape.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> tuple(loss_gradient(model, x, y, "probabilities").shape)
    (8, 4)
    """

    def loss(inputs):
        return keras.losses.sparse_categorical_crossentropy(
            y, scores(model, inputs, kind), from_logits=True
        )

    return value_and_gradient(loss, x)[1]


def per_example(values, x):
    """One value per example of `x` (a batch), shaped to broadcast against `x`.

    Args:
        values: a `(batch,)` tensor.
        x: the batch.

    Returns:
        `values` reshaped to `(batch, 1, ..., 1)`.

    Example:

    >>> tuple(per_example(np.arange(2.0), np.zeros((2, 4, 3))).shape)
    (2, 1, 1)
    """
    return keras.ops.reshape(values, (-1,) + (1,) * (len(x.shape) - 1))


def _flat_norm(t):
    """Each example's L2 norm, shaped to broadcast against `t`."""
    axes = tuple(range(1, len(t.shape)))
    return keras.ops.sqrt(keras.ops.sum(keras.ops.square(t), axis=axes, keepdims=True)) + 1e-12


@keras.saving.register_keras_serializable(package="tfprune")
class FGSM(Attack):
    """Fast gradient sign method: `x + eps * sign(grad_x loss)`, clipped.

    From "Explaining and Harnessing Adversarial Examples" (Goodfellow et al., arXiv
    1412.6572).

    Args:
        eps: L-inf budget, >= 0. Defaults to 0.1.
        clip: `(min, max)` of valid inputs, or `None`. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see `tfprune.robustness.base`).
            Defaults to `"auto"`.

    Raises:
        ValueError: for eps < 0 or an empty clip range.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> x_adv = keras.ops.convert_to_numpy(FGSM(eps=0.1)(model, x, y))
    >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6), bool(x_adv.min() >= 0)
    (True, True)
    """

    def __init__(self, eps=0.1, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        self.eps = check_number("eps", eps, low=0)

    def generate(self, model, x, y, kind):
        gradient = loss_gradient(model, x, y, kind)
        return self.project(x + self.eps * keras.ops.sign(gradient))

    def get_config(self):
        return {"eps": self.eps, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfprune")
class PGD(Attack):
    """Projected gradient descent in the L-inf or L2 ball.

    From "Towards Deep Learning Models Resistant to Adversarial Attacks" (Madry et al.,
    arXiv 1706.06083).

    Args:
        eps: budget (radius of the ball), >= 0. Defaults to 0.1.
        steps: iterations, >= 1. Defaults to 10.
        step_size: per-step size, or `None` for `2.5 * eps / steps`. Defaults to `None`.
        norm: `"linf"` or `"l2"`. Defaults to `"linf"`.
        random_start: start from a uniform random point in the ball. Defaults to `True`.
        seed: seed of the random start. Defaults to 0.
        clip: `(min, max)` of valid inputs, or `None`. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see `tfprune.robustness.base`).
            Defaults to `"auto"`.

    Raises:
        ValueError: for eps < 0, steps < 1, an unknown norm or an empty clip range.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> clean = tfprune.robust_accuracy(model, x, y, None)
    >>> tfprune.robust_accuracy(model, x, y, PGD(eps=0.1, steps=5)) <= clean
    True
    """

    def __init__(
        self,
        eps=0.1,
        steps=10,
        step_size=None,
        norm="linf",
        random_start=True,
        seed=0,
        clip=(0.0, 1.0),
        output="auto",
    ):
        super().__init__(clip, output)
        self.eps = check_number("eps", eps, low=0)
        self.steps = check_integer("steps", steps, minimum=1)
        self.step_size = (
            2.5 * self.eps / steps
            if step_size is None
            else check_number("step_size", step_size, low=0)
        )
        self.norm = check_choice("norm", norm, ("linf", "l2"))
        self.random_start = bool(random_start)
        self.seed = seed

    def _into_ball(self, delta):
        if self.norm == "linf":
            return keras.ops.clip(delta, -self.eps, self.eps)
        return delta * keras.ops.minimum(1.0, self.eps / _flat_norm(delta))

    def generate(self, model, x, y, kind):
        delta = keras.ops.zeros_like(x)
        if self.random_start and self.eps > 0:
            delta = keras.random.uniform(keras.ops.shape(x), -self.eps, self.eps, seed=self.seed)
            delta = self._into_ball(delta)
        x_adv = self.project(x + delta)
        for _ in range(self.steps):
            gradient = loss_gradient(model, x_adv, y, kind)
            if self.norm == "linf":
                step = self.step_size * keras.ops.sign(gradient)
            else:
                step = self.step_size * gradient / _flat_norm(gradient)
            x_adv = self.project(x + self._into_ball(x_adv + step - x))
        return x_adv

    def get_config(self):
        return {
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "norm": self.norm,
            "random_start": self.random_start,
            "seed": self.seed,
            **super().get_config(),
        }


@keras.saving.register_keras_serializable(package="tfprune")
class DeepFool(Attack):
    """Minimal-perturbation attack, multi-class, L2.

    From "DeepFool: a simple and accurate method to fool deep neural networks"
    (Moosavi-Dezfooli et al., arXiv 1511.04599).

    Each step moves every still-correct example across the nearest linearised decision
    boundary; the total is scaled by `1 + overshoot`. Used by BAP with 5 steps and
    overshoot 0.02.

    Args:
        steps: iterations, >= 1. Defaults to 5.
        overshoot: extra push past the boundary, >= 0. Defaults to 0.02.
        clip: `(min, max)` of valid inputs, or `None`. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see `tfprune.robustness.base`).
            Defaults to `"auto"`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> eta = keras.ops.convert_to_numpy(DeepFool()(model, x, y)) - x  # minimal perturbations
    >>> eta.shape
    (8, 4)
    """

    def __init__(self, steps=5, overshoot=0.02, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        self.steps = check_integer("steps", steps, minimum=1)
        self.overshoot = check_number("overshoot", overshoot, low=0)

    def generate(self, model, x, y, kind):
        classes = model.outputs[0].shape[-1]
        total = keras.ops.zeros_like(x)
        class_shape = (-1, classes) + (1,) * (len(x.shape) - 1)  # (b, K) against (b, K, ...)
        for _ in range(self.steps):
            x_adv = self.project(x + (1 + self.overshoot) * total)
            # One gradient per class: each row of the Jacobian of the scores.
            per_class = [
                value_and_gradient(lambda v, k=k: scores(model, v, kind)[:, k], x_adv)
                for k in range(classes)
            ]
            class_scores = keras.ops.stack([value for value, _ in per_class], axis=1)
            gradients = keras.ops.stack([gradient for _, gradient in per_class], axis=1)
            true_class = keras.ops.one_hot(y, classes)  # (b, K)
            true_score = keras.ops.sum(class_scores * true_class, axis=1, keepdims=True)
            true_grad = keras.ops.sum(
                gradients
                * keras.ops.reshape(true_class, (-1, classes) + (1,) * (len(x.shape) - 1)),
                axis=1,
                keepdims=True,
            )
            w = gradients - true_grad
            f = class_scores - true_score
            w_norm = (
                keras.ops.sqrt(
                    keras.ops.sum(keras.ops.square(w), axis=tuple(range(2, len(w.shape))))
                )
                + 1e-8
            )
            distance = keras.ops.abs(f) / w_norm + true_class * 1e10  # never the true class
            nearest = keras.ops.one_hot(keras.ops.argmin(distance, axis=1), classes)
            r = keras.ops.sum(distance * nearest, axis=1) + 1e-4
            w_best_norm = keras.ops.sum(w_norm * nearest, axis=1)
            w_best = keras.ops.sum(w * keras.ops.reshape(nearest, class_shape), axis=1)
            step = per_example(r / w_best_norm, x) * w_best
            predicted = keras.ops.argmax(class_scores, axis=1)
            still_correct = keras.ops.equal(keras.ops.cast(predicted, "int32"), y)
            total += keras.ops.where(
                per_example(still_correct, x), step, keras.ops.zeros_like(step)
            )
        return self.project(x + (1 + self.overshoot) * total)

    def get_config(self):
        return {"steps": self.steps, "overshoot": self.overshoot, **super().get_config()}


def cutoff_scale(eta, rho=0.9, delta=None):
    """BAP's cut-off-scale transform of perturbations: a per-example budget.

    `eta <- rho * eta * min(1, delta / rms(eta))` with `rms = sqrt(mean(eta ** 2))` per
    example. `delta=None` uses the batch mean of the RMS values (BAP's adaptive budget).

    Args:
        eta: perturbations, batch first.
        rho: scale, in (0, 1]. Defaults to 0.9.
        delta: RMS cap (>= 0), or `None` for the adaptive batch mean. Defaults to `None`.

    Returns:
        The transformed perturbations (a backend tensor).

    Raises:
        ValueError: for rho outside (0, 1] or delta < 0.

    Example:

    >>> eta = np.array([[0.3, 0.4], [0.03, 0.04]])  # RMS 0.354 and 0.0354
    >>> np.round(keras.ops.convert_to_numpy(cutoff_scale(eta, rho=1.0, delta=0.1)), 4)
    array([[0.0849, 0.1131],
           [0.03  , 0.04  ]], dtype=float32)
    """
    rho = check_number("rho", rho, 0, 1, include_low=False)
    eta = keras.ops.convert_to_tensor(eta, "float32")
    axes = tuple(range(1, len(eta.shape)))
    rms = keras.ops.sqrt(keras.ops.mean(keras.ops.square(eta), axis=axes, keepdims=True))
    cap = keras.ops.mean(rms) if delta is None else check_number("delta", delta, low=0)
    return rho * eta * keras.ops.minimum(1.0, cap / (rms + 1e-12))


@keras.saving.register_keras_serializable(package="tfprune")
class CutoffScale(Attack):
    """BAP's adversarial examples: a minimal-perturbation attack, cut off and scaled.

    From "Blind Adversarial Pruning: Balance Accuracy, Efficiency and Robustness" (Xie et
    al., arXiv 2004.05913).

    Each example's perturbation from `base` (DeepFool by default) is capped to RMS `delta`
    (or the batch mean RMS) and scaled by `rho`, then clipped to the input range: every
    example gets its own budget, recomputed against the current, sparser model.

    Args:
        base: the attack giving `eta = base(x) - x`, or `None` for `DeepFool(steps=5,
            overshoot=0.02)`. Defaults to `None`.
        rho: scale, in (0, 1]. Defaults to 0.9.
        delta: RMS cap, or `None` for adaptive. Defaults to `None`.
        clip: `(min, max)` of valid inputs, or `None`. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see `tfprune.robustness.base`).
            Defaults to `"auto"`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> x, y = np.random.rand(8, 4).astype("float32"), np.arange(8) % 3
    >>> x_adv = CutoffScale(rho=0.9)(model, x, y)
    >>> bool(keras.ops.convert_to_numpy(x_adv).min() >= 0)  # clipped to the input range
    True
    """

    def __init__(self, base=None, rho=0.9, delta=None, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        if isinstance(base, dict):
            base = keras.saving.deserialize_keras_object(base)
        self.base = base if base is not None else DeepFool(clip=clip, output=output)
        check_attack(self.base, "base")
        cutoff_scale(keras.ops.zeros((1, 1)), rho, delta)  # validates rho and delta
        self.rho, self.delta = float(rho), None if delta is None else float(delta)

    def generate(self, model, x, y, kind):
        eta = self.base.generate(model, x, y, kind) - x
        return self.project(x + cutoff_scale(eta, self.rho, self.delta))

    def get_config(self):
        return {
            "base": keras.saving.serialize_keras_object(self.base),
            "rho": self.rho,
            "delta": self.delta,
            **super().get_config(),
        }
