"""LEAP on a small Keras transformer: target density, straight-through gradients, physical
head and row removal, LiteRT export, saving."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.methods.leap import top_k_mask, unit_density
from tfprune.zoo import make_counting_task, tiny_transformer

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_leap")


@pytest.fixture(scope="module")
def task():
    return make_counting_task(2048), make_counting_task(256, seed=1)


def trained_leap(task, epochs=6, **kwargs):
    (x, y), _ = task
    keras.utils.set_random_seed(0)
    leap = tfprune.methods.LEAP(
        tiny_transformer(), initial_threshold=3.0, score_learning_rate=0.05, **kwargs
    )
    leap.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = leap.fit(x, y, batch_size=32, epochs=epochs, verbose=0).history
    return leap, history


@pytest.mark.parametrize(
    "kwargs",
    [
        # 24 s, in `make test-all`; the row target stays in `make test` (shrink test below).
        pytest.param({"granularity": "element", "target_density": 0.2}, marks=pytest.mark.slow),
        # Row pruning's target is also checked, with every layer, by the shrink test below.
        pytest.param(
            {"granularity": "row", "target_density": 0.3, "layers": ["ffn1_up", "ffn2_up"]},
            marks=pytest.mark.slow,
        ),
    ],
)
def test_leap_reaches_its_target_density_within_two_percent(task, kwargs):
    leap, history = trained_leap(task, **kwargs)
    assert abs(unit_density(leap) - kwargs["target_density"]) <= 0.02
    assert history["density"][-1] == pytest.approx(unit_density(leap))
    assert history["density"][0] > history["density"][-1]  # it got there by training
    assert "leap_lambda" in history


def test_pruned_model_warns_when_the_masks_have_not_reached_the_target():
    leap = tfprune.methods.LEAP(tiny_transformer(), target_density=0.3, granularity="head")
    with pytest.warns(UserWarning, match="keep 100% .* target_density=0.3.* Train longer"):
        masked = leap.pruned_model()
    assert tfprune.count_flops(tfprune.shrink(masked)) == tfprune.count_flops(leap.model)


# 16 s, so in `make test-all`: in the fast suite LEAP's rows reach their target above, and its
# head masks shrink a KerasHub BERT in test_unfold.py.
@pytest.mark.slow
def test_head_and_row_pruning_shrink_physically_and_export(task, tmp_path):
    leap, history = trained_leap(task, granularity="row", target_density=0.4)
    assert abs(unit_density(leap) - 0.4) <= 0.02
    _, (x_test, y_test) = task
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it reached its target: nothing to warn about
        masked = leap.pruned_model()
    reference = leap.predict(x_test, verbose=0)
    assert np.abs(masked.predict(x_test, verbose=0) - reference).max() <= 1e-6
    small = tfprune.shrink(masked)  # dead heads and dead units alike

    def heads_of(model):
        return [
            layer.num_heads
            for layer in model.layers
            if isinstance(layer, keras.layers.MultiHeadAttention)
        ]

    heads = heads_of(small)
    assert heads == heads_of(tfprune.shrinking.shrink_heads(masked))
    units = [small.get_layer(name).units for name in ("ffn1_up", "ffn2_up")]
    assert sum(heads) < 8 or sum(units) < 128
    assert small.count_params() < masked.count_params()
    assert np.abs(small.predict(x_test, verbose=0) - reference).max() <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "transformer.tflite")
    assert tfprune.verify_tflite(path, small, x_test[:32]) <= 1e-4
    accuracy = np.mean(np.argmax(tfprune.export.run_tflite(path, x_test)[0], axis=1) == y_test)
    assert accuracy == pytest.approx(
        np.mean(np.argmax(reference, axis=1) == y_test), abs=1 / len(y_test)
    )


def test_straight_through_gradients():
    scores = tf.constant([0.3, -1.0, 2.0, 0.5])
    threshold = tf.constant(0.0)  # sigmoid 0.5: keep 2 of 4
    upstream = tf.constant([1.0, 2.0, 3.0, 4.0])
    with tf.GradientTape() as tape:
        tape.watch([scores, threshold])
        mask = top_k_mask(scores, threshold)
        loss = tf.reduce_sum(mask * upstream)
    d_scores, d_threshold = tape.gradient(loss, [scores, threshold])
    assert mask.numpy().tolist() == [0, 0, 1, 1]
    assert d_scores.numpy().tolist() == [1, 2, 3, 4]  # dL/dS = dL/dM
    assert float(d_threshold) == 3 + 4  # dL/dT = sum(dL/dM * M)


@pytest.mark.slow  # 17 s, in `make test-all`
def test_leap_saves_and_loads_with_its_scores(task, tmp_path):
    leap, _ = trained_leap(task, epochs=2, granularity="head", target_density=0.5)
    leap.save(tmp_path / "leap.keras")
    loaded = keras.saving.load_model(tmp_path / "leap.keras")
    for a, b in zip(leap.scores + leap.thresholds, loaded.scores + loaded.thresholds):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    _, (x_test, _) = task
    assert (
        np.abs(loaded.predict(x_test[:16], verbose=0) - leap.predict(x_test[:16], verbose=0)).max()
        <= 1e-6
    )


def test_leap_bad_input(cnn):
    model = tiny_transformer()
    with pytest.raises(ValueError, match="target_density"):
        tfprune.methods.LEAP(model, target_density=1.5)
    with pytest.raises(ValueError, match="granularity"):
        tfprune.methods.LEAP(model, granularity="block")
    with pytest.raises(ValueError, match="nope"):
        tfprune.methods.LEAP(model, layers=["nope"])
    with pytest.raises(ValueError, match="no layer to prune"):
        tfprune.methods.LEAP(cnn, granularity="head")


def test_einsum_dense_rows_are_masked_whole():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.EinsumDense(
        "ab,bc->ac", output_shape=16, bias_axes="c", activation="relu", name="einsum"
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(hidden))
    leap = tfprune.methods.LEAP(model, target_density=0.5, granularity="row", initial_threshold=0.0)
    # sigmoid(0) = 0.5: half of the 16 rows kept before any training (the target: no warning).
    masked = leap.pruned_model().get_layer("einsum")
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in masked.weights)
    dead = ~kernel.any(axis=0)
    assert dead.sum() == 8 and not bias[dead].any()
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    assert (
        np.abs(leap.pruned_model().predict(x, verbose=0) - leap.predict(x, verbose=0)).max() <= 1e-6
    )
