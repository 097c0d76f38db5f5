import keras
import numpy as np
import pytest

import tfprune
from tfprune.ranking import apply_target


def conv_model():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 output
    x = keras.layers.Conv2DTranspose(2, 3, strides=2, name="tconv")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inputs, outputs)


def test_flops_match_hand_counts():
    model = conv_model()
    conv = 2 * (3 * 3 * 3 * 4) * 8 * 8
    tconv = 2 * (3 * 3 * 2 * 4) * 8 * 8  # one scatter per input position
    flat = model.get_layer("fc").kernel.shape[0]
    fc = 2 * flat * 5
    assert tfprune.count_flops(model) == conv + tconv + fc


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
    assert "conv" in text and "2/4" in text and "50.0%" in text and text.splitlines()[-1].startswith("total")


def test_summary_counts_a_nested_model_once_per_call():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="shared_fc")(inner_in))
    a, b = keras.Input((6,)), keras.Input((6,))
    model = keras.Model([a, b], keras.layers.Add()([inner(a), inner(b)]))
    assert tfprune.count_flops(model) == 2 * (2 * 6 * 4)


def test_dynamic_shapes_give_a_clear_error():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    with pytest.raises(ValueError, match="'conv'.*not static"):
        tfprune.count_flops(model)
    assert {r.name: r for r in tfprune.summary(model).rows}["conv"].flops is None


def test_summary_rejects_non_models():
    with pytest.raises(TypeError):
        tfprune.summary(np.zeros(3))
