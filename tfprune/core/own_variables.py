"""The training side of a pruning method that learns its masks (LEAP's scores, DSP's group
logits) inside `fit`, on every backend: its own variables get their own optimizer, and its
regulariser joins the loss that each backend's train step differentiates."""

from __future__ import annotations

import keras

from tfprune.core.gradients import replicas_in_sync
from tfprune.core.paired_optimizer import PairedOptimizer


class TrainsOwnVariables:
    """For a `keras.Model` that learns variables of its own under a regulariser (LEAP's
    scores, DSP's logits), in the train step of every backend.

    `compile` pairs the user's optimizer with an Adam for those variables, and a loaded
    model compiles the same way; `compute_loss` adds the regulariser in training. A subclass
    names its variables and their learning rate in `own_training` and returns the weighted
    regulariser from `penalty`. Put it before `keras.Model` among the bases.

    Example:

    ```python
    class Scaled(TrainsOwnVariables, keras.Model):
        def own_training(self):
            return 1e-2, [self.scale]

        def penalty(self):
            return 1e-3 * keras.ops.square(self.scale)
    ```
    """

    def own_training(self) -> tuple:
        """`(learning rate, variables)` of the model's own variables."""
        raise NotImplementedError

    def penalty(self):
        """The regulariser times its coefficient for this training step (a scalar tensor);
        it may advance the method's own counters and log through its metrics."""
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The model's loss plus `penalty()` in training; the loss alone in evaluation.

        Keras' train step of each backend calls it and differentiates the sum with respect
        to the model's weights and the method's own variables.

        Arguments and return value: those of `keras.Model.compute_loss`.
        """
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if not training:
            return loss
        # Divided by the replicas as compute_loss divides the model's loss, so both sum right.
        return loss + self.penalty() / replicas_in_sync()

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """`keras.Model.compile`, with `optimizer` for the wrapped model's weights and an Adam
        for the method's own variables (one `PairedOptimizer`).

        Args:
            optimizer: the model's optimizer, as `keras.Model.compile` takes it. Defaults to
                `"rmsprop"`, as there.
            *args: `keras.Model.compile`'s other arguments (`loss`, ...).
            **kwargs: `keras.Model.compile`'s keyword arguments.
        """
        learning_rate, variables = self.own_training()
        optimizer = PairedOptimizer.around(optimizer, learning_rate, variables)
        super().compile(optimizer, *args, **kwargs)

    def compile_from_config(self, config):
        """Compile a loaded model as it was compiled, its optimizer built for its state.

        Keras leaves a model with its own `compile` uncompiled when it loads it; this one
        compiles the same way whichever `compile` is used.

        Args:
            config: what `get_compile_config` returned when the model was saved.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)
