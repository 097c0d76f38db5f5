"""Masks, and the policy that moves them: the data path's first two steps (prune, fit).

From the entry points down to what they build on (`PruningCallback` drives one mask
update through ranking -> families -> criteria -> granularity -> wrappers):

- `unfold`: `tfprune.unfold`, composite layers (KerasHub's blocks) written out as the
  layers they hold, so that `prune` reaches inside them;
- `prune`: `tfprune.prune`, a copy of the model with its prunable layers wrapped;
- `selection`: which layers it wraps (selectors, automatic protection, the graph's pins);
- `policies`: several policies in one model (`prune(policies=...)`), a layer's settings;
- `ranking`: `PruningPlan`, from a schedule's target to masks, local or global;
- `families`: the units one ranking decision covers, and how a decision becomes masks;
- `grouping`: channel groups as units of filter pruning, and their FLOPs;
- `wrappers`: `PruneWrapper` and `ChannelMaskWrapper`, where masks and policy live;
- `granularity`: how scores become a mask (filters, weights, N:M, blocks);
- `schedules`: when masks update and to which target;
- `strip`: `tfprune.strip`, plain Keras layers with the masks baked in.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ranking": ["PruningPlan", "apply_target", "pruning_plans"],
        "recalibration": ["recalibrate_batchnorm"],
        "wrappers": ["ChannelMaskWrapper", "PruneWrapper", "wrappers_of"],
        "granularity": ["Block", "Filter", "Granularity", "NM", "Unstructured"],
        "schedules": [
            "ConstantSparsity",
            "Iterative",
            "OneShot",
            "PolynomialDecay",
            "PruningSchedule",
        ],
        "policies": ["Policy"],
    },
)
