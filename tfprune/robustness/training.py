"""Adversarial training inside plain `model.fit`: a model that wraps yours.

`AdversarialTraining(model, attack, weight)` is a Keras model whose training loss makes
adversarial examples of each batch with `attack` (against the current weights, so also
against the current masks) and is `(1 - weight) * loss(x) + weight * loss(x_adv)`.
Everything else (`compile`, `fit`, the train step of each backend, callbacks, `evaluate`,
`predict`) is Keras' own, and `PruningCallback` finds the pruned layers inside. Why a
wrapping model and not a callback: a callback cannot change what a training step computes;
`compute_loss` can, on TensorFlow, JAX and PyTorch alike, and wrapping keeps the user's
functional model untouched and prunable. Wrapping a `Distillation` distils on both terms:
the inner model blends the teacher's term into each.
"""

from __future__ import annotations

import keras

from tfprune.core import checks, modelwalk
from tfprune.core.blending import blended_loss, blended_metrics
from tfprune.core.classifier import output_kind
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

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """`(1 - weight) * loss(x) + weight * loss(x_adv)` in training; the clean loss in
        evaluation.

        Keras' train step of each backend calls this with the clean batch's predictions;
        the adversarial examples are made here, against the weights as they are (no
        gradient flows through them), and predicted in training mode, so BatchNormalization
        sees both batches.

        Arguments and return value: those of `keras.Model.compute_loss`.
        """
        clean = super().compute_loss(x, y, y_pred, sample_weight, training)
        clean = blended_loss(self.model, x, y_pred, clean)
        if not training:
            return clean
        inputs = keras.ops.cast(x, "float32")
        labels = keras.ops.cast(keras.ops.reshape(y, (-1,)), "int32")
        x_adv = keras.ops.stop_gradient(self.attack.generate(self.model, inputs, labels, self.kind))
        y_adv = self(x_adv, training=True)
        adversarial = super().compute_loss(x_adv, y, y_adv, sample_weight, training)
        adversarial = blended_loss(self.model, x_adv, y_adv, adversarial)
        return (1.0 - self.weight) * clean + self.weight * adversarial

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
