"""What a model's graph says about its channels: which go together, which are constant, and
what they cost.

- `channel_graph`: `ChannelGraph`, the channel groups of a functional model (DepGraph's
  coupling rules) and why some are pinned;
- `constants`: which channels carry a constant, and its value;
- `reference`: shapes of graphs with unknown dimensions, at a reference size;
- `flops`: FLOPs of the layers tfprune knows, from their weights and traced shapes, of the
  products of tensors, and of custom layers on their traces;
- `tracing`: custom layers written out as the layers and ops their `call` runs.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flops": ["count_flops"],
        "latency": ["LatencyTable"],
        "reference": ["reference_size", "set_reference_size"],
    },
)
