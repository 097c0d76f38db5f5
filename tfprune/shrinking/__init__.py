"""Physical removal: the data path's fourth step.

- `shrink`: `tfprune.shrink`, a smaller model without the zeroed filters, computing the
  same function;
- `removal`: which channel groups may go without changing the function;
- `heads`: `tfprune.shrink_heads`, attention heads that output exactly zero.
"""
