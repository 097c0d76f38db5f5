"""PwC's least-squares compensation rebuilds what pruned channels carried."""

import keras
import numpy as np

import tfprune


def test_pwc_compensation_cuts_the_reconstruction_error_of_a_real_layer(trained_digits):
    from tfprune.zoo import load_digits

    model, (x_cal, _) = trained_digits
    _, (x_test, y_test) = load_digits()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["conv2"])
    tfprune.apply_target(pruned, 0.5)
    plain = tfprune.strip(pruned)
    compensated = tfprune.methods.compensate(model, pruned, x_cal)

    def conv3_output(m):
        return keras.Model(m.inputs, m.get_layer("conv3").output).predict(x_test, verbose=0)

    reference = conv3_output(model)
    before = np.mean((conv3_output(plain) - reference) ** 2)
    after = np.mean((conv3_output(compensated) - reference) ** 2)
    assert after < 0.5 * before  # well below the uncompensated error, on held-out images
    small = tfprune.shrink(compensated)  # the compensated model still shrinks exactly
    np.testing.assert_allclose(
        small.predict(x_test, verbose=0), compensated.predict(x_test, verbose=0), atol=1e-5
    )
    accuracy = lambda m: np.mean(np.argmax(m.predict(x_test, verbose=0), 1) == y_test)  # noqa: E731
    assert accuracy(compensated) >= accuracy(plain)


def test_least_squares_weights_recover_a_redundant_input():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(500, 1))
    x = np.hstack(
        [a, 2 * a + 0.01 * rng.normal(size=(500, 1)), rng.normal(size=(500, 1))]
    )  # input 1 ~ 2 x input 0
    w = rng.normal(size=(3, 2))
    from tfprune.methods.compensation import least_squares_weights

    w_new, b_new = least_squares_weights(
        x, w, np.zeros(2), np.array([True, False, True]), rescale=False
    )
    error = np.mean((x @ w - (x @ w_new + b_new)) ** 2)
    naive = np.mean((x @ w - x @ (w * np.array([[1], [0], [1]]))) ** 2)
    assert w_new[1].tolist() == [0.0, 0.0] and error < 0.01 * naive


def test_pwc_works_on_a_resnet_style_block():
    from tfprune.zoo import load_digits

    (x, y), (x_test, _) = load_digits()
    keras.utils.set_random_seed(8)
    inputs = keras.Input((16, 16, 1))
    stem = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="a")(stem)
    h = keras.layers.Conv2D(16, 3, padding="same", name="b")(h)
    x_res = keras.layers.ReLU()(keras.layers.Add()([stem, h]))
    x_out = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="reader")(
        x_res
    )
    model = keras.Model(
        inputs,
        keras.layers.Dense(10, activation="softmax", name="head")(
            keras.layers.GlobalAveragePooling2D()(x_out)
        ),
    )
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.4), layers=["stem", "b", "a"])
    tfprune.apply_target(pruned, 0.4)
    compensated = tfprune.methods.compensate(model, pruned, x[:300])

    def reader_output(m):
        return keras.Model(m.inputs, m.get_layer("reader").output).predict(x_test, verbose=0)

    reference = reader_output(model)
    before = np.mean((reader_output(tfprune.strip(pruned)) - reference) ** 2)
    after = np.mean((reader_output(compensated) - reference) ** 2)
    assert after < 0.7 * before
    small = tfprune.shrink(compensated)
    assert (
        small.get_layer("stem").filters < 16
        and small.get_layer("b").filters == small.get_layer("stem").filters
    )
    np.testing.assert_allclose(
        small.predict(x_test, verbose=0), compensated.predict(x_test, verbose=0), atol=1e-5
    )
