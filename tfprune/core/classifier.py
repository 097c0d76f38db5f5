"""What tfprune reads off a classifier: whether it outputs probabilities or logits."""

from __future__ import annotations

from tfprune.core import checks, keras_internals

OUTPUT_KINDS = ("auto", "probabilities", "logits")


def output_kind(model, output: str = "auto") -> str:
    """Resolve whether `model` outputs probabilities or logits.

    Args:
        model: a Keras model with one `(batch, classes)` output.
        output: `"auto"` (probabilities if the last layer's activation is a softmax, else
            logits), `"probabilities"` or `"logits"`. Defaults to `"auto"`.

    Returns:
        `"probabilities"` or `"logits"`.

    Raises:
        ValueError: for an unknown `output`, or a model whose output is not one score per
            class.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> output_kind(model)
    'probabilities'
    """
    checks.check_choice("output", output, OUTPUT_KINDS)
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    if shape is None or len(model.outputs) != 1 or len(shape) != 2 or (shape[-1] or 0) < 2:
        raise ValueError(
            "Attacks, robust accuracy and distillation need one output of class scores, shape "
            f"(batch, classes >= 2); model '{model.name}' outputs "
            f"{[tuple(o.shape) for o in getattr(model, 'outputs', [])]}. Give a classifier."
        )
    if output != "auto":
        return output
    last, _ = keras_internals.producer_of(model.outputs[0])
    activation = getattr(getattr(last, "layer", last), "activation", None)
    return "probabilities" if getattr(activation, "__name__", "") == "softmax" else "logits"
