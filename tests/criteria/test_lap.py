"""Lookahead pruning equals its formula, through dense, flatten and BN."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.criteria import LAP, ScoringContext


def dense_chain(bn=False):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5,))
    x = keras.layers.Dense(4, name="d1")(inputs)
    if bn:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(3, name="d2")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="d3")(x))


@pytest.mark.parametrize("bn", [False, True])
def test_lap_equals_the_formula_on_a_three_layer_dense_net(bn):
    model = dense_chain(bn)
    if bn:
        model.get_layer("bn").set_weights(
            [
                np.array([1.0, 2.0, 0.5, 3.0]),
                np.zeros(4),
                np.zeros(4),
                np.array([1.0, 4.0, 0.25, 9.0]),
            ]
        )
    pruned = tfprune.prune(
        model,
        granularity="unstructured",
        criterion="lap_bn" if bn else "lap",
        layers=["d2"],
        schedule=0.5,
    )
    w1, w2, w3 = (model.get_layer(n).kernel.numpy().astype(np.float64) for n in ("d1", "d2", "d3"))
    into = (w1**2).sum(axis=0)  # weights into each unit k of d1
    out_of = (w3**2).sum(axis=1)  # weights out of each unit j of d2
    expected = w2**2 * into[:, None] * out_of[None, :]
    if bn:
        gamma, var, eps = np.array([1.0, 2.0, 0.5, 3.0]), np.array([1.0, 4.0, 0.25, 9.0]), 1e-3
        expected *= ((gamma / np.sqrt(var + eps)) ** 2)[:, None]
    layer = pruned.get_layer("prune_d2").layer
    scores = LAP(bn=bn)(layer.kernel.numpy(), layer, ScoringContext(pruned))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_lap_sees_through_conv_flatten_dense():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3, 3, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    pruned = tfprune.prune(model, criterion="lap", layers=["conv"], schedule=0.5)
    conv = pruned.get_layer("prune_conv").layer
    fc = model.get_layer("fc").kernel.numpy().astype(np.float64)
    out_of = np.array(
        [(fc[c::4] ** 2).sum() for c in range(4)]
    )  # feature i belongs to channel i % 4
    expected = conv.kernel.numpy().astype(np.float64) ** 2 * out_of  # no layer before: factor 1
    np.testing.assert_allclose(
        LAP()(conv.kernel.numpy(), conv, ScoringContext(pruned)), expected, rtol=1e-5
    )


def test_lap_forward_prunes_layer_by_layer():
    pruned = tfprune.prune(
        dense_chain(),
        granularity="unstructured",
        criterion="lap_forward",
        protect=None,
        schedule=0.5,
    )
    plan = tfprune.apply_target(pruned, 0.5)
    assert plan.removed() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="layer by layer"):
        tfprune.prune(
            dense_chain(),
            granularity="unstructured",
            criterion="lap_forward",
            ranking="global",
            schedule=0.5,
        )
