"""FLOPs counted from weights and traced shapes."""

import keras

import tfprune
from conftest import conv_model


def test_flops_match_hand_counts():
    model = conv_model()
    conv = 2 * (3 * 3 * 3 * 4) * 8 * 8
    tconv = 2 * (3 * 3 * 2 * 4) * 8 * 8  # one scatter per input position
    flat = model.get_layer("fc").kernel.shape[0]
    fc = 2 * flat * 5
    assert tfprune.count_flops(model) == conv + tconv + fc


def test_an_attention_mask_is_not_counted_as_the_key():
    # A mask passed by keyword is a tensor of the call too; read as the key, its one row
    # made the score matmul look 1 position long.
    def model(masked):
        x = keras.Input((6, 8))
        mask = keras.Input((1, 6), dtype="int32")
        attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        if masked:
            return keras.Model([x, mask], attention(x, x, attention_mask=mask))
        return keras.Model(x, attention(x, x))

    assert tfprune.count_flops(model(True)) == tfprune.count_flops(model(False))
