"""Criteria from the literature: each test fails if the method is wrong."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.criteria import FPGM, LAP, BNScale, ScoringContext, Taylor


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
            [np.array([1.0, 2.0, 0.5, 3.0]), np.zeros(4), np.zeros(4), np.array([1.0, 4.0, 0.25, 9.0])]
        )
    pruned = tfprune.prune(model, granularity="unstructured", criterion="lap_bn" if bn else "lap", layers=["d2"], schedule=0.5)
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
    out_of = np.array([(fc[c::4] ** 2).sum() for c in range(4)])  # feature i belongs to channel i % 4
    expected = conv.kernel.numpy().astype(np.float64) ** 2 * out_of  # no layer before: factor 1
    np.testing.assert_allclose(LAP()(conv.kernel.numpy(), conv, ScoringContext(pruned)), expected, rtol=1e-5)


def test_lap_forward_prunes_layer_by_layer():
    pruned = tfprune.prune(dense_chain(), granularity="unstructured", criterion="lap_forward", protect=None, schedule=0.5)
    plan = tfprune.apply_target(pruned, 0.5)
    assert plan.removed() == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="layer by layer"):
        tfprune.prune(dense_chain(), granularity="unstructured", criterion="lap_forward", ranking="global", schedule=0.5)


def test_taylor_matches_a_finite_difference_estimate():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(h))
    hidden = model.get_layer("hidden")
    hidden.kernel.assign(hidden.kernel * 0.05)  # small weights: first order is accurate
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype(np.float32), rng.integers(0, 3, 64)
    pruned = tfprune.prune(model, granularity="unstructured", criterion="taylor", layers=["hidden"], schedule=0.5)
    layer = pruned.get_layer("prune_hidden").layer
    weight = layer.kernel.numpy()
    scores = Taylor()(weight, layer, ScoringContext(pruned, data=(x, y)))

    def loss():
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, pruned(x))))

    base = loss()
    for i, j in [(0, 0), (2, 3), (5, 1), (4, 4)]:
        layer.kernel.assign(np.where(np.arange(weight.size).reshape(weight.shape) == i * 5 + j, 0, weight))
        assert abs(base - loss()) == pytest.approx(scores[i, j], rel=0.05, abs=1e-6)
        layer.kernel.assign(weight)
    with pytest.raises(ValueError, match="calibration data"):
        Taylor()(weight, layer, ScoringContext(pruned))


def test_taylor_runs_inside_fit_with_callback_data():
    keras.utils.set_random_seed(4)
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), _ = load_digits()
    pruned = tfprune.prune(digits_cnn(), criterion="taylor", schedule=tfprune.OneShot(0.5, step=2))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback(data=(x[:128], y[:128]))])
    assert all(w.sparsity() == pytest.approx(0.5) for w in tfprune.wrappers_of(pruned))


def conv_with_filters(filters):
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(filters.shape[-1], 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    x = keras.layers.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.get_layer("conv").set_weights([filters, np.zeros(filters.shape[-1], np.float32)])
    return model


def pruned_filters(model, criterion, n=1):
    pruned = tfprune.prune(model, criterion=criterion, layers=["conv"], schedule=tfprune.OneShot(n / 8))
    tfprune.apply_target(pruned, n / 8)
    mask = pruned.get_layer("prune_conv").mask_array()
    return set(np.flatnonzero(mask.reshape(-1, 8).max(axis=0) == 0))


def test_fpgm_picks_the_planted_duplicate_not_the_smallest_filter():
    rng = np.random.default_rng(5)
    filters = rng.normal(size=(3, 3, 2, 8)).astype(np.float32)
    filters[..., 0] *= 0.05  # smallest norm: what L1 would prune
    centre = np.delete(filters, [3, 5], axis=-1).mean(axis=-1)
    filters[..., 3] = centre  # a duplicated filter at the centre: the most replaceable
    filters[..., 5] = centre
    model = conv_with_filters(filters)
    assert pruned_filters(model, "l1") == {0}
    assert pruned_filters(model, "fpgm") <= {3, 5} and len(pruned_filters(model, "fpgm")) == 1
    with pytest.raises(ValueError, match="cannot rank 'unstructured'"):
        tfprune.prune(model, criterion="fpgm", granularity="unstructured", layers=["conv"])


def test_bn_scale_ranks_a_zeroed_gamma_first_and_needs_a_bn():
    rng = np.random.default_rng(6)
    model = conv_with_filters(rng.normal(size=(3, 3, 2, 8)).astype(np.float32))
    gamma = np.ones(8, np.float32)
    gamma[6] = 0.0
    model.get_layer("bn").set_weights([gamma, np.zeros(8), np.zeros(8), np.ones(8)])
    assert pruned_filters(model, "bn_scale") == {6}
    with pytest.raises(ValueError, match="'reader' is not followed by a BatchNormalization"):
        tfprune.prune(model, criterion="bn_scale", layers=["conv", "reader"], protect=None)


def test_random_criterion_is_seeded_and_serializes():
    a = tfprune.criteria.RandomScores(seed=1)(np.zeros((4, 4)), None)
    b = tfprune.criteria.RandomScores(seed=1)(np.zeros((4, 4)), None)
    np.testing.assert_array_equal(a, b)
    for name in ("bn_scale", "taylor", "lap", "lap_bn", "lap_forward", "fpgm", "random"):
        criterion = tfprune.criteria.get(name)
        restored = tfprune.criteria.from_name(tfprune.criteria.name_of(criterion))
        assert restored == criterion and type(restored) is type(criterion)
    assert isinstance(tfprune.criteria.get("fpgm"), FPGM) and isinstance(tfprune.criteria.get("bn_scale"), BNScale)


@pytest.fixture(scope="module")
def trained_digits():
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), (x_test, y_test) = load_digits()
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    return model, (x[:300], y[:300])


def test_bpps_meets_its_flops_target_and_feeds_the_callback(trained_digits):
    model, data = trained_digits
    found = tfprune.layerwise_rates(model, data, target_flops=0.4, verbose=False)
    assert found.flops_removed == pytest.approx(0.4, abs=0.02)
    assert set(found.rates) == {"conv2", "conv3"} and len(set(found.rates.values())) > 1  # not uniform
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, frequency=5)
    pruned = tfprune.prune(model, schedule=schedule, rates=found.rates)
    tfprune.apply_target(pruned, 0.5)  # the schedule's final target: every layer at its own rate
    for wrapper in tfprune.wrappers_of(pruned):
        assert wrapper.sparsity() == pytest.approx(found.rates[wrapper.layer.name], abs=1e-6)
    removed = 1 - tfprune.count_flops(tfprune.shrink(pruned)) / tfprune.count_flops(model)
    assert removed == pytest.approx(found.flops_removed, abs=1e-6)
    with pytest.raises(ValueError, match="target_flops"):
        tfprune.layerwise_rates(model, data, target_flops=1.2)
    with pytest.raises(ValueError, match="rates: 'conv9'"):
        tfprune.prune(model, schedule=schedule, rates={"conv9": 0.5})


def test_bpps_rates_beat_uniform_rates_on_calibration_loss(trained_digits):
    model, data = trained_digits
    found = tfprune.layerwise_rates(model, data, target_flops=0.4, verbose=False)
    x, y = data

    def loss(pruned):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(y, pruned(x))))

    bpps = tfprune.prune(model, schedule=tfprune.OneShot(0.5), rates=found.rates)
    tfprune.apply_target(bpps, 0.5)
    uniform = tfprune.prune(model, schedule=tfprune.OneShot(0.4), target="flops")
    tfprune.apply_target(uniform, 0.4)
    assert loss(bpps) <= loss(uniform) + 1e-6


def test_pwc_compensation_cuts_the_reconstruction_error_of_a_real_layer(trained_digits):
    from tfprune.zoo import load_digits

    model, (x_cal, _) = trained_digits
    _, (x_test, y_test) = load_digits()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["conv2"])
    tfprune.apply_target(pruned, 0.5)
    plain = tfprune.strip(pruned)
    compensated = tfprune.compensate(model, pruned, x_cal)

    def conv3_output(m):
        return keras.Model(m.inputs, m.get_layer("conv3").output).predict(x_test, verbose=0)

    reference = conv3_output(model)
    before = np.mean((conv3_output(plain) - reference) ** 2)
    after = np.mean((conv3_output(compensated) - reference) ** 2)
    assert after < 0.5 * before  # well below the uncompensated error, on held-out images
    small = tfprune.shrink(compensated)  # the compensated model still shrinks exactly
    np.testing.assert_allclose(small.predict(x_test, verbose=0), compensated.predict(x_test, verbose=0), atol=1e-5)
    accuracy = lambda m: np.mean(np.argmax(m.predict(x_test, verbose=0), 1) == y_test)  # noqa: E731
    assert accuracy(compensated) >= accuracy(plain)


def test_least_squares_weights_recover_a_redundant_input():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(500, 1))
    x = np.hstack([a, 2 * a + 0.01 * rng.normal(size=(500, 1)), rng.normal(size=(500, 1))])  # input 1 ~ 2 x input 0
    w = rng.normal(size=(3, 2))
    from tfprune.compensation import least_squares_weights

    w_new, b_new = least_squares_weights(x, w, np.zeros(2), np.array([True, False, True]), rescale=False)
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
    x_out = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="reader")(x_res)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x_out)))
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.4), layers=["stem", "b", "a"])
    tfprune.apply_target(pruned, 0.4)
    compensated = tfprune.compensate(model, pruned, x[:300])

    def reader_output(m):
        return keras.Model(m.inputs, m.get_layer("reader").output).predict(x_test, verbose=0)

    reference = reader_output(model)
    before = np.mean((reader_output(tfprune.strip(pruned)) - reference) ** 2)
    after = np.mean((reader_output(compensated) - reference) ** 2)
    assert after < 0.7 * before
    small = tfprune.shrink(compensated)
    assert small.get_layer("stem").filters < 16 and small.get_layer("b").filters == small.get_layer("stem").filters
    np.testing.assert_allclose(small.predict(x_test, verbose=0), compensated.predict(x_test, verbose=0), atol=1e-5)


def test_pwc_greedy_order_drops_the_channel_compensation_can_rebuild():
    from tfprune.compensation import greedy_channel_order

    rng = np.random.default_rng(9)
    base = rng.normal(size=(800, 3))
    # channel 3 is a copy of channel 0 (plus noise): compensation can rebuild either from the other
    x = np.hstack([base, base[:, :1] + 0.01 * rng.normal(size=(800, 1))])
    w = np.array([[1.0], [0.5], [0.5], [3.0]])  # channel 3 has the largest weight: L1 would keep it
    order = greedy_channel_order(x, w, channels=4)
    assert set(order[-1:]) <= {0, 3}  # the last kept is one of the redundant pair
    assert {1, 2} <= set(order[:3])


def test_pwc_criterion_ranks_filters_inside_a_model(trained_digits):
    model, data = trained_digits
    pruned = tfprune.prune(model, criterion="pwc", layers=["conv2"], schedule=tfprune.OneShot(0.5))
    plan = tfprune.apply_target(pruned, 0.5, data=data)
    assert pruned.get_layer("prune_conv2").sparsity() == pytest.approx(0.5)
    assert plan.removed() > 0


def test_compensated_rates_respect_the_accuracy_floor(trained_digits):
    model, data = trained_digits
    found = tfprune.compensated_rates(model, data, floor=(0.98, 0.95), verbose=False)
    assert set(found.rates) == {"conv2", "conv3"} and found.flops_removed > 0.1
    x, y = data
    base = np.mean(np.argmax(model.predict(x, verbose=0), 1) == y)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), rates=found.rates)
    tfprune.apply_target(pruned, 0.5)
    compensated = tfprune.compensate(model, pruned, x)
    accuracy = np.mean(np.argmax(compensated.predict(x, verbose=0), 1) == y)
    assert accuracy >= 0.95 * base - 1e-9  # the last layer's floor holds for the whole model
    assert found.loss_increase == pytest.approx(base - accuracy, abs=1e-6)
    with pytest.raises(ValueError, match="floor"):
        tfprune.compensated_rates(model, data, floor=(0.9, 0.95))


def test_taylor_scores_layers_inside_nested_models():
    keras.utils.set_random_seed(10)
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(5, activation="tanh", name="inner_fc")(inner_in), name="inner")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(inner(inputs)))
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(32, 6)).astype(np.float32), rng.integers(0, 3, 32))
    pruned = tfprune.prune(model, granularity="unstructured", criterion="taylor", layers=["inner_fc"], schedule=0.5)
    tfprune.apply_target(pruned, 0.5, data=data)
    wrapper = tfprune.wrappers_of(pruned)[0]
    assert wrapper.layer.name == "inner_fc" and wrapper.sparsity() == pytest.approx(0.5)
