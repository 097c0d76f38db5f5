"""Criteria by name: what `prune(criterion="lap")` and a saved wrapper's config resolve through."""

from __future__ import annotations

import functools
import importlib

import keras

from tfprune.criteria.bn_scale import BNScale
from tfprune.criteria.fpgm import FPGM
from tfprune.criteria.lap import LAP
from tfprune.criteria.magnitude import l1, l2
from tfprune.criteria.pwc import PwCRanking
from tfprune.criteria.random_scores import RandomScores

_FUNCTIONS = {"l1": l1, "l2": l2, "magnitude": l1}
_CLASSES = {
    "bn_scale": BNScale,
    "lap": LAP,
    "lap_bn": functools.partial(LAP, bn=True),
    "lap_forward": functools.partial(LAP, forward=True),
    "fpgm": FPGM,
    "random": RandomScores,
    "pwc": PwCRanking,
}
# Criteria that need the loss's gradients import TensorFlow, so they are loaded on first use:
# pruning with any other criterion never imports them. Name -> (module, class).
_GRADIENT_CRITERIA = {
    "taylor": ("tfprune.criteria.taylor", "Taylor"),
    "robust_taylor": ("tfprune.criteria.taylor", "RobustTaylor"),
    "hydra": ("tfprune.criteria.hydra", "Hydra"),
}


def names() -> list[str]:
    """Every criterion name `get` accepts, sorted.

    Returns:
        A list of names.

    Example:

    >>> "lap_bn" in names()
    True
    """
    return sorted([*_FUNCTIONS, *_CLASSES, *_GRADIENT_CRITERIA])


def get(identifier):
    """Resolve a criterion from a name or callable.

    Args:
        identifier: `"l1"`, `"l2"`, `"magnitude"` (|w| per element, the same as l1),
            `"bn_scale"`, `"taylor"`, `"robust_taylor"`, `"hydra"`, `"lap"`, `"lap_bn"`,
            `"lap_forward"`, `"fpgm"`, `"random"`, `"pwc"`, or a callable
            `(weight, layer) -> scores` (see `tfprune.criteria.base`).

    Returns:
        The criterion callable.

    Raises:
        ValueError: for an unknown name.
        TypeError: for something that is neither a string nor callable.

    Example:

    >>> get("l2") is l2
    True
    >>> get("lap_bn")
    LAP(bn=True, forward=False)
    """
    if isinstance(identifier, str):
        name = identifier.lower()
        if name in _FUNCTIONS:
            return _FUNCTIONS[name]
        if name in _CLASSES:
            return _CLASSES[name]()
        if name in _GRADIENT_CRITERIA:
            module, cls = _GRADIENT_CRITERIA[name]
            return getattr(importlib.import_module(module), cls)()
        raise ValueError(
            f"Unknown criterion {identifier!r}. Built in: {names()}, or pass a callable."
        )
    if callable(identifier):
        return identifier
    raise TypeError(
        f"criterion must be a name or a callable(weight, layer), got {type(identifier).__name__}."
    )


def name_of(criterion) -> str | dict:
    """Serializable form of a criterion: its built-in name, or Keras' serialization.

    Args:
        criterion: a criterion callable.

    Returns:
        A name for the magnitude functions, else a Keras config dict.

    Example:

    >>> name_of(l1)
    'l1'
    """
    for name, fn in _FUNCTIONS.items():
        if fn is criterion:
            return name
    return keras.saving.serialize_keras_object(criterion)


def from_name(config):
    """Inverse of `name_of`.

    Args:
        config: a name or a Keras config dict.

    Returns:
        The criterion.

    Example:

    >>> from_name("l2") is l2
    True
    """
    if isinstance(config, str):
        return get(config)
    # A saved gradient criterion's class is registered when its module is first imported.
    for module, cls in _GRADIENT_CRITERIA.values():
        if config.get("registered_name") == f"tfprune>{cls}":
            importlib.import_module(module)
    return keras.saving.deserialize_keras_object(config)
