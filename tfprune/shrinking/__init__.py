"""Physical removal: the data path's fourth step.

- `shrink`: `tfprune.shrink`, a smaller model without the zeroed filters, computing the
  same function;
- `removal`: which channel groups may go without changing the function;
- `heads`: `tfprune.shrinking.shrink_heads`, attention heads that output exactly zero.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "heads": ["shrink_heads"],
    },
)
