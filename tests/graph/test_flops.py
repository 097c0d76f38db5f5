"""FLOPs counted from weights and traced shapes."""

import keras
import numpy as np
import pytest
from helpers import conv_model

import tfprune
from keras_hub_zoo import FAMILIES
from keras_io_layers import text_classifier
from tfprune.core import keras_internals
from tfprune.graph.flops import custom_layer_flops, flops_report
from tfprune.graph.tracing import written_out


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


def test_a_custom_transformer_block_counts_what_it_computes():
    # keras.io's text classifier: the block is one custom layer holding attention and a
    # feed-forward network, which count on its trace. By hand, 16 tokens of width 16:
    attention = 2 * (3 * 16 * 16 * 32 + 16 * 32 * 16 + 2 * 2 * 16 * 16 * 16)  # heads of 16
    feedforward = 2 * (16 * 16 * 32 + 16 * 32 * 16)
    head = 2 * (16 * 20 + 20 * 2)
    model = text_classifier()
    assert tfprune.count_flops(model) == attention + feedforward + head
    copy, _ = written_out(model)
    assert tfprune.count_flops(copy) == attention + feedforward + head


def test_a_decoder_with_cross_attention_counts_its_blocks():
    model = FAMILIES["whisper"][0]()
    total, uncounted = flops_report(model)
    blocks = [
        custom_layer_flops(call)[0]
        for call in keras_internals.node_calls(model)
        if type(call.operation).__name__ == "WhisperDecoder"
    ]
    assert uncounted == {} and len(blocks) == 2 and all(b > 0 for b in blocks)
    assert total == tfprune.count_flops(written_out(model)[0])


class Untraceable(keras.layers.Layer):
    """Calls TensorFlow itself: no symbolic trace can follow it."""

    def build(self, shape):
        self.dense = keras.layers.Dense(shape[-1])

    def call(self, x):
        import tensorflow as tf

        return tf.sort(self.dense(x), axis=-1)

    def compute_output_shape(self, shape):
        return shape


def test_a_layer_whose_flops_cannot_be_counted_is_named_with_a_warning():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Untraceable(name="sorter")(inputs))
    total, uncounted = flops_report(model)
    assert total == 0 and "cannot be traced" in uncounted["sorter"]
    with pytest.warns(UserWarning, match="'sorter' \\(Untraceable\\)"):
        tfprune.count_flops(model)


def test_a_projection_into_heads_counts_each_kernel_entry_once_per_position():
    inputs = keras.Input((16, 32))
    heads = keras.layers.EinsumDense("btd,dnh->btnh", (None, 4, 8), name="query")(inputs)
    model = keras.Model(inputs, heads)
    assert tfprune.count_flops(model) == 2 * 16 * 32 * 4 * 8


def test_products_with_a_constant_operand_count_by_its_shape():
    inputs = keras.Input((6, 8))
    outputs = keras.ops.einsum("bqd,de->bqe", inputs, np.ones((8, 4), "float32"))
    assert tfprune.count_flops(keras.Model(inputs, outputs)) == 2 * 6 * 8 * 4


def test_a_causal_lm_counts_its_output_layer_and_plans_on_the_same_total():
    import keras_hub

    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
    )
    task = keras_hub.models.LlamaCausalLM(backbone=backbone)
    tfprune.set_reference_size(8)
    try:
        with_head = tfprune.count_flops(task)
        assert with_head - tfprune.count_flops(backbone) == 2 * 8 * 16 * 50  # the table, reversed
        pruned = tfprune.prune(task, schedule=tfprune.OneShot(0.2), target="flops")
        (plan,) = tfprune.pruning_plans(pruned)
        assert plan.total_cost == with_head
    finally:
        tfprune.set_reference_size(128)
