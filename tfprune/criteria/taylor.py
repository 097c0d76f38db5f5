"""First-order Taylor importance: how much the loss would change if a weight were removed.

From "Importance Estimation for Neural Network Pruning" (Molchanov et al., arXiv
1906.10771). `RobustTaylor` takes the same first-order estimate on adversarial examples, so
that it ranks weights by what they do for robust accuracy, as robustness-aware pruning does
("HYDRA: Pruning Adversarially Robust Neural Networks", Sehwag et al., arXiv 2002.10509,
scores weights on the adversarial loss). They need the loss's gradients, which
`tfprune.core.gradients` computes on each backend; `tfprune.criteria.get("taylor")` loads
this module on first use.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core.classifier import output_kind
from tfprune.core.gradients import variable_gradients
from tfprune.core.modelwalk import all_layers
from tfprune.criteria.base import ContextCriterion
from tfprune.layers import registry
from tfprune.layers.mask_layout import mask_layout, pruned_variables
from tfprune.robustness.attacks import PGD
from tfprune.robustness.base import check_attack


def mean_gradients(model, data, batch_size=64, batches=4) -> dict:
    """Mean gradient of the cross-entropy loss with respect to every wrapped layer's weight.

    Args:
        model: a pruned classifier (its `PruneWrapper`s hold the weights).
        data: `(x, y)` calibration examples with integer labels.
        batch_size: examples per batch. Defaults to 64.
        batches: at most this many batches. Defaults to 4.

    Returns:
        `{id(variable): mean gradient as a NumPy array}`.

    Raises:
        ValueError: if `data` is `None`.

    Example:

    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    >>> pruned = tfprune.prune(model, granularity="unstructured", protect=None)
    >>> data = (np.ones((4, 3)), np.array([0, 1, 0, 1]))
    >>> [gradient.shape for gradient in mean_gradients(pruned, data).values()]
    [(3, 2)]
    """
    if data is None:
        raise ValueError(
            "The taylor criterion needs calibration data: pass PruningCallback(data=(x, y)) (a "
            "few hundred training examples) or apply_target(model, target, data=(x, y))."
        )
    x, y = np.asarray(data[0], np.float32), np.asarray(data[1])
    variables = []
    # Every wrapped layer, nested models included (a wrapper holds its layer in `.layer`).
    for layer in all_layers(model):
        owner = getattr(layer, "layer", None)
        spec = registry.spec_for(owner) if owner is not None else None
        if spec is not None:
            variables.extend(pruned_variables(owner, spec))
    from_logits = output_kind(model) == "logits"
    totals = [np.zeros(v.shape, np.float64) for v in variables]
    count = 0
    for start in range(0, min(len(x), batch_size * batches), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]

        def batch_loss(xb=xb, yb=yb):
            predictions = model(xb, training=False)
            losses = keras.losses.sparse_categorical_crossentropy(
                yb, predictions, from_logits=from_logits
            )
            return keras.ops.mean(losses)

        for total, gradient in zip(totals, variable_gradients(batch_loss, variables)[1]):
            total += keras.ops.convert_to_numpy(gradient)
        count += 1
    return {id(v): t / max(count, 1) for v, t in zip(variables, totals)}


@keras.saving.register_keras_serializable(package="tfprune")
class Taylor(ContextCriterion):
    """First-order Taylor importance `|w * dL/dw|`, the gradient averaged over calibration
    batches (`PruningCallback(data=(x, y))`): the loss change if a weight is removed.

    Example:

    ```python
    pruned = tfprune.prune(model, criterion="taylor")
    pruned.fit(x, y, callbacks=[tfprune.PruningCallback(data=(x[:512], y[:512]))])
    ```
    """

    def __call__(self, weight, layer, context):
        gradients = context.cached(
            (Taylor, "mean_gradients"), lambda: mean_gradients(context.model, context.data)
        )
        return _first_order(weight, layer, gradients)


def _first_order(weight, layer, gradients) -> np.ndarray:
    """`|w * dL/dw|` for one layer's pruned weight, from `mean_gradients`."""
    # A recurrent layer's mask covers its kernel and recurrent kernel: so do the gradients.
    layout = mask_layout(layer, registry.spec_for(layer))
    gradient = layout.assemble([gradients[id(v)] for v, _, _ in layout.kernels])
    return np.abs(weight * gradient)


@keras.saving.register_keras_serializable(package="tfprune")
class RobustTaylor(ContextCriterion):
    """First-order Taylor importance on adversarial examples: `|w * dL(x_adv)/dw|`, where
    `x_adv` attacks the current weights (made anew at every mask update) from the calibration
    examples (`PruningCallback(data=(x, y))`). It keeps the weights the robust loss leans on.

    Args:
        attack: the attack that makes the examples, e.g. `tfprune.PGD(eps=0.1)`. Defaults to
            `None`: PGD with eps 0.1 and 5 steps.

    Raises:
        TypeError: for an attack that is not a `tfprune` attack.

    Example:

    ```python
    criterion = tfprune.criteria.RobustTaylor(tfprune.PGD(eps=0.1, steps=5))
    pruned = tfprune.prune(model, criterion=criterion)  # or criterion="robust_taylor"
    trainer = tfprune.AdversarialTraining(pruned, tfprune.PGD(eps=0.1))
    trainer.compile("adam", "sparse_categorical_crossentropy")
    trainer.fit(x, y, callbacks=[tfprune.PruningCallback(data=(x[:512], y[:512]))])
    ```
    """

    def __init__(self, attack=None):
        self.attack = PGD(eps=0.1, steps=5) if attack is None else check_attack(attack)

    def __call__(self, weight, layer, context):
        def adversarial_gradients():
            if context.data is None:
                mean_gradients(context.model, None)  # raises, saying what to pass
            x, y = context.data
            x_adv = keras.ops.convert_to_numpy(self.attack(context.model, x, y))
            return mean_gradients(context.model, (x_adv, y))

        # Keyed by the attack's settings: wrappers restored from a file hold equal copies.
        key = (RobustTaylor, repr(self.get_config()))
        gradients = context.cached(key, adversarial_gradients)
        return _first_order(weight, layer, gradients)

    def get_config(self):
        return {"attack": keras.saving.serialize_keras_object(self.attack)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["attack"]))
