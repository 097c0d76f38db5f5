"""Looking at a model: what it costs and what pruning can do to it.

- `summary`: `tfprune.summary`, per-layer params, sparsity, filters and FLOPs;
- `explain`: `tfprune.explain`, which filters each layer could lose, and what pins the rest.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "summary": ["Summary"],
    },
)
