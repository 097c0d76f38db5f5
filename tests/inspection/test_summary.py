"""tfprune.summary: per-layer rows and totals that follow the masks."""

import keras
import numpy as np
import pytest
from helpers import conv_model

import tfprune
from keras_io_layers import text_classifier
from tfprune.masking.ranking import apply_target


def test_summary_rows_and_totals_follow_the_masks():
    model = conv_model()
    model.get_layer("conv").bias.assign(np.ones(4, np.float32))
    pruned = tfprune.prune(model, layers=["conv"], schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    s = tfprune.summary(pruned)
    row = {r.name: r for r in s.rows}["conv"]
    assert (row.filters_kept, row.filters_total) == (2, 4)
    assert row.sparsity == 0.5
    assert row.params == 3 * 3 * 3 * 4 + 4
    assert row.nonzero_params == 3 * 3 * 3 * 2 + 2
    assert row.effective_flops == row.flops // 2
    d = s.to_dict()
    assert d["total"]["flops"] == tfprune.count_flops(model)
    assert d["total"]["effective_flops"] == tfprune.count_flops(pruned, effective=True)
    text = str(s)
    assert (
        "conv" in text
        and "2/4" in text
        and "50.0%" in text
        and text.splitlines()[-1].startswith("total")
    )


def test_summary_counts_a_nested_model_once_per_call():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="shared_fc")(inner_in))
    a, b = keras.Input((6,)), keras.Input((6,))
    model = keras.Model([a, b], keras.layers.Add()([inner(a), inner(b)]))
    assert tfprune.count_flops(model) == 2 * (2 * 6 * 4)


def test_summary_rejects_non_models():
    with pytest.raises(TypeError):
        tfprune.summary(np.zeros(3))


class Sorted(keras.layers.Layer):
    """Calls TensorFlow itself: its FLOPs cannot be counted on a trace."""

    def build(self, shape):
        self.dense = keras.layers.Dense(64)
        self.dense.build(shape)

    def call(self, x):
        import tensorflow as tf

        return tf.sort(self.dense(x), axis=-1)

    def compute_output_shape(self, shape):
        return (*shape[:-1], 64)


def test_custom_layers_count_on_their_traces_and_the_rest_is_listed():
    model = text_classifier()  # keras.io's: a custom transformer block and embedding
    table = tfprune.summary(model)
    rows = {row.type: row for row in table.rows}
    assert rows["TransformerBlock"].flops > 0 and rows["TokenAndPositionEmbedding"].flops == 0
    assert table.total["flops"] == tfprune.count_flops(model)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Sorted(name="sorter")(inputs)))
    table = tfprune.summary(model)
    assert "'sorter' (Sorted) cannot be traced" in table.uncounted["sorter"]
    assert "FLOPs not counted" in str(table) and "sorter" in str(table)


def test_a_cost_target_warns_when_uncounted_layers_hold_much_of_the_model():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, name="first")(inputs)
    head = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, [head, Sorted(name="sorter")(inputs)])
    with pytest.warns(UserWarning, match=r"target='flops': layers holding \d+% .*'sorter'"):
        tfprune.prune(model, layers=["first"], schedule=0.3, target="flops")


def test_explain_names_a_layer_whose_flops_are_not_counted():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Sorted(name="sorter")(inputs)))
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert any("cannot be traced" in reason for reason in rows["sorter"]["reasons"])
