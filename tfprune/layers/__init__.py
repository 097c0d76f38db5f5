"""Per-layer-type knowledge, and the layers tfprune adds.

- `spec`: `LayerSpec` (which weight and axis is a filter) and `ChannelRule` (how a layer
  without one moves channels), what a registry entry is;
- `registry`: the entries by layer type, and the lookups every other module uses;
- `mask_layout`: where the variables a layer's mask covers sit in the one matrix it is;
- `builtin_rules`: the entries for Keras' own layers and ops, registered on import;
- `moves`: where `keras.ops` functions put channels (which may lie on any axis: heads);
- `traced`: `Weight`, `Dimension` and `ShapedCall`, what a traced custom layer is written
  out with besides its own sublayers;
- `keras_hub_rules`: the entries for KerasHub's layers (by registered name, without
  importing KerasHub), and how `tfprune.unfold` writes its blocks out;
- `normalization`: `ShrunkLayerNormalization` and `ShrunkRMSNormalization`, which `shrink`
  puts where it removed channels from a normalization;
- `bidirectional`: `UnevenBidirectional`, which `shrink` puts where a concatenating
  Bidirectional layer's directions keep different widths;
- `grouped_conv`: `GroupedConv2D`, DSP's deployed convolution;
- `attention_mask`: `SelfAttentionMask`, the attention mask a KerasHub transformer block
  builds inside itself, for the blocks `tfprune.unfold` writes out;
- `split_depthwise`: `SplitDepthwiseConv2D` and `SplitGroupedConv2D`, depthwise convolutions
  over 5x5 computed as sums of small kernel tiles, which export converts them into.
"""

from tfprune.core.namespace import lazy_exports
from tfprune.layers import (
    builtin_rules,  # noqa: F401  (registers Keras' own layers and ops)
    keras_hub_rules,  # noqa: F401  (registers KerasHub's, by name)
)

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "spec": [
            "ChannelRule",
            "LayerSpec",
            "Units",
            "Members",
            "Fold",
            "DeadOutput",
            "Side",
            "Role",
            "RuleKind",
        ],
        "registry": ["register_channel_rule", "register_layer", "register_unfolding"],
        "grouped_conv": ["GroupedConv2D"],
        "attention_mask": ["SelfAttentionMask"],
        "split_depthwise": ["SplitDepthwiseConv2D", "SplitGroupedConv2D"],
        "normalization": ["ShrunkLayerNormalization", "ShrunkRMSNormalization"],
        "bidirectional": ["UnevenBidirectional"],
    },
)
