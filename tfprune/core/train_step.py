"""What the custom `train_step`s (AdversarialTraining, LEAP, DSP) share with Keras' own."""

from __future__ import annotations

import tensorflow as tf

from tfprune.core import keras_internals


def track_loss(model, loss, x) -> None:
    """Record the step's loss in `model`'s loss tracker (what `logs["loss"]` shows).

    Under `tf.distribute`, `compute_loss` divides the loss by the replica count so that the
    summed gradients are right; the logged loss is the per-example mean again, as in Keras'
    own train step.

    Args:
        model: the `keras.Model` whose `train_step` is running.
        loss: the scalar loss from `model.compute_loss`.
        x: the step's inputs (their batch size weights the running mean).

    Example:

    ```python
    def train_step(self, data):
        ...
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred)
        track_loss(self, loss, x)
    ```
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    batch = tf.shape(tf.nest.flatten(x)[0])[0]
    keras_internals.loss_tracker(model).update_state(
        loss * tf.cast(replicas, loss.dtype), sample_weight=batch
    )


def blended_loss(inner, x, y_pred, label_loss):
    """The loss a wrapped model adds its own terms to (`Distillation` adds the teacher's).

    A training wrapper (`AdversarialTraining`) around another (`Distillation`) computes the
    label loss with its compiled loss, then lets the inner one blend in what it adds.

    Args:
        inner: the wrapped model; it contributes if it has a `blend_loss(x, y_pred, loss)`.
        x: the inputs of this term.
        y_pred: the model's outputs on `x`.
        label_loss: `compute_loss` on the labels.

    Returns:
        The blended loss, or `label_loss` for a model that adds nothing.

    Example:

    >>> float(blended_loss(keras.Sequential(), None, None, tf.constant(2.0)))
    2.0
    """
    blend = getattr(inner, "blend_loss", None)
    return label_loss if blend is None else blend(x, y_pred, label_loss)


def blended_metrics(inner) -> list:
    """The metrics a wrapped model's `blend_loss` updates, for the outer model's `logs`.

    Keras leaves the metrics of a nested training model out of the outer one's; a training
    wrapper adds these to its `metrics` so that they are logged.

    Args:
        inner: the wrapped model; it contributes if it has `blend_metrics`.

    Returns:
        A list of `keras.metrics.Metric`s, empty for a model that blends nothing.

    Example:

    >>> blended_metrics(keras.Sequential())
    []
    """
    return list(getattr(inner, "blend_metrics", []))
