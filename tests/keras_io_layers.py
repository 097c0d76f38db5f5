"""Custom layers written the way keras.io's examples write them: constructors without
`**kwargs`, no `get_config`, weights used directly, Python shape arithmetic. Small models
built from them, for the tests of copying, tracing and counting."""

import keras
from keras import layers, ops


class TokenAndPositionEmbedding(layers.Layer):
    """Token embedding plus a learned position embedding (the text classifier's)."""

    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = ops.arange(0, ops.shape(x)[-1], 1)
        return self.token_emb(x) + self.pos_emb(positions)


class TransformerBlock(layers.Layer):
    """Self-attention and a two-layer feed-forward network with residuals (post-norm)."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential(
            [layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)]
        )
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=None):
        attended = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attended)
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1), training=training))


class SequencePooling(layers.Layer):
    """Attention-weighted pooling over the sequence (CCT's)."""

    def __init__(self):
        super().__init__()
        self.attention = layers.Dense(1)

    def call(self, x):
        weights = ops.transpose(ops.softmax(self.attention(x), axis=1), axes=(0, 2, 1))
        return ops.squeeze(ops.matmul(weights, x), -2)


class DepthToSpace(layers.Layer):
    """Sub-pixel upsampling (ESPCN's): channels become a `block_size` x `block_size` grid."""

    def __init__(self, block_size):
        super().__init__()
        self.block_size = block_size

    def call(self, inputs):
        batch, height, width, depth = ops.shape(inputs)
        depth = depth // (self.block_size**2)
        size = self.block_size
        x = ops.reshape(inputs, [batch, height, width, size, size, depth])
        x = ops.transpose(x, [0, 1, 3, 2, 4, 5])
        return ops.reshape(x, [batch, height * size, width * size, depth])


def text_classifier(maxlen=16, vocab=100, embed=16, heads=2, ff=32):
    """keras.io's text classification with a transformer block, small."""
    inputs = layers.Input(shape=(maxlen,), dtype="int32")
    x = TokenAndPositionEmbedding(maxlen, vocab, embed)(inputs)
    x = TransformerBlock(embed, heads, ff)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dense(20, activation="relu", name="hidden")(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax", name="head")(x))


def espcn(upscale=2, channels=1, size=None):
    """keras.io's sub-pixel super-resolution network, small."""
    inputs = keras.Input(shape=(size, size, channels))
    x = layers.Conv2D(16, 5, activation="relu", padding="same", name="conv1")(inputs)
    x = layers.Conv2D(16, 3, activation="relu", padding="same", name="conv2")(x)
    x = layers.Conv2D(channels * upscale**2, 3, padding="same", name="conv3")(x)
    return keras.Model(inputs, DepthToSpace(upscale)(x))


def sequence_pooled(image=8, dim=16):
    """A compact-convolutional-transformer-shaped tail: tokens pooled by SequencePooling."""
    inputs = keras.Input((image, image, 3))
    x = layers.Conv2D(dim, 3, padding="same", activation="relu", name="tokenizer")(inputs)
    x = layers.Reshape((-1, dim))(x)
    x = layers.Dense(dim, activation="relu", name="mixer")(x)
    x = SequencePooling()(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x))
