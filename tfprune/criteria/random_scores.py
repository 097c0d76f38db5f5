"""Random importance: the baseline every criterion must beat."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.criteria.base import ContextCriterion


@keras.saving.register_keras_serializable(package="tfprune")
class RandomScores(ContextCriterion):
    """Random importance (seeded): the baseline every criterion must beat.

    Args:
        seed: seed; each mask update draws new scores from it. Defaults to 0.

    Example:

    >>> scores = RandomScores(seed=1)(np.zeros((2, 3)), layer=None)
    >>> scores.shape, bool(np.all((0 <= scores) & (scores < 1)))
    ((2, 3), True)
    """

    def __init__(self, seed=0):
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)

    def __call__(self, weight, layer, context=None):
        return self._rng.random(weight.shape)

    def get_config(self):
        return {"seed": self.seed}
