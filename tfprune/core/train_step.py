"""What the custom `train_step`s (LEAP, DSP, Distillation) share with Keras' own."""

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
