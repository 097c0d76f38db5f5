"""Callbacks for `model.fit`: the data path's second step.

- `pruning`: `PruningCallback`, which updates masks on schedule and logs sparsity;
- `adversarial_aware`: `AdversarialAwarePruning`, which also watches robust accuracy and
  holds or rolls back pruning when it falls;
- `chief`: `ChiefOnly`, which runs a callback that writes files on the chief worker only;
- `trace`: writing a decision trace atomically.
"""

from tfprune.callbacks.adversarial_aware import AdversarialAwarePruning
from tfprune.callbacks.chief import ChiefOnly
from tfprune.callbacks.pruning import PruningCallback

__all__ = ["AdversarialAwarePruning", "ChiefOnly", "PruningCallback"]
