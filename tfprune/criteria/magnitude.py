"""Magnitude criteria: the size of a weight is its importance."""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tfprune")
def l1(weight, layer=None):
    """L1 importance: `|w|`; summed over a filter it is the filter's L1 norm.

    Args:
        weight: the weight array.
        layer: unused; part of the criterion signature. Defaults to `None`.

    Returns:
        `abs(weight)`.

    Example:

    >>> l1(np.array([-2.0, 1.0]))
    array([2., 1.])
    """
    return np.abs(weight)


@keras.saving.register_keras_serializable(package="tfprune")
def l2(weight, layer=None):
    """L2 importance: `w**2`; summed over a filter it is the squared L2 norm.

    The square ranks filters of one layer exactly as the norm does.

    Args:
        weight: the weight array.
        layer: unused; part of the criterion signature. Defaults to `None`.

    Returns:
        `weight ** 2`.

    Example:

    >>> l2(np.array([-2.0, 1.0]))
    array([4., 1.])
    """
    return np.square(weight)
