"""Knowledge distillation inside plain `model.fit`: the dense model teaches the pruned one.

`Distillation(student, teacher, temperature, alpha)` is a Keras model whose training loss
(`compute_loss`, which each backend's own train step calls) is
`(1 - alpha) * loss(labels, student(x)) + alpha * T^2 * KL(p_T || q_T)`, where `p_T` and
`q_T` are the teacher's and the student's class probabilities softened by the
temperature `T`, as in "Distilling the Knowledge in a Neural Network" (Hinton, Vinyals and
Dean, arXiv 1503.02531); the `T^2` keeps the soft term's gradients on the scale of the hard
one's. The usual teacher is the dense model before pruning: it recovers accuracy that
pruning to a small model loses. Only the student trains; the teacher runs in inference mode
and its weights never change (it is copied and frozen, so the optimizer and its checkpoints
hold the student's variables only).

It composes: `PruningCallback` finds the student's pruned layers inside, and
`AdversarialTraining(Distillation(...), attack)` distils on clean and adversarial examples
alike (the adversarial training asks the inner model for its `blend_loss`).
"""

from __future__ import annotations

import keras

from tfprune.core import checks
from tfprune.core.classifier import output_kind
from tfprune.core.gradients import replicas_in_sync
from tfprune.masking.wrappers import wrappers_of


def _log_probabilities(outputs, kind, temperature):
    """Log of the softened class probabilities, from logits or from probabilities."""
    if kind == "probabilities":
        # log(p) are logits up to a per-row constant, which the softmax removes.
        outputs = keras.ops.log(keras.ops.clip(outputs, 1e-12, 1.0))
    return keras.ops.log_softmax(outputs / temperature, axis=-1)


def _frozen_copy(teacher):
    """A copy of the teacher to freeze: the user's model stays as it was, and the optimizer
    (and its checkpoints) hold the student's variables only."""
    checks.check_model(teacher, "Distillation (teacher)")
    copy = keras.models.clone_model(teacher)
    copy.set_weights(teacher.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="tfprune")
