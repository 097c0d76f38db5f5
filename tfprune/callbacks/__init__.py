"""Callbacks for `model.fit`: the data path's second step.

- `pruning`: `PruningCallback`, which updates masks on schedule and logs sparsity;
- `adversarial_aware`: `AdversarialAwarePruning`, which also watches robust accuracy and
  holds or rolls back pruning when it falls;
- `chief`: `ChiefOnly`, which runs a callback that writes files on the chief worker only;
- `trace`: writing a decision trace atomically.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "pruning": ["PruningCallback"],
        "adversarial_aware": ["AdversarialAwarePruning"],
        "chief": ["ChiefOnly", "is_chief"],
    },
)
