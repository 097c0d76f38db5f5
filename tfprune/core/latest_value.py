"""A metric that logs the latest value it was given, for a quantity a training step sets
rather than one it averages (a regulariser's coefficient, the masks' density)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfprune")
class LatestValue(keras.metrics.Metric):
    """The value of the latest `update_state`: what the epoch's logs show is where training
    stands at its end, not the mean over its steps.

    Keras' train step logs only metrics on every backend (a JAX step returns metric
    variables), so a value a step sets goes into `logs` through one of these.

    Args:
        name: the name in `logs`.
        dtype: the value's dtype. Defaults to `"float32"`.

    Example:

    >>> density = LatestValue(name="density")
    >>> density.update_state(0.8)
    >>> density.update_state(0.5)
    >>> float(density.result())
    0.5
    """

    def __init__(self, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        # Every replica computes the same value from the same weights.
        self.latest = self.add_variable(
            shape=(), initializer="zeros", name="latest", aggregation="mean"
        )

    def update_state(self, value):
        """Keep `value` (a scalar) as the result."""
        self.latest.assign(keras.ops.cast(value, self.dtype))

    def result(self):
        """The latest value given, a scalar tensor."""
        # A copy: on TensorFlow the variable itself would be read later, or not be a tensor.
        return keras.ops.copy(self.latest.value)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
