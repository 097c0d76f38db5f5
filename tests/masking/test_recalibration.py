"""recalibrate_batchnorm: exact statistics of each BatchNormalization layer's input, in the
model as it is, and nothing else moves."""

import keras
import numpy as np

import tfprune
from tfprune.masking.ranking import apply_target
from tfprune.zoo import digits_cnn, load_digits


def two_norms():
    """Dense -> BN -> Dense -> BN, inside a nested model, the first BN wrapped later."""
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(name="bn1")(keras.layers.Dense(3, name="fc1")(inputs))
    inner = keras.Model(inputs, x, name="inner")
    outer_in = keras.Input((4,))
    y = keras.layers.Dense(2, name="fc2")(keras.layers.ReLU()(inner(outer_in)))
    return keras.Model(outer_in, keras.layers.BatchNormalization(name="bn2")(y))


def test_each_layer_gets_the_mean_and_variance_of_its_input_in_order():
    keras.utils.set_random_seed(0)
    model = two_norms()
    x = np.random.default_rng(0).normal(2.0, 3.0, (50, 4)).astype("float32")
    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables}
    counts = tfprune.recalibrate_batchnorm(model, x, batch_size=16)
    assert counts == {"bn1": 50, "bn2": 50}
    inner = model.get_layer("inner")
    # By hand: bn1 reads fc1's outputs; bn2 reads fc2 of relu(bn1) with bn1's new statistics.
    h1 = keras.ops.convert_to_numpy(inner.get_layer("fc1")(x)).astype(np.float64)
    bn1 = inner.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean, h1.mean(0), atol=1e-5)
    np.testing.assert_allclose(bn1.moving_variance, h1.var(0), atol=1e-4)
    h2 = keras.ops.convert_to_numpy(
        model.get_layer("fc2")(keras.ops.relu(bn1(h1.astype("float32"), training=False)))
    ).astype(np.float64)
    bn2 = model.get_layer("bn2")
    np.testing.assert_allclose(bn2.moving_mean, h2.mean(0), atol=1e-5)
    np.testing.assert_allclose(bn2.moving_variance, h2.var(0), rtol=1e-4, atol=1e-5)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_variables}
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_masked_model_recovers_its_accuracy_where_stale_statistics_collapse_it():
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_digits(size=16)
    model = digits_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=6, batch_size=64, verbose=0)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=None)
    apply_target(pruned, 0.5)  # half the filters at once, no fine-tuning

    def accuracy(m):
        predictions = m.predict(x_test, verbose=0).argmax(axis=1)
        return float((predictions == y_test).mean())

    raw = accuracy(pruned)
    tfprune.recalibrate_batchnorm(pruned, x_train[:512])
    recalibrated = accuracy(pruned)
    assert recalibrated > raw + 0.1, (raw, recalibrated)
    # Stripped and shrunk, the recalibrated statistics carry over exactly.
    small = tfprune.shrink(pruned)
    assert abs(accuracy(small) - recalibrated) < 1e-9
