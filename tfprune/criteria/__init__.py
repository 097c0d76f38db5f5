"""Importance criteria, one per module: which weights (or filters) matter.

Every criterion can be selected by name wherever one is accepted (`criterion="lap"`), and
is also a function or class here with its parameters. `base` says what a criterion is
called with; `lookup` resolves names.

- `magnitude`: `l1`, `l2`;
- `bn_scale`: network slimming's `BNScale`;
- `taylor`: first-order `Taylor`, and `RobustTaylor` on adversarial examples (they need
  gradients, so TensorFlow; loaded on first use);
- `hydra`: HYDRA's `Hydra`, filter scores learned on the adversarial loss (TensorFlow too);
- `lap`: lookahead pruning, `LAP`;
- `fpgm`: geometric-median `FPGM`;
- `random_scores`: the `RandomScores` baseline;
- `pwc`: Pruning with Compensation's `PwCRanking`.
"""

import importlib

from tfprune.criteria.base import ContextCriterion, ScoringContext, spread_over_filters
from tfprune.criteria.bn_scale import BNScale
from tfprune.criteria.fpgm import FPGM
from tfprune.criteria.lap import LAP
from tfprune.criteria.lookup import from_name, get, name_of, names
from tfprune.criteria.magnitude import l1, l2
from tfprune.criteria.pwc import PwCRanking
from tfprune.criteria.random_scores import RandomScores

__all__ = [
    "BNScale",
    "ContextCriterion",
    "FPGM",
    "Hydra",
    "LAP",
    "PwCRanking",
    "RandomScores",
    "RobustTaylor",
    "ScoringContext",
    "Taylor",
    "from_name",
    "get",
    "l1",
    "l2",
    "name_of",
    "names",
    "spread_over_filters",
]


def __getattr__(name):
    # The gradient criteria need TensorFlow: their modules are imported when first asked for.
    if name in ("Taylor", "RobustTaylor"):
        return getattr(importlib.import_module("tfprune.criteria.taylor"), name)
    if name == "Hydra":
        return importlib.import_module("tfprune.criteria.hydra").Hydra
    raise AttributeError(f"module 'tfprune.criteria' has no attribute {name!r}")
