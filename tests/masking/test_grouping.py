"""Channel groups: the filters of one channel are scored and pruned together."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.masking.ranking import apply_target


@pytest.mark.parametrize(
    "reduction,expected",
    [("sum", [0.0, 1.0]), ("mean", [0.0, 1.0]), ("max", [1.0, 0.0]), ("first", [1.0, 0.0])],
)
def test_group_reduction_combines_member_scores(reduction, expected):
    """Two convolutions meet at an Add. L1 scores per channel: a = (6, 4), b = (0, 5).
    sum (6, 9) and mean (3, 4.5) keep channel 1; max (6, 5) and first (a: 6, 4) keep channel 0."""
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, use_bias=False, name="a")(inputs)
    b = keras.layers.Conv2D(2, 1, use_bias=False, name="b")(inputs)
    x = keras.layers.Add()([a, b])
    x = keras.layers.Conv2D(2, 1, name="reader")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.get_layer("a").set_weights([np.array([[[[3.0, 2.0], [3.0, 2.0]]]], np.float32)])
    model.get_layer("b").set_weights([np.array([[[[0.0, 2.5], [0.0, 2.5]]]], np.float32)])
    pruned = tfprune.prune(
        model, schedule=tfprune.OneShot(0.5), layers=["a", "b"], group_reduction=reduction
    )
    apply_target(pruned, 0.5)
    kept = pruned.get_layer("prune_a").mask_array()[0, 0, 0]
    np.testing.assert_array_equal(kept, pruned.get_layer("prune_b").mask_array()[0, 0, 0])
    assert kept.tolist() == expected
    small = tfprune.shrink(pruned)
    assert small.get_layer("a").filters == small.get_layer("b").filters == 1
    with pytest.raises(ValueError, match="group_reduction"):
        tfprune.prune(model, group_reduction="median")
