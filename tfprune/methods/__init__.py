"""Pruning procedures from the literature, built on the data path (may import anything but
`cli` and `demo`).

- `imp`: iterative magnitude pruning with rewinding, and mask similarity;
- `presets`: the IPLT and PFWT schedules;
- `rebuild`: `fit_with_rebuilds`, training that shrinks and recompiles at each pruning event;
- `layerwise`: BPPS's and PwC's layer-wise rates;
- `compensation`: PwC's least-squares compensation;
- `dsp`: Dynamic Structure Pruning (group learning and grouped deployment);
- `leap`: LEAP's learnable masks for transformers.
- `distillation`: `Distillation`, a dense teacher's softened outputs in the pruned model's loss.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "dsp": ["DSP", "GroupPlan", "deploy_groups"],
        "leap": ["LEAP"],
        "imp": ["IterativePruning", "mask_similarity"],
        "compensation": ["compensate"],
        "layerwise": ["LayerwiseRates", "compensated_rates", "layerwise_rates"],
        "rebuild": ["RebuildResult", "fit_with_rebuilds"],
        "presets": ["iplt", "pfwt"],
        "distillation": ["Distillation"],
        "latency_table": ["measure_latency_table"],
    },
)
