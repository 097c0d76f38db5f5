"""EinsumDense written as a dense layer prunes, counts and shrinks like Dense."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.layers import registry
from tfprune.masking.ranking import apply_target


def feed_forward(einsum=True):
    inputs = keras.Input((6, 8))
    if einsum:
        up = keras.layers.EinsumDense(
            "abc,cd->abd", (None, 32), bias_axes="d", activation="relu", name="up"
        )
        down = keras.layers.EinsumDense("abc,cd->abd", (None, 8), bias_axes="d", name="down")
    else:
        up = keras.layers.Dense(32, activation="relu", name="up")
        down = keras.layers.Dense(8, name="down")
    x = keras.layers.GlobalAveragePooling1D()(down(up(inputs)))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_dense_like_einsum_counts_prunes_and_shrinks_as_dense(tmp_path):
    keras.utils.set_random_seed(0)
    model = feed_forward()
    assert tfprune.count_flops(model) == tfprune.count_flops(feed_forward(einsum=False))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    assert {w.layer.name for w in tfprune.wrappers_of(pruned)} == {"up", "down"}
    apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    assert tuple(small.get_layer("up").get_config()["output_shape"]) == (None, 16)
    x = np.random.default_rng(0).random((2, 6, 8), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "ffn.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


@pytest.mark.parametrize(
    "equation, bias_axes, prunable",
    [
        ("abc,cde->abde", None, True),  # a projection into heads: each head a filter
        ("abc,cde->abde", "de", True),
        ("abc,cde->abde", "e", False),  # the bias is not per head: a masked head is not zero
        ("abc,cd->abd", "b", False),
        ("ab,bc->ac", None, True),
    ],
)
def test_equations_whose_units_the_output_keeps_are_prunable(equation, bias_axes, prunable):
    shape = (None, 4, 2) if "e" in equation else (6, 4) if bias_axes == "b" else 4
    layer = keras.layers.EinsumDense(equation, shape, bias_axes=bias_axes)
    assert registry.is_prunable(layer) == prunable


def test_an_einsum_dense_with_an_ellipsis_shrinks_and_a_grouped_one_is_a_barrier():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 8))
    x = keras.layers.EinsumDense("...b,bc->...c", 16, bias_axes="c", name="up")(inputs)
    x = keras.layers.EinsumDense("...c,cd->...d", 8, name="down")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    pruned = tfprune.prune(model, layers=["up"], schedule=tfprune.OneShot(0.5))
    apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    assert tuple(small.get_layer("up").get_config()["output_shape"]) == (8,)
    x = np.random.default_rng(0).random((2, 6, 8), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    grouped = keras.layers.EinsumDense("bgi,gio->bgo", (4, 3))
    assert not registry.is_prunable(grouped)
