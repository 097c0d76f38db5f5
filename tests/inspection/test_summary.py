"""tfprune.summary: per-layer rows and totals that follow the masks."""

import keras
import numpy as np
import pytest

import tfprune
from conftest import conv_model
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
