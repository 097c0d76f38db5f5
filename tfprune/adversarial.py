"""Adversarial examples and robust accuracy: FGSM, PGD, DeepFool and BAP's cut-off-scale.

Every attack is a serializable object; `attack(model, x, y)` returns adversarial inputs in
the valid input range (`clip`), for a whole batch, with TensorFlow ops (so attacks also
run inside a compiled `train_step`). They need the model's class scores:

- `output="probabilities"`: the model ends in a softmax (rows sum to 1);
- `output="logits"`: unnormalised scores;
- `output="auto"` (default): probabilities if the last layer's activation is softmax,
  logits otherwise.

A model whose output is not one score per class (shape `(batch, classes)`, classes >= 2)
is rejected with a clear error.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfprune.configurable import Configurable


def _check_number(name, value, minimum=0.0, strict=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    if value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}.")
    return float(value)


def _check_clip(clip):
    if clip is None:
        return None
    low, high = clip
    if not low < high:
        raise ValueError(f"clip must be (min, max) with min < max, got {clip!r}.")
    return float(low), float(high)


def output_kind(model, output="auto") -> str:
    """Resolve whether `model` outputs probabilities or logits.

    Args:
        model: a Keras model with one `(batch, classes)` output.
        output: `"auto"`, `"probabilities"` or `"logits"`.

    Returns:
        `"probabilities"` or `"logits"`.

    Raises:
        ValueError: for an unknown `output`, or a model whose output is not one score per
            class.

    Example:

    >>> output_kind(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")]))
    'probabilities'
    """
    if output not in ("auto", "probabilities", "logits"):
        raise ValueError(f"output must be 'auto', 'probabilities' or 'logits', got {output!r}.")
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if shape is None or len(model.outputs) != 1 or len(shape) != 2 or (shape[-1] or 0) < 2:
        raise ValueError(
            f"Attacks need one output of class scores, shape (batch, classes >= 2); model '{model.name}' "
            f"outputs {[tuple(o.shape) for o in getattr(model, 'outputs', [])]}. Attack a classifier."
        )
    if output != "auto":
        return output
    last = model.outputs[0]._keras_history.operation
    activation = getattr(getattr(last, "layer", last), "activation", None)
    return "probabilities" if getattr(activation, "__name__", "") == "softmax" else "logits"


def _check_labels(model, y):
    y = np.asarray(y)
    classes = model.outputs[0].shape[-1]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D array of integer class ids, got shape {y.shape} and dtype {y.dtype}.")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}) for this model's {classes} outputs; got {y.min()}..{y.max()}.")
    return y


class Attack(Configurable):
    """Base class of attacks: `attack(model, x, y) -> x_adv` (a `tf.Tensor`).

    Args:
        clip: `(min, max)` of valid inputs, or `None` for no clipping.
        output: `"auto"`, `"probabilities"` or `"logits"` (see the module docstring).
    """

    def __init__(self, clip=(0.0, 1.0), output="auto"):
        self.clip = _check_clip(clip)
        if output not in ("auto", "probabilities", "logits"):
            raise ValueError(f"output must be 'auto', 'probabilities' or 'logits', got {output!r}.")
        self.output = output

    def _scores(self, model, x, kind):
        """Log-probabilities (or logits): the quantity whose gradient the attacks follow."""
        y = model(x, training=False)
        return tf.math.log(tf.clip_by_value(y, 1e-12, 1.0)) if kind == "probabilities" else y

    def _loss_gradient(self, model, x, y, kind):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.keras.losses.sparse_categorical_crossentropy(y, self._scores(model, x, kind), from_logits=True)
        return tape.gradient(loss, x)

    def _project(self, x_adv, x):
        return x_adv if self.clip is None else tf.clip_by_value(x_adv, *self.clip)

    def __call__(self, model, x, y):
        kind = output_kind(model, self.output)
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        return self.generate(model, x, y, kind)

    def generate(self, model, x, y, kind):
        """The attack itself, on tensors; `kind` is the resolved output kind."""
        raise NotImplementedError

    def get_config(self):
        return {"clip": self.clip, "output": self.output}


@keras.saving.register_keras_serializable(package="tfprune")
class FGSM(Attack):
    """Fast gradient sign method: `x + eps * sign(grad_x loss)`, clipped.

    Args:
        eps: L-inf budget, >= 0.
        clip: valid input range.
        output: see the module docstring.

    Raises:
        ValueError: for eps < 0 or an empty clip range.

    Example:

    >>> x_adv = FGSM(eps=0.1)(model, x, y)
    """

    def __init__(self, eps=0.1, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        self.eps = _check_number("eps", eps)

    def generate(self, model, x, y, kind):
        gradient = self._loss_gradient(model, x, y, kind)
        return self._project(x + self.eps * tf.sign(gradient), x)

    def get_config(self):
        return {"eps": self.eps, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfprune")
class PGD(Attack):
    """Projected gradient descent (Madry et al.) in the L-inf or L2 ball.

    Args:
        eps: budget (radius of the ball), >= 0.
        steps: iterations, >= 1.
        step_size: per-step size; default `2.5 * eps / steps`.
        norm: `"linf"` or `"l2"`.
        random_start: start from a uniform random point in the ball.
        seed: seed of the random start.
        clip: valid input range.
        output: see the module docstring.

    Raises:
        ValueError: for eps < 0, steps < 1, an unknown norm or an empty clip range.

    Example:

    >>> robust_accuracy(model, x, y, PGD(eps=0.1, steps=10))
    """

    def __init__(self, eps=0.1, steps=10, step_size=None, norm="linf", random_start=True, seed=0, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        self.eps = _check_number("eps", eps)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
        self.steps = steps
        self.step_size = 2.5 * self.eps / steps if step_size is None else _check_number("step_size", step_size)
        if norm not in ("linf", "l2"):
            raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
        self.norm = norm
        self.random_start = bool(random_start)
        self.seed = seed

    def _flat_norm(self, t):
        return tf.sqrt(tf.reduce_sum(tf.square(t), axis=tf.range(1, tf.rank(t)), keepdims=True)) + 1e-12

    def _into_ball(self, delta):
        if self.norm == "linf":
            return tf.clip_by_value(delta, -self.eps, self.eps)
        return delta * tf.minimum(1.0, self.eps / self._flat_norm(delta))

    def generate(self, model, x, y, kind):
        delta = tf.zeros_like(x)
        if self.random_start and self.eps > 0:
            delta = tf.random.stateless_uniform(tf.shape(x), seed=[self.seed, 0], minval=-self.eps, maxval=self.eps)
            delta = self._into_ball(delta)
        x_adv = self._project(x + delta, x)
        for _ in range(self.steps):
            gradient = self._loss_gradient(model, x_adv, y, kind)
            if self.norm == "linf":
                step = self.step_size * tf.sign(gradient)
            else:
                step = self.step_size * gradient / self._flat_norm(gradient)
            x_adv = self._project(x + self._into_ball(x_adv + step - x), x)
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
    """Minimal-perturbation attack (Moosavi-Dezfooli et al.), multi-class, L2.

    Each step moves every still-correct example across the nearest linearised decision
    boundary; the total is scaled by `1 + overshoot`. Used by BAP with 5 steps and
    overshoot 0.02.

    Args:
        steps: iterations, >= 1.
        overshoot: extra push past the boundary, >= 0.
        clip: valid input range.
        output: see the module docstring.

    Example:

    >>> eta = DeepFool()(model, x, y) - x   # per-example minimal perturbations
    """

    def __init__(self, steps=5, overshoot=0.02, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
        self.steps = steps
        self.overshoot = _check_number("overshoot", overshoot)

    def generate(self, model, x, y, kind):
        classes = model.outputs[0].shape[-1]
        total = tf.zeros_like(x)
        for _ in range(self.steps):
            x_adv = self._project(x + (1 + self.overshoot) * total, x)
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x_adv)
                scores = self._scores(model, x_adv, kind)
                per_class = [scores[:, k] for k in range(classes)]
            gradients = tf.stack([tape.gradient(s, x_adv) for s in per_class], axis=1)  # (b, K, ...)
            del tape
            true_score = tf.gather(scores, y, batch_dims=1)
            true_grad = tf.gather(gradients, y, batch_dims=1)
            w = gradients - tf.expand_dims(true_grad, 1)
            f = scores - tf.expand_dims(true_score, 1)
            w_norm = tf.sqrt(tf.reduce_sum(tf.square(w), axis=tf.range(2, tf.rank(w)))) + 1e-8
            distance = tf.abs(f) / w_norm + tf.one_hot(y, classes) * 1e10  # never the true class
            nearest = tf.argmin(distance, axis=1, output_type=tf.int32)
            r = tf.gather(distance, nearest, batch_dims=1) + 1e-4
            w_best = tf.gather(w, nearest, batch_dims=1)
            w_best_norm = tf.gather(w_norm, nearest, batch_dims=1)
            shape = tf.concat([[-1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
            step = tf.reshape(r / w_best_norm, shape) * w_best
            still_correct = tf.equal(tf.argmax(scores, axis=1, output_type=tf.int32), y)
            total += tf.where(tf.reshape(still_correct, shape), step, tf.zeros_like(step))
        return self._project(x + (1 + self.overshoot) * total, x)

    def get_config(self):
        return {"steps": self.steps, "overshoot": self.overshoot, **super().get_config()}


def cutoff_scale(eta, rho=0.9, delta=None):
    """BAP's cut-off-scale transform of perturbations: a per-example budget.

    `eta <- rho * eta * min(1, delta / rms(eta))` with `rms = sqrt(mean(eta ** 2))` per
    example. `delta=None` uses the batch mean of the RMS values (BAP's adaptive budget).

    Args:
        eta: perturbations, batch first.
        rho: scale, in (0, 1].
        delta: RMS cap (>= 0), or `None` for the adaptive batch mean.

    Returns:
        The transformed perturbations (a `tf.Tensor`).

    Raises:
        ValueError: for rho outside (0, 1] or delta < 0.

    Example:

    >>> capped = cutoff_scale(x_adv - x, rho=0.9, delta=0.05)
    """
    rho = _check_number("rho", rho, strict=True)
    if rho > 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}.")
    eta = tf.convert_to_tensor(eta, tf.float32)
    axes = tf.range(1, tf.rank(eta))
    rms = tf.sqrt(tf.reduce_mean(tf.square(eta), axis=axes, keepdims=True))
    cap = tf.reduce_mean(rms) if delta is None else _check_number("delta", delta)
    return rho * eta * tf.minimum(1.0, cap / (rms + 1e-12))


@keras.saving.register_keras_serializable(package="tfprune")
class CutoffScale(Attack):
    """BAP's adversarial examples: a minimal-perturbation attack, cut off and scaled.

    Each example's perturbation from `base` (DeepFool by default) is capped to RMS `delta`
    (or the batch mean RMS) and scaled by `rho`, then clipped to the input range: every
    example gets its own budget, recomputed against the current, sparser model.

    Args:
        base: the attack giving `eta = base(x) - x`; default `DeepFool(steps=5, overshoot=0.02)`.
        rho: scale, in (0, 1].
        delta: RMS cap, or `None` for adaptive.
        clip: valid input range.
        output: see the module docstring.

    Example:

    >>> x_adv = CutoffScale(rho=0.9)(model, x, y)
    """

    def __init__(self, base=None, rho=0.9, delta=None, clip=(0.0, 1.0), output="auto"):
        super().__init__(clip, output)
        if isinstance(base, dict):
            base = keras.saving.deserialize_keras_object(base)
        self.base = base if base is not None else DeepFool(clip=clip, output=output)
        if not isinstance(self.base, Attack):
            raise TypeError(f"base must be a tfprune attack, got {type(self.base).__name__}.")
        cutoff_scale(tf.zeros((1, 1)), rho, delta)  # validates rho and delta
        self.rho, self.delta = float(rho), None if delta is None else float(delta)

    def generate(self, model, x, y, kind):
        eta = self.base.generate(model, x, y, kind) - x
        return self._project(x + cutoff_scale(eta, self.rho, self.delta), x)

    def get_config(self):
        return {
            "base": keras.saving.serialize_keras_object(self.base),
            "rho": self.rho,
            "delta": self.delta,
            **super().get_config(),
        }


def robust_accuracy(model, x, y, attack, batch_size=256) -> float:
    """Accuracy of `model` on adversarial examples of `x` made by `attack`.

    Args:
        model: a classifier (see the module docstring for its output).
        x: inputs.
        y: integer labels, one per input.
        attack: a `tfprune` attack, or `None` for clean accuracy.
        batch_size: examples per batch.

    Returns:
        The fraction of adversarial examples still classified correctly.

    Raises:
        ValueError: for no data, labels that do not match the inputs or the model's
            classes, or a model that is not a classifier.

    Example:

    >>> robust_accuracy(model, x_test, y_test, PGD(eps=0.1))
    0.52
    """
    x = np.asarray(x, np.float32)
    if x.shape[0] == 0:
        raise ValueError("robust_accuracy needs at least one example; got empty x.")
    y = _check_labels(model, y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]} labels.")
    if attack is not None and not isinstance(attack, Attack):
        raise TypeError(f"attack must be a tfprune attack (FGSM, PGD, DeepFool, CutoffScale) or None, got {attack!r}.")
    output_kind(model, attack.output if attack is not None else "auto")
    correct = 0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        inputs = xb if attack is None else attack(model, xb, yb)
        predictions = keras.ops.convert_to_numpy(model(inputs, training=False))
        correct += int(np.sum(np.argmax(predictions, axis=1) == yb))
    return correct / len(x)