class Distillation(keras.Model):
    """Train `student` on its labels and on `teacher`'s softened outputs, within `fit`.

    Args:
        student: the classifier that trains (pruned or not), one `(batch, classes)` output.
        teacher: a functional or Sequential classifier with the same classes, usually the
            dense model before pruning. `Distillation` holds a frozen copy of it (the
            `teacher` attribute), so the model you pass is never trained or modified.
        temperature: the softening temperature `T` (> 0); 1 compares the plain
            probabilities. Defaults to 4.0.
        alpha: the share of the distillation term, in [0, 1]; 0 is training on labels
            alone. Defaults to 0.5.
        student_output: `"auto"`, `"probabilities"` or `"logits"` (as for attacks).
            Defaults to `"auto"`.
        teacher_output: the same for the teacher. Defaults to `"auto"`.
        **kwargs: base `keras.Model` arguments.

    Raises:
        TypeError: if `student` or `teacher` is not a Keras model.
        ValueError: for a temperature <= 0, an alpha outside [0, 1], outputs that are not
            class scores, a different number of classes, or a teacher that holds pruning
            wrappers (`PruningCallback` would prune it too; give `tfprune.strip(teacher)`).

    Example:

    >>> dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(3, name="head")])
    >>> pruned = tfprune.prune(dense, schedule=tfprune.OneShot(0.5))
    >>> trainer = Distillation(pruned, teacher=dense, temperature=4.0, alpha=0.5)
    >>> trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.random.rand(16, 4), np.arange(16) % 3
    >>> history = trainer.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    >>> sorted(k for k in history.history if k.endswith("loss")), history.history["sparsity"]
    (['distillation_loss', 'label_loss', 'loss'], [0.5])
    """

    def __init__(
        self,
        student,
        teacher,
        temperature=4.0,
        alpha=0.5,
        student_output="auto",
        teacher_output="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(student, dict):
            student = keras.saving.deserialize_keras_object(student)
        owned = isinstance(teacher, dict)  # deserialized here: nobody else holds it
        if owned:
            teacher = keras.saving.deserialize_keras_object(teacher)
        for name, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise TypeError(f"Distillation: {name} must be a keras.Model, got {model!r}.")
        temperature = checks.check_number("temperature", temperature, 0, include_low=False)
        alpha = checks.check_number("alpha", alpha, 0, 1)
        if wrappers_of(teacher):
            raise ValueError(
                f"Distillation: teacher '{teacher.name}' holds PruneWrapper layers, which "
                "PruningCallback would prune as well. Give the dense model, or "
                "tfprune.strip(teacher)."
            )
        self.student_kind = output_kind(student, student_output)
        self.teacher_kind = output_kind(teacher, teacher_output)
        classes = (student.outputs[0].shape[-1], teacher.outputs[0].shape[-1])
        if classes[0] != classes[1]:
            raise ValueError(
                f"Distillation: student '{student.name}' has {classes[0]} classes and teacher "
                f"'{teacher.name}' {classes[1]}; they must score the same classes."
            )
        self.student = student
        self.teacher = teacher if owned else _frozen_copy(teacher)
        self.teacher.trainable = False
        self.temperature, self.alpha = temperature, alpha
        self.student_output, self.teacher_output = student_output, teacher_output
        self.label_tracker = keras.metrics.Mean(name="label_loss")
        self.distillation_tracker = keras.metrics.Mean(name="distillation_loss")

    @property
    def inner_model(self):
        """The student: what tfprune's callbacks prune and what you export."""
        return self.student

    @property
    def blend_metrics(self):
        """The label and distillation losses `blend_loss` tracks (logged by wrappers too)."""
        return [self.label_tracker, self.distillation_tracker]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def distillation_loss(self, x, y_pred):
        """The soft term `T^2 * KL(p_T || q_T)`, averaged over the batch.

        Args:
            x: the inputs the student saw.
            y_pred: the student's outputs on `x`.

        Returns:
            A scalar tensor.
        """
        teacher = self.teacher(x, training=False)
        targets = keras.ops.stop_gradient(
            _log_probabilities(teacher, self.teacher_kind, self.temperature)
        )
        predicted = _log_probabilities(y_pred, self.student_kind, self.temperature)
        divergence = keras.ops.sum(keras.ops.exp(targets) * (targets - predicted), axis=-1)
        # Divided by the replicas as compute_loss divides the label loss, so both sum right.
        return self.temperature**2 * keras.ops.mean(divergence) / replicas_in_sync()

    def blend_loss(self, x, y_pred, label_loss):
        """The training loss from the label loss: `(1 - alpha) * label + alpha * soft`.

        `AdversarialTraining` calls it for the clean and the adversarial term when it wraps
        a `Distillation`.

        Args:
            x: the inputs the student saw.
            y_pred: the student's outputs on `x`.
            label_loss: `compute_loss` on the labels.

        Returns:
            A scalar tensor.
        """
        soft = self.distillation_loss(x, y_pred)
        replicas = replicas_in_sync()
        self.label_tracker.update_state(label_loss * replicas)
        self.distillation_tracker.update_state(soft * replicas)
        return (1.0 - self.alpha) * label_loss + self.alpha * soft

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The label loss blended with the distillation term in training (`blend_loss`);
        the label loss alone in evaluation.

        Args:
            x: what the student and the teacher see. Defaults to `None`.
            y: the labels of the hard term. Defaults to `None`.
            y_pred: the student's outputs on `x`. Defaults to `None`.
            sample_weight: weights of the label loss's examples. Defaults to `None`.
            training: `True` in a train step, `False` in `evaluate`. Defaults to `True`.

        Returns:
            A scalar tensor.
        """
        label_loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return self.blend_loss(x, y_pred, label_loss) if training else label_loss

    def get_config(self):
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "student_output": self.student_output,
            "teacher_output": self.teacher_output,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
