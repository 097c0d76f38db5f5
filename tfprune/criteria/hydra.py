"""HYDRA: importance scores learned on the adversarial loss.

From "HYDRA: Pruning Adversarially Robust Neural Networks" (Sehwag et al., arXiv
2002.10509). Every filter gets a score, initialised from its weights' magnitude (each
layer's scores divided by their largest, HYDRA's scaled initialisation). With the weights
frozen, the scores then learn what to keep: each layer keeps the filters of its `k` largest
scores (`k` from the update's target, `ScoringContext.keep`), and the adversarial loss of that
pruned network trains the scores through the mask, straight through (the gradient of a kept
or a dropped filter's mask reaches its score as if the mask were the score). The learned
scores rank the filters; `AdversarialTraining` fine-tunes what is kept, as in the paper.

It learns on the calibration data (`PruningCallback(data=(x, y))`) at every mask update, so
with a one-shot schedule it is HYDRA's prune-then-fine-tune and with an iterative one it
learns anew at each step. The paper learns on TRADES' loss with PGD; this module learns on
the cross-entropy of the attack's examples (those of `AdversarialTraining`), and it learns
filter scores, where the paper's are per weight.

Use it as the paper does: on a model already adversarially trained, with a one-shot
schedule and local or global ranking, then adversarial fine-tuning. Relearned at every
update of a long global-ranking schedule, each update learns for layers that keep the same
share of filters while the ranking keeps very different shares; on a digits CNN that
collapsed one run of three. Measured against L1 on a small CNN at 74 % of FLOPs removed, it
tied (tfprune's BENCHMARKS.md, section 22).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfprune.core.checks import check_integer, check_number
from tfprune.core.classifier import output_kind
from tfprune.core.gradients import compiled, variable_gradients
from tfprune.core.modelwalk import all_layers
from tfprune.criteria.base import ContextCriterion, spread_over_filters
from tfprune.criteria.taylor import mean_gradients
from tfprune.robustness.attacks import PGD
from tfprune.robustness.base import check_attack


def straight_through_top_k(scores, k, alive=None):
    """A 0/1 mask keeping the `k` largest scores; the gradient passes to the scores
    unchanged (straight through).

    Args:
        scores: a 1-D float tensor, finite.
        k: how many to keep.
        alive: which scores may be kept (the others never are, and get no gradient), or
            `None` for all. Defaults to `None`.

    Returns:
        A mask of the scores' shape: its value the 0/1 mask, its gradient the scores'.

    Example:

    >>> mask = straight_through_top_k(np.array([0.2, 0.9, -1.0, 0.5], "float32"), 2)
    >>> keras.ops.convert_to_numpy(mask).tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    scores = keras.ops.convert_to_tensor(scores)
    alive = keras.ops.ones_like(scores) if alive is None else keras.ops.cast(alive, scores.dtype)
    ranked = keras.ops.where(alive > 0, scores, -np.inf)
    ranks = keras.ops.argsort(keras.ops.argsort(-ranked))
    mask = keras.ops.cast(ranks < k, scores.dtype)
    # Adds exactly zero to the value, and the scores' gradient to the mask's.
    return mask + alive * (scores - keras.ops.stop_gradient(scores))


class _Layer:
    """One wrapped layer's filters as HYDRA learns them: its scores, the filters already
    pruned (never kept again), how many it keeps, and where each filter's mask goes."""

    def __init__(self, wrapper, keep):
        spec, granularity = wrapper.spec, wrapper.granularity
        self.wrapper = wrapper
        weight = wrapper.weight_array()
        canonical = spec.to_canonical(weight)
        n = canonical.shape[0]
        self.already = granularity.pruned_units(wrapper.mask_array(), spec)
        magnitude = np.sqrt(np.square(canonical).reshape(n, -1).sum(axis=1))
        magnitude[self.already] = 0.0
        self.scores = keras.Variable(
            (magnitude / max(float(magnitude.max()), 1e-12)).astype(np.float32),
            name=f"hydra_{wrapper.layer.name}",
        )
        alive = int(n - self.already.sum())
        self.k = int(min(alive, max(1, math.ceil(keep * n), wrapper.min_filters)))
        index = np.broadcast_to(np.arange(n)[:, None, None], canonical.shape)
        self.element_filter = spec.from_canonical(index, weight.shape).astype(np.int32)
        self.bias_filter = None
        if wrapper.bias_mask is not None:
            shape = tuple(wrapper.bias_mask.shape)
            self.bias_filter = np.zeros(shape, np.int32)
            for f in range(n):
                self.bias_filter[spec.bias_mask(np.arange(n) == f, shape) > 0] = f

    def filter_mask(self):
        """This step's mask, one value per filter; pruned filters score below every other."""
        return straight_through_top_k(keras.ops.abs(self.scores), self.k, ~self.already)

    def mapping(self, filter_mask):
        """`(variable, its value with the filter mask applied)` for the kernels and biases."""
        parts = self.wrapper.mask_parts(mask=keras.ops.take(filter_mask, self.element_filter))
        if self.bias_filter is not None:
            bias = keras.ops.take(filter_mask, self.bias_filter)
            parts += self.wrapper.mask_parts(bias=True, mask=bias)
        return [(v, v.value * keras.ops.cast(part, v.dtype)) for v, part in parts]

    def learned(self) -> np.ndarray:
        """The learned filter scores (non-negative; 0 for the filters already pruned)."""
        scores = np.abs(keras.ops.convert_to_numpy(self.scores)).astype(np.float64)
        scores[self.already] = 0.0
        return scores


