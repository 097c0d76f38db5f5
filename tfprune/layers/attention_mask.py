"""`SelfAttentionMask`: the attention mask a KerasHub transformer block builds inside itself.

`tfprune.unfold` writes a KerasHub `TransformerEncoder` or `TransformerDecoder` out as the
Keras layers it holds; the mask the block computed from its padding mask in its `call` becomes
this layer, so that the unfolded graph computes what the block computed.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfprune")
class SelfAttentionMask(keras.layers.Layer):
    """A padding mask `(batch, length)` as a self-attention mask, optionally causal.

    Without `causal`, the mask is `(batch, 1, length)`: every query may attend to every
    key that is not padding (KerasHub's `merge_padding_and_attention_mask`). With it,
    `(batch, length, length)`: query `i` may also attend only to keys `j <= i`
    (`TransformerDecoder`'s causal mask). Either way int32, 1 where attention is allowed.

    Args:
        causal: add the causal (lower-triangular) mask. Defaults to `False`.

    Example:

    >>> mask = SelfAttentionMask(causal=True)(np.array([[1, 1, 0]]))
    >>> keras.ops.convert_to_numpy(mask)[0].tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
    """

    def __init__(self, causal=False, **kwargs):
        super().__init__(**kwargs)
        self.causal = bool(causal)

    def call(self, padding_mask):
        mask = keras.ops.cast(keras.ops.expand_dims(padding_mask, axis=1), "int32")
        if not self.causal:
            return mask
        positions = keras.ops.arange(keras.ops.shape(padding_mask)[1])
        earlier = keras.ops.expand_dims(positions, 1) >= keras.ops.expand_dims(positions, 0)
        return keras.ops.minimum(mask, keras.ops.cast(keras.ops.expand_dims(earlier, 0), "int32"))

    def compute_output_shape(self, input_shape):
        batch, length = input_shape
        return (batch, length if self.causal else 1, length)

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}
