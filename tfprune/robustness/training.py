"""Adversarial training inside plain `model.fit`: a model that wraps yours.

`AdversarialTraining(model, attack, weight)` is a Keras model whose `train_step` makes
adversarial examples of each batch with `attack` (against the current weights, so also
against the current masks) and minimises `(1 - weight) * loss(x) + weight * loss(x_adv)`.
Everything else (`compile`, `fit`, callbacks, `evaluate`, `predict`) is Keras' own, and
`PruningCallback` finds the pruned layers inside. Why a wrapping model and not a callback:
a callback cannot change what a training step computes; a `train_step` override can, and
wrapping keeps the user's functional model untouched and prunable. Wrapping a
`Distillation` distils on both terms: the inner model blends the teacher's term into each.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfprune.core import checks, modelwalk
from tfprune.core.classifier import output_kind
from tfprune.core.train_step import blended_loss, blended_metrics, track_loss
from tfprune.robustness.attacks import CutoffScale
from tfprune.robustness.base import check_attack


@keras.saving.register_keras_serializable(package="tfprune")
class AdversarialTraining(keras.Model):
    """Train `model` on a mix of clean and adversarial examples, within `fit`.

    Args:
        model: a functional or Sequential classifier (pruned or not).
        attack: a `tfprune` attack; `FGSM(eps)` for fixed-budget adversarial training, or
            `CutoffScale()` for the per-example budget of "Blind Adversarial Pruning: Balance
            Accuracy, Efficiency and Robustness" (Xie et al., arXiv 2004.05913). Defaults to
            `None`, which means `CutoffScale()`.
        weight: share of the adversarial loss, in [0, 1]; 0.5 is BAP's 50/50 loss. Defaults
            to 0.5.
        **kwargs: base `keras.Model` arguments.

    Raises:
        TypeError: if `attack` is not a tfprune attack or `model` is not a Keras model.
        ValueError: for a weight outside [0, 1], or a model that is not a classifier.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(3, activation="softmax", name="head")])
    >>> pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    >>> trainer = AdversarialTraining(pruned, tfprune.FGSM(eps=0.1), weight=0.5)
    >>> trainer.compile("adam", "sparse_categorical_crossentropy")
    >>> x, y = np.random.rand(16, 4), np.arange(16) % 3
    >>> history = trainer.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    >>> history.history["sparsity"]
    [0.5]
    """

    def __init__(self, model, attack=None, weight=0.5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        if isinstance(attack, dict):
            attack = keras.saving.deserialize_keras_object(attack)
        if not isinstance(model, keras.Model):
            raise TypeError(f"AdversarialTraining needs a keras.Model, got {type(model).__name__}.")
        attack = CutoffScale() if attack is None else attack
        check_attack(attack)
        checks.check_number("weight", weight, 0, 1)
        # A training wrapper inside (Distillation) has no graph; its classifier does.
        self.kind = output_kind(modelwalk.trained_model(model), attack.output)
        self.model = model
        self.attack = attack
        self.weight = float(weight)

    @property
    def inner_model(self):
        """The wrapped model: what tfprune's callbacks prune and what you export."""
        return self.model

    @property
    def metrics(self):
        """Keras' metrics plus those a wrapped `Distillation` updates (its loss terms)."""
        return super().metrics + blended_metrics(self.model)

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_flat = tf.cast(tf.reshape(y, [-1]), tf.int32)
        x = tf.convert_to_tensor(x, tf.float32)
        # Examples are made against the weights as they are now (no gradient through them).
        x_adv = tf.stop_gradient(self.attack.generate(self.model, x, y_flat, self.kind))
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            clean = self.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            clean = blended_loss(self.model, x, y_pred, clean)
            y_adv = self(x_adv, training=True)
            adversarial = self.compute_loss(
                x=x_adv, y=y, y_pred=y_adv, sample_weight=sample_weight, training=True
            )
            adversarial = blended_loss(self.model, x_adv, y_adv, adversarial)
            loss = (1.0 - self.weight) * clean + self.weight * adversarial
            track_loss(self, loss, x)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "attack": keras.saving.serialize_keras_object(self.attack),
            "weight": self.weight,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
