"""Loading, running and timing files in LiteRT: missing and corrupt files give clear errors."""

import keras
import numpy as np
import pytest

import tfprune


def test_bad_tflite_paths_raise_clear_errors(tmp_path, cnn, data):
    with pytest.raises(ValueError, match="No such .tflite file"):
        tfprune.verify_tflite(tmp_path / "missing.tflite", cnn, data[0])
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, as Python code expects
        tfprune.benchmark_tflite(tmp_path / "missing.tflite")
    text = tmp_path / "notes.tflite"
    text.write_text("this is not a model")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        tfprune.benchmark_tflite(text)
    good = tfprune.export_tflite(cnn, tmp_path / "good.tflite")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(tfprune.export.TFLiteFileError):
        tfprune.export.run_tflite(truncated, data[0])
    with pytest.raises(TypeError, match="path"):
        tfprune.inspect_tflite(42)


def test_signatures_are_checked_first_and_both_sides_named(tmp_path):
    inputs = keras.Input((10,), name="features")
    grid = keras.layers.Reshape((4, 5))(keras.layers.Dense(20)(inputs))
    path = tfprune.export_tflite(keras.Model(inputs, grid), tmp_path / "grid.tflite")
    flat = keras.Model(inputs, keras.layers.Dense(20)(inputs))  # same input, (None, 20) out
    x = np.random.default_rng(0).random((2, 10), dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"output 0 differs: .*\[-1, 4, 5\] \(float32\).*\(None, 20\)"
    ):
        tfprune.verify_tflite(path, flat, x)
    with pytest.raises(ValueError, match=r"input 0 \('features'\) of shape \[-1, 10\] .*\[2, 7\]"):
        tfprune.export.run_tflite(path, x[:, :7])
    tokens = keras.Input((10,), dtype="int32")
    embedded = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(8, 4)(tokens))
    ids = keras.Model(tokens, keras.layers.Dense(20)(embedded))
    with pytest.raises(ValueError, match=r"input 0 differs: .*\(float32\).*\(int32\)"):
        tfprune.verify_tflite(path, ids, x)
    assert tfprune.export.run_tflite(path, x)[0].shape == (2, 4, 5)  # the right shapes still run


def test_several_inputs_map_by_name_whatever_order_the_converter_numbers_them(tmp_path):
    """The converter numbers input tensors by name (here `beta` before `alpha`), not in the
    Keras model's order: export_tflite records the order, and run_tflite follows it."""
    a, b = keras.Input((4,), name="alpha"), keras.Input((3,), name="beta")
    model = keras.Model([a, b], [keras.layers.Dense(2)(a), keras.layers.Dense(5)(b)])
    path = tfprune.export_tflite(model, tmp_path / "two.tflite")
    rng = np.random.default_rng(0)
    xs = [rng.random((6, 4), dtype=np.float32), rng.random((6, 3), dtype=np.float32)]
    expected = [np.asarray(y) for y in model(xs)]
    for got, want in zip(tfprune.export.run_tflite(path, xs), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    by_name = tfprune.export.run_tflite(path, {"beta": xs[1], "alpha": xs[0]})
    np.testing.assert_allclose(by_name[1], expected[1], atol=1e-5)
    assert tfprune.verify_tflite(path, model, xs) <= 1e-5
    with pytest.raises(
        ValueError, match=r"takes inputs \['alpha', 'beta'\], got \['beta', 'gamma'\]"
    ):
        tfprune.export.run_tflite(path, {"gamma": xs[0], "beta": xs[1]})
    # A file from elsewhere does not say which input is which: a dict is asked for.
    import tensorflow as tf

    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with pytest.raises(ValueError, match=r"does not record their order.*\['alpha', 'beta'\]"):
        tfprune.export.run_tflite(foreign, xs)
    assert tfprune.verify_tflite(foreign, model, xs) <= 1e-5  # the model has the names


def test_compare_latency_times_every_file_and_checks_its_arguments(tmp_path, cnn):
    a = tfprune.export_tflite(cnn, tmp_path / "a.tflite")
    b = tfprune.export_tflite(cnn, tmp_path / "b.tflite")
    latency = tfprune.compare_latency([a, b], rounds=2, runs=3)
    assert list(latency) == [a, b] and all(seconds > 0 for seconds in latency.values())
    with pytest.raises(ValueError, match="rounds"):
        tfprune.compare_latency([a], rounds=0)
    with pytest.raises(FileNotFoundError):
        tfprune.compare_latency([a, tmp_path / "missing.tflite"], rounds=1, runs=1)


def test_verify_runs_the_model_in_inference_mode_and_leaves_it_unchanged(tmp_path):
    # RandomFlip moves its seed on every call, and a BatchNormalization called with
    # training=True moves its statistics: a check in training mode would report the
    # difference as a mismatch and change the user's model.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RandomFlip()(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.BatchNormalization()(x, training=True)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    path = tfprune.export_tflite(model, tmp_path / "flip.tflite")
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.variables]
    images = np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32) + 3.0
    assert tfprune.verify_tflite(path, model, images) <= 1e-5
    after = [keras.ops.convert_to_numpy(v) for v in model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_latency_of_unknown_lengths_is_timed_at_the_given_size(tmp_path):
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(50, 32)(tokens)
    x = keras.layers.Dense(64, name="wide")(x)
    path = tfprune.export_tflite(keras.Model(tokens, x), tmp_path / "tokens.tflite")
    with pytest.warns(UserWarning, match="'token_ids'.*timed at 1"):
        short = tfprune.benchmark_tflite(path, runs=50, warmup=5).median
    long = tfprune.benchmark_tflite(path, runs=50, warmup=5, input_shapes=(256,)).median
    assert long > 4 * short  # 256 tokens cost more than 1
    latencies = tfprune.compare_latency([path], rounds=1, runs=5, input_shapes={"token_ids": (8,)})
    assert list(latencies) == [path]
    with pytest.raises(ValueError, match="its inputs are \\['token_ids'\\]"):
        tfprune.benchmark_tflite(path, input_shapes={"ids": (8,)})