@keras.saving.register_keras_serializable(package="tfprune")
class Hydra(ContextCriterion):
    """HYDRA's filter scores, learned on the adversarial loss with the weights frozen.

    See the module docstring for the method ("HYDRA: Pruning Adversarially Robust Neural
    Networks", Sehwag et al., arXiv 2002.10509). At each mask update it learns on the
    calibration examples (`PruningCallback(data=(x, y))`) for `steps` batches, with every
    HYDRA-scored layer keeping its share of filters for the update's target, and ranks the
    filters by the learned scores. Costs about `steps * (attack steps + 1)` forward and
    backward passes of `batch_size` examples per update.

    Args:
        attack: the attack whose examples give the loss, e.g. `tfprune.PGD(eps=0.1)`.
            Defaults to `None`: PGD with eps 0.1 and 5 steps.
        steps: score-learning steps (batches) per mask update, >= 1. Defaults to 100.
        batch_size: examples per step, >= 1. Defaults to 64.
        learning_rate: Adam's learning rate for the scores (they start in [0, 1]), > 0.
            Defaults to 0.01.

    Raises:
        TypeError: for an attack that is not a `tfprune` attack.
        ValueError: for steps or batch_size below 1, or a learning rate that is not positive.

    Example:

    ```python
    pruned = tfprune.prune(model, criterion="hydra", schedule=tfprune.OneShot(0.7, epoch=0))
    trainer = tfprune.AdversarialTraining(pruned, tfprune.FGSM(eps=0.1))
    trainer.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit(x, y, epochs=5, callbacks=[tfprune.PruningCallback(data=(x[:512], y[:512]))])
    ```
    """

    granularities = ("filter",)

    def __init__(self, attack=None, steps=100, batch_size=64, learning_rate=0.01):
        self.attack = PGD(eps=0.1, steps=5) if attack is None else check_attack(attack)
        self.steps = check_integer("Hydra: steps", steps, minimum=1)
        self.batch_size = check_integer("Hydra: batch_size", batch_size, minimum=1)
        self.learning_rate = check_number(
            "Hydra: learning_rate", learning_rate, low=0, include_low=False
        )

    def __call__(self, weight, layer, context):
        # Keyed by the settings: wrappers restored from a file hold equal copies.
        learned = context.cached((Hydra, repr(self.get_config())), lambda: self.learn(context))
        return spread_over_filters(layer, weight, learned[id(layer)])

    def learn(self, context) -> dict:
        """Learn the filter scores of every layer this criterion scores, on `context.data`.

        Args:
            context: the update's `ScoringContext`; `context.keep` (`None`: 0.5) is the
                share of filters each layer keeps while the scores learn.

        Returns:
            `{id(wrapped layer): learned filter scores}`.

        Raises:
            ValueError: if the context has no calibration data.
        """
        if context.data is None:
            mean_gradients(context.model, None)  # raises, saying what to pass
        keep = 0.5 if context.keep is None else context.keep
        layers = [
            _Layer(wrapper, keep)
            for wrapper in all_layers(context.model)
            if isinstance(getattr(wrapper, "criterion", None), Hydra)
        ]
        model = context.model
        from_logits = output_kind(model) == "logits"
        optimizer = keras.optimizers.Adam(self.learning_rate)
        variables = [layer.scores for layer in layers]
        optimizer.build(variables)

        def loss_of(x, y):
            mapping = [pair for layer in layers for pair in layer.mapping(layer.filter_mask())]
            with keras.StatelessScope(state_mapping=mapping):
                x_adv = keras.ops.stop_gradient(self.attack(model, x, y))
                predictions = model(x_adv, training=False)
            losses = keras.losses.sparse_categorical_crossentropy(
                y, predictions, from_logits=from_logits
            )
            return keras.ops.mean(losses)

        @compiled
        def step(x, y):
            loss, gradients = variable_gradients(lambda: loss_of(x, y), variables)
            optimizer.apply(gradients, variables)
            return loss

        x, y = np.asarray(context.data[0], np.float32), np.asarray(context.data[1])
        batch = min(self.batch_size, len(x))
        order = np.random.default_rng(0).permutation(len(x))
        for i in range(self.steps):
            chosen = order[np.arange(i * batch, (i + 1) * batch) % len(x)]
            step(keras.ops.convert_to_tensor(x[chosen]), keras.ops.convert_to_tensor(y[chosen]))
        return {id(layer.wrapper.layer): layer.learned() for layer in layers}

    def get_config(self):
        return {
            "attack": keras.saving.serialize_keras_object(self.attack),
            "steps": self.steps,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "attack": keras.saving.deserialize_keras_object(config["attack"])})
