"""Importance scores: which weights matter.

A criterion is any callable `criterion(weight, layer) -> scores`:

- `weight`: the prunable weight as a NumPy array (already masked, so pruned weights are 0);
- `layer`: the Keras layer that owns it (for criteria that look at neighbours or BN);
- returns non-negative scores of `weight`'s shape; higher means more important.

The granularity sums element scores over each unit (filter, block...), so `|w|` gives the
L1 norm of a filter and `w**2` the squared L2 norm.
"""

from __future__ import annotations

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="tfprune")
def l1(weight, layer=None):
    """L1 importance: `|w|`; summed over a filter it is the filter's L1 norm.

    Args:
        weight: the weight array.
        layer: unused; part of the criterion signature.

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
        layer: unused; part of the criterion signature.

    Returns:
        `weight ** 2`.

    Example:

    >>> l2(np.array([-2.0, 1.0]))
    array([4., 1.])
    """
    return np.square(weight)


_BUILT_IN = {"l1": l1, "l2": l2, "magnitude": l1}


def get(identifier):
    """Resolve a criterion from a name or callable.

    Args:
        identifier: `"l1"`, `"l2"`, `"magnitude"` (|w| per element, the same as l1), or a
            callable with the signature described in this module.

    Returns:
        The criterion callable.

    Raises:
        ValueError: for an unknown name.
        TypeError: for something that is neither a string nor callable.

    Example:

    >>> get("l2") is l2
    True
    """
    if isinstance(identifier, str):
        if identifier.lower() not in _BUILT_IN:
            raise ValueError(f"Unknown criterion {identifier!r}. Built in: {sorted(_BUILT_IN)}, or pass a callable.")
        return _BUILT_IN[identifier.lower()]
    if callable(identifier):
        return identifier
    raise TypeError(f"criterion must be a name or a callable(weight, layer), got {type(identifier).__name__}.")


def name_of(criterion) -> str | dict:
    """Serializable form of a criterion: its built-in name, or Keras' serialization."""
    for name, fn in _BUILT_IN.items():
        if fn is criterion:
            return name
    return keras.saving.serialize_keras_object(criterion)


def from_name(config):
    """Inverse of `name_of`."""
    return get(config) if isinstance(config, str) else keras.saving.deserialize_keras_object(config)
