"""tfprune.explain: which filters each layer could lose, and what pins the rest."""

import keras
import pytest

import tfprune


def test_barriers_pin_channels_and_explain_says_why():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="before_reshape")(inputs)
    x = keras.layers.Reshape((36, 8))(x)  # keeps the channel axis: see-through
    x = keras.layers.Conv1D(8, 3, padding="same", name="before_lambda")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.Conv1D(8, 1, name="after_lambda")(x)
    x = keras.layers.Reshape((8, 36))(x)  # moves channels: a barrier
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    rows = {r["layer"]: r for r in tfprune.explain(model)}
    assert rows["before_reshape"]["removable"] == 8
    assert (
        rows["before_lambda"]["removable"] == 0 and "Lambda" in rows["before_lambda"]["reasons"][0]
    )
    assert (
        rows["after_lambda"]["removable"] == 0
        and "reshapes the channel axis" in rows["after_lambda"]["reasons"][0]
    )
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.3), protect=None)
    assert [w.layer.name for w in tfprune.wrappers_of(pruned)] == ["before_reshape"]
    with pytest.raises(ValueError, match="'before_lambda' cannot be pruned: Lambda"):
        tfprune.prune(model, layers=["before_lambda"])
