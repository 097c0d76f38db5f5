"""How a training wrapper around another (`AdversarialTraining` around `Distillation`) lets
the inner one add its loss terms and metrics, on every backend."""

from __future__ import annotations


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

    >>> float(blended_loss(keras.Sequential(), None, None, np.float32(2.0)))
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
