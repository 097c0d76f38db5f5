"""Looking at a model: what it costs and what pruning can do to it.

- `summary`: `tfprune.summary`, per-layer params, sparsity, filters and FLOPs;
- `explain`: `tfprune.explain`, which filters each layer could lose, and what pins the rest.
"""
