"""One compiled optimizer for a model's weights and a second one for a method's own variables.

A pruning method that learns its masks (LEAP's scores, DSP's group logits) trains them with
their own optimizer and learning rate, beside the optimizer the user compiled. Keras' train
step of each backend (TensorFlow, JAX, PyTorch) differentiates the trainable variables and
hands all the gradients to `model.optimizer`; `PairedOptimizer` is that optimizer, and sends
each gradient on to the optimizer its variable belongs to. On JAX the step is stateless, so
both optimizers' state has to be part of `optimizer.variables`, which it is here.
"""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class OptimizerParts:
    """The two optimizers of a `PairedOptimizer`.

    Held in a plain object so that Keras' `.keras` saving does not also save the parts'
    variables under paths of their own: `PairedOptimizer` saves them once, in order.

    Attributes:
        weights: the optimizer of the model's weights (the one the user compiled).
        own: the optimizer of the method's own variables.

    Example:

    >>> parts = OptimizerParts(keras.optimizers.SGD(0.1), keras.optimizers.Adam(0.01))
    >>> round(float(parts.own.learning_rate), 6)
    0.01
    """

    weights: keras.optimizers.Optimizer
    own: keras.optimizers.Optimizer


@keras.saving.register_keras_serializable(package="tfprune")
class PairedOptimizer(keras.optimizers.Optimizer):
    """Trains the variables named in `own_variables` with `own_optimizer`, the rest with
    `weights_optimizer`.

    Its learning rate and iteration count are `weights_optimizer`'s, so that callbacks such
    as `ReduceLROnPlateau` act on the model's weights. Its `variables` are both optimizers'
    (the state Keras' JAX trainer carries through the compiled step).

    Args:
        weights_optimizer: the optimizer of the model's weights: an instance, a name or a
            serialized config.
        own_optimizer: the optimizer of the method's variables, in the same forms.
        own_variables: the method's variables, or their paths (`variable.path`).
        name: the optimizer's name. Defaults to `"paired_optimizer"`.

    Raises:
        ValueError: when built on variables that do not include every one of
            `own_variables` (they are not trainable, or belong to another model).

    Example:

    >>> scale = keras.Variable(1.0, name="scale")
    >>> dense = keras.layers.Dense(1)
    >>> dense.build((None, 2))
    >>> optimizer = PairedOptimizer(keras.optimizers.SGD(0.1), keras.optimizers.SGD(1.0), [scale])
    >>> optimizer.apply([keras.ops.ones((2, 1)), keras.ops.ones((1,)), keras.ops.ones(())],
    ...                 [dense.kernel, dense.bias, scale])
    >>> float(keras.ops.convert_to_numpy(scale))  # moved by the second optimizer's 1.0
    0.0
    """

    def __init__(self, weights_optimizer, own_optimizer, own_variables, name="paired_optimizer"):
        super().__init__(learning_rate=0.0, name=name)
        self.parts = OptimizerParts(
            keras.optimizers.get(weights_optimizer), keras.optimizers.get(own_optimizer)
        )
        self.own_paths = tuple(v if isinstance(v, str) else v.path for v in own_variables)
        self.own_positions = ()

    @classmethod
    def around(cls, optimizer, own_learning_rate, own_variables) -> PairedOptimizer:
        """What a method's `compile` makes of the optimizer it is given: the user's optimizer
        for the weights, an Adam at `own_learning_rate` for `own_variables`.

        Args:
            optimizer: what the user passed to `compile` (an instance, a name, a config); a
                `PairedOptimizer` (a loaded model's compile config) is kept as it is.
            own_learning_rate: the Adam learning rate of the method's variables.
            own_variables: the method's variables.

        Returns:
            A `PairedOptimizer`.

        Example:

        >>> scale = keras.Variable(1.0, name="scale")
        >>> paired = PairedOptimizer.around("sgd", 1e-2, [scale])
        >>> type(paired.parts.own).__name__, paired.own_paths
        ('Adam', ('scale',))
        """
        if isinstance(optimizer, cls):
            return optimizer
        return cls(optimizer, keras.optimizers.Adam(own_learning_rate), own_variables)

    @property
    def variables(self):
        """Both optimizers' variables, the weights' first (the state a JAX step carries)."""
        return self.parts.weights.variables + self.parts.own.variables

    @property
    def iterations(self):
        """The weights' optimizer's step count."""
        return self.parts.weights.iterations

    @property
    def learning_rate(self):
        """The weights' optimizer's learning rate (what `ReduceLROnPlateau` sets)."""
        return self.parts.weights.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        """Set the weights' optimizer's learning rate; the own one keeps its rate."""
        self.parts.weights.learning_rate = value

    def build(self, variables):
        variables = list(variables)
        positions = tuple(i for i, v in enumerate(variables) if v.path in self.own_paths)
        missing = sorted(set(self.own_paths) - {variables[i].path for i in positions})
        if missing:
            raise ValueError(
                f"PairedOptimizer: {missing} are not among the trainable variables it is built "
                "on; compile the model that owns them (its variables must be trainable)."
            )
        super().build(variables)
        self.own_positions = positions
        weights, own = self._split(variables)
        self.parts.weights.build(weights)
        self.parts.own.build(own)

    def _split(self, values) -> tuple:
        """`(the weights' entries, the own variables' entries)` of a list in build order."""
        own = set(self.own_positions)
        return (
            [value for i, value in enumerate(values) if i not in own],
            [value for i, value in enumerate(values) if i in own],
        )

    def apply(self, grads, trainable_variables=None):
        """Apply each gradient with the optimizer of its variable (`Optimizer.apply`)."""
        if trainable_variables is not None and not self.built:
            self.build(trainable_variables)
        weight_grads, own_grads = self._split(list(grads))
        # The loss was scaled by the weights' optimizer (`scale_loss`): both unscale by it.
        scale = self.parts.weights.loss_scale_factor
        if scale is not None:
            own_grads = [g if g is None else g / scale for g in own_grads]
        if trainable_variables is None:
            self.parts.weights.apply(weight_grads)
            self.parts.own.apply(own_grads)
            return
        weight_variables, own_variables = self._split(list(trainable_variables))
        self.parts.weights.apply(weight_grads, weight_variables)
        self.parts.own.apply(own_grads, own_variables)

    def scale_loss(self, loss):
        """The loss scaled as the weights' optimizer scales it (mixed precision)."""
        return self.parts.weights.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        """Let the weights' optimizer finish the model's weights (its moving average)."""
        weights, _ = self._split(list(var_list))
        self.parts.weights.finalize_variable_values(weights)

    def load_own_variables(self, store):
        """Load both optimizers' state, or the weights' alone from a file of tfprune 0.2."""
        weights = self.parts.weights
        if len(store.keys()) == len(weights.variables) != len(self.variables):
            # Files saved by tfprune 0.2 and earlier hold the compiled optimizer alone.
            weights.load_own_variables(store)
            return
        super().load_own_variables(store)

    def get_config(self):
        return {
            "name": self.name,
            "weights_optimizer": keras.saving.serialize_keras_object(self.parts.weights),
            "own_optimizer": keras.saving.serialize_keras_object(self.parts.own),
            "own_variables": list(self.own_paths),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
