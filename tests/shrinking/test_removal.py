"""Which channels may go: a constant folds into the reader's bias only where that is exact."""

import keras
import numpy as np
from helpers import inputs_for

import tfprune


def test_constants_fold_into_the_next_bias_only_where_exact():
    """Zeroed filters with a nonzero bias leave a constant channel: a dense or valid-padding
    reader absorbs it into its bias; a same-padding 3x3 reader must keep it."""
    inputs = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    valid = keras.layers.Conv2D(3, 3, padding="valid", use_bias=False, name="valid_reader")(a)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    same = keras.layers.Conv2D(3, 3, padding="same", name="same_reader")(b)
    c = keras.layers.Conv2D(4, 1, name="c")(inputs)
    dense = keras.layers.Dense(3, name="dense_reader")(keras.layers.GlobalAveragePooling2D()(c))
    model = keras.Model(inputs, [valid, same, dense])
    for name in ("a", "b", "c"):
        layer = model.get_layer(name)
        kernel = layer.kernel.numpy()
        kernel[..., :2] = 0
        layer.set_weights([kernel, np.array([0.5, -1.0, 0.2, 0.3], np.float32)])
    small = tfprune.shrink(model)
    assert small.get_layer("a").filters == 2 and small.get_layer("valid_reader").use_bias
    assert small.get_layer("b").filters == 4  # zero padding would see the constant differently
    assert small.get_layer("c").filters == 2
    x = inputs_for(model)
    for got, want in zip(small(x), model(x)):
        assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 1e-5
