"""LEAP: learnable pruning for transformers.

From "LEAP: Learnable Pruning for Transformer-based Models" (Yao et al., arXiv 2105.14636).

Every prunable weight gets learnable scores `S` (one per element, output row, or attention
head) and a learnable threshold `T`. The mask keeps the `ceil(sigmoid(T) * n)` highest scores;
gradients pass straight through it (`dL/dS = dL/dM`, `dL/dT = sum(dL/dM * M)`). A regulariser
pulls the density down to the target `r`: `R = (d - r)^2` while `d > r`, where `d` is the
masks' density in value and the thresholds' sigmoid density in gradient, with coefficient
`max(lambda_max * R / (1 - r)^2, 50)`, and 10 once `R < 3e-4`. Scores and thresholds train
with their own Adam and learning rate (a `PairedOptimizer` beside the compiled one, so Keras'
own train step runs LEAP on TensorFlow, JAX and PyTorch).

Granularities:

- `"element"`: every kernel element of Dense, EinsumDense and MultiHeadAttention layers;
- `"row"`: output units of Dense / EinsumDense layers (and heads of MultiHeadAttention);
- `"head"`: attention heads only.

A head is masked through its value projection (kernel and bias): its attention output is then
exactly zero, as if the head were not there. `LEAP.pruned_model()` bakes the masks into a plain
copy; `tfprune.shrink` removes the dead heads and the dead Dense units, so the result is
physically smaller and exports to LiteRT.
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np
from keras import ops

from tfprune.core import checks, keras_internals
from tfprune.core.latest_value import LatestValue
from tfprune.core.modelwalk import all_layers
from tfprune.core.own_variables import TrainsOwnVariables
from tfprune.core.stateless import call_with_values

GRANULARITIES = ("element", "row", "head")


@dataclasses.dataclass
class _Target:
    """One pruned layer: its units, and how a unit mask reaches each of its variables."""

    layer: keras.layers.Layer
    n_units: int
    params_per_unit: int
    # (variable, function(unit_mask) -> mask broadcastable to the variable)
    masked: list


def _along(axis, ndim):
    """Broadcast a unit mask along `axis` of an `ndim`-dimensional variable."""

    def expand(mask):
        shape = [1] * ndim
        shape[axis] = -1
        return ops.reshape(mask, shape)

    return expand


def _targets_of(layer, granularity):
    """The `_Target`s LEAP prunes in `layer` at `granularity` (empty for other layers)."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        sub = list(keras_internals.attention_projections(layer).values())
        if granularity == "element":
            return [
                _Target(
                    d,
                    int(np.prod(d.kernel.shape)),
                    1,
                    [(d.kernel, lambda m, s=tuple(d.kernel.shape): ops.reshape(m, s))],
                )
                for d in sub
            ]
        value = sub[2]
        heads = layer.num_heads
        per_head = (
            sum(int(np.prod(v.shape)) for d in sub[:3] for v in d.weights) // heads
            + int(np.prod(sub[3].kernel.shape)) // heads
        )
        masked = [(value.kernel, _along(1, 3))]
        if value.bias is not None:
            masked.append((value.bias, _along(0, 2)))
        return [_Target(layer, heads, per_head, masked)]
    if granularity == "head" or not isinstance(
        layer, (keras.layers.Dense, keras.layers.EinsumDense)
    ):
        return []
    kernel = layer.kernel
    if granularity == "element":
        return [
            _Target(
                layer,
                int(np.prod(kernel.shape)),
                1,
                [(kernel, lambda m, s=tuple(kernel.shape): ops.reshape(m, s))],
            )
        ]
    units = int(kernel.shape[-1])
    bias = getattr(layer, "bias", None)
    masked = [(kernel, _along(len(kernel.shape) - 1, len(kernel.shape)))]
    if bias is not None and int(bias.shape[-1]) == units:
        masked.append((bias, _along(len(bias.shape) - 1, len(bias.shape))))
    return [_Target(layer, units, int(np.prod(kernel.shape)) // units, masked)]


def _kept(threshold, n):
    """How many of `n` units the threshold keeps: ceil(sigmoid(T) n), at least 1 (int32)."""
    return ops.clip(ops.cast(ops.ceil(ops.sigmoid(threshold) * n), "int32"), 1, n)


def top_k_mask(scores, threshold):
    """Keep the ceil(sigmoid(T) n) highest scores (ties by index); straight-through gradients.

    Written with Keras ops, so it runs (and differentiates) on every backend: the value is
    the 0/1 mask, and the gradient reaches the scores as if the mask were the scores, and the
    threshold as if each kept unit were the threshold.

    Args:
        scores: a 1-D tensor of unit scores.
        threshold: the scalar threshold `T`.

    Returns:
        A 0/1 mask of the scores' shape; its gradient passes straight to `scores`, and to
        `threshold` as the sum of the upstream gradient over the kept units.

    Example:

    >>> mask = top_k_mask(keras.ops.convert_to_tensor([0.1, 0.9, 0.5, 0.3]), 0.0)  # keep half
    >>> keras.ops.convert_to_numpy(mask).tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    scores = ops.convert_to_tensor(scores)
    threshold = ops.convert_to_tensor(threshold, scores.dtype)
    n = scores.shape[0]
    keep = _kept(threshold, n)
    kth = ops.take(ops.flip(ops.sort(scores), axis=0), keep - 1)
    above = ops.cast(scores > kth, scores.dtype)
    tied = ops.cast(scores == kth, scores.dtype)
    # Of the scores equal to the k-th highest, the first by index fill the places left.
    places = ops.cast(keep, scores.dtype) - ops.sum(above)
    mask = ops.stop_gradient(above + tied * ops.cast(ops.cumsum(tied) <= places, scores.dtype))
    return (
        mask
        + (scores - ops.stop_gradient(scores))
        + mask * (threshold - ops.stop_gradient(threshold))
    )


@keras.saving.register_keras_serializable(package="tfprune")
class LEAP(TrainsOwnVariables, keras.Model):
    """Train a model with LEAP's learnable masks; `compile` and `fit` it like the model.

    The compiled optimizer trains the model's weights; scores and thresholds train with
    their own Adam at `score_learning_rate` (LEAP's two learning rates). Each epoch logs
    `density` (kept fraction of the pruned layers' parameters under the hard masks) and
    `leap_lambda`.

    Args:
        model: a Keras 3 functional model with Dense, EinsumDense or MultiHeadAttention layers.
        target_density: fraction of the pruned layers' parameters to keep, in (0, 1).
            Defaults to 0.3.
        granularity: `"element"`, `"row"` or `"head"` (see the module docstring). Defaults
            to `"row"`.
        layers: names of layers to prune, or `None` for every eligible layer but the last.
            Defaults to `None`.
        score_learning_rate: Adam learning rate of scores and thresholds. Defaults to 1e-2.
        lambda_max: the regulariser's maximum coefficient. Defaults to 160.
        initial_threshold: `T` at the start (10: sigmoid ~ 1, keep everything). Defaults
            to 10.

    Raises:
        TypeError: for a model that is not a Keras 3 functional/Sequential model.
        ValueError: for a density outside (0, 1), an unknown granularity, unknown layer names,
            or nothing to prune.

    Example:

    ```python
    leap = tfprune.methods.LEAP(model, target_density=0.3, granularity="row")
    leap.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    leap.fit(x, y, epochs=10)
    small = tfprune.shrink(leap.pruned_model())
    ```
    """

    def __init__(
        self,
        model,
        target_density=0.3,
        granularity="row",
        layers=None,
        score_learning_rate=1e-2,
        lambda_max=160.0,
        initial_threshold=10.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        checks.check_model(model, "LEAP")
        checks.check_number(
            "LEAP: target_density", target_density, 0, 1, include_low=False, include_high=False
        )
        checks.check_choice("LEAP: granularity", granularity, GRANULARITIES)
        eligible = [layer for layer in all_layers(model) if _targets_of(layer, granularity)]
        if layers is None:
            chosen = [layer for layer in eligible if layer is not model.layers[-1]]
        else:
            names = {layer.name: layer for layer in eligible}
            unknown = sorted(set(layers) - set(names))
            if unknown:
                raise ValueError(
                    f"LEAP: {unknown} are not layers LEAP can prune at granularity '{granularity}' "
                    "(Dense, EinsumDense, MultiHeadAttention)."
                )
            chosen = [names[name] for name in layers]
        self.targets = [t for layer in chosen for t in _targets_of(layer, granularity)]
        if not self.targets:
            raise ValueError(
                f"LEAP: the model has no layer to prune at granularity '{granularity}'."
            )
        self.model = model
        self.target_density = float(target_density)
        self.granularity = granularity
        self.layer_names = [layer.name for layer in chosen]
        self.score_learning_rate = float(score_learning_rate)
        self.lambda_max = float(lambda_max)
        self.initial_threshold = float(initial_threshold)
        # Trainable, so that each backend's train step differentiates them; `compile` gives
        # them their own Adam (LEAP's second learning rate).
        self.scores = [
            self.add_weight(
                shape=(t.n_units,), initializer="zeros", trainable=True, name=f"scores_{i}"
            )
            for i, t in enumerate(self.targets)
        ]
        self.thresholds = [
            self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(initial_threshold),
                trainable=True,
                name=f"threshold_{i}",
            )
            for i in range(len(self.targets))
        ]
        self.coefficient = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(50.0),
            trainable=False,
            name="leap_lambda",
        )
        self._weights_per_target = np.array(
            [t.n_units * t.params_per_unit for t in self.targets], np.float32
        )
        self.density_tracker = LatestValue(name="density")
        self.lambda_tracker = LatestValue(name="leap_lambda")
        # The wrapped model is built, so this model is too (saving would warn otherwise).
        self.built = True

    @property
    def inner_model(self):
        """The model whose weights LEAP masks (what tfprune's other tools act on)."""
        return self.model

    def own_training(self) -> tuple:
        """`(Adam learning rate, variables)` of the scores and thresholds (see
        `TrainsOwnVariables`)."""
        return self.score_learning_rate, self.scores + self.thresholds

    def _unit_masks(self):
        return [top_k_mask(s.value, t.value) for s, t in zip(self.scores, self.thresholds)]

    def _masked_values(self, unit_masks) -> dict:
        """`{id(variable): its value times its unit mask}` for every masked variable."""
        return {
            id(variable): variable.value * ops.cast(expand(mask), variable.dtype)
            for target, mask in zip(self.targets, unit_masks)
            for variable, expand in target.masked
        }

    def call(self, inputs, training=False):
        values = self._masked_values(self._unit_masks())
        return call_with_values(self.model, values, inputs, training=training)

    def densities(self):
        """(hard density of the masks, soft density implied by the thresholds)."""
        weights = ops.convert_to_tensor(self._weights_per_target)
        # A mask keeps exactly its threshold's count: no need to rank the scores again.
        hard = ops.stack(
            [
                ops.cast(_kept(threshold.value, target.n_units), "float32") / target.n_units
                for threshold, target in zip(self.thresholds, self.targets)
            ]
        )
        soft = ops.stack([ops.sigmoid(t.value) for t in self.thresholds])
        total = ops.sum(weights)
        return ops.sum(hard * weights) / total, ops.sum(soft * weights) / total

    def penalty(self):
        """The density regulariser times its coefficient, for this training step (see
        `TrainsOwnVariables`); the coefficient of the next step is set, and `density` and
        `leap_lambda` are logged.

        Returns:
            A scalar backend tensor.
        """
        r = self.target_density
        hard, soft = self.densities()
        # The value is the masks' real density (ceil per layer included), the gradient
        # the thresholds' smooth one: the target is met by the masks, not the sigmoids.
        density = soft + ops.stop_gradient(hard - soft)
        regulariser = ops.square(ops.relu(density - r))
        # A copy of this step's coefficient, before it changes for the next (TensorFlow and
        # PyTorch would read the variable at use, or find it changed for the backward pass).
        coefficient = ops.copy(self.coefficient.value)
        self.coefficient.assign(
            ops.where(
                regulariser < 3e-4,
                10.0,
                ops.maximum(self.lambda_max * ops.stop_gradient(regulariser) / (1 - r) ** 2, 50.0),
            )
        )
        self.density_tracker.update_state(hard)
        self.lambda_tracker.update_state(self.coefficient.value)
        return coefficient * regulariser

    def pruned_model(self) -> keras.Model:
        """A plain copy of the model with the hard masks multiplied into its weights.

        Returns:
            A new functional model (the wrapped one is untouched); masked heads and rows are
            exact zeros, ready for `tfprune.shrink`.

        Warns:
            UserWarning: when the masks keep more than `target_density` (plus 2 points):
                the thresholds had too few steps to come down from `initial_threshold`.
        """
        unit_masks = self._unit_masks()
        hard = float(self.densities()[0])
        if hard > self.target_density + 0.02:
            warnings.warn(
                f"LEAP: the masks keep {hard:.0%} of the pruned layers' parameters, above "
                f"target_density={self.target_density}: the thresholds have not come down "
                f"from initial_threshold={self.initial_threshold} yet. Train longer, raise "
                "score_learning_rate or lower initial_threshold.",
                stacklevel=2,
            )
        copy = keras.models.clone_model(self.model)
        copy.set_weights(self.model.get_weights())
        masked = {
            key: keras.ops.convert_to_numpy(value)
            for key, value in self._masked_values(unit_masks).items()
        }
        for source, target in zip(self.model.weights, copy.weights):
            if id(source) in masked:
                target.assign(masked[id(source)])
        return copy

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "target_density": self.target_density,
            "granularity": self.granularity,
            "layers": self.layer_names,
            "score_learning_rate": self.score_learning_rate,
            "lambda_max": self.lambda_max,
            "initial_threshold": self.initial_threshold,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def unit_density(leap: LEAP) -> float:
    """Hard density of `leap`'s masks as a Python float (see `LEAP.densities`).

    Args:
        leap: a `LEAP` model.

    Returns:
        The kept fraction of the pruned layers' parameters.

    Example:

    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(8, name="hidden")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    >>> unit_density(LEAP(model, target_density=0.5))  # the threshold starts at keep-all
    1.0
    """
    return float(keras.ops.convert_to_numpy(leap.densities()[0]))
