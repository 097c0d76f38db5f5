"""export_tflite: real LiteRT files, dense, sparse and int8, written atomically."""

import os

import keras
import numpy as np
import pytest
from helpers import small_cnn

import tfprune
from keras_hub_zoo import FAMILIES, token_inputs
from tfprune.export import converter, tflite_file
from tfprune.masking.ranking import apply_target


def pruned_cnn(target=0.5, **kwargs):
    keras.utils.set_random_seed(0)
    pruned = tfprune.prune(small_cnn(), schedule=tfprune.OneShot(target), **kwargs)
    apply_target(pruned, target)
    return pruned


def test_export_verify_and_benchmark_a_stripped_model(tmp_path, data):
    plain = tfprune.strip(pruned_cnn())
    path = tfprune.export_tflite(plain, tmp_path / "m.tflite")
    assert path.read_bytes()[4:8] == b"TFL3"
    assert tfprune.verify_tflite(path, plain, data[0]) <= 1e-4
    latency = tfprune.benchmark_tflite(path, runs=20, warmup=2)
    assert 0 < latency.p10 <= latency.median <= latency.p90
    assert "median" in str(latency)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]  # no temporary file left


def test_exporting_a_wrapped_model_strips_a_copy(tmp_path, data):
    pruned = pruned_cnn()
    path = tfprune.export_tflite(pruned, tmp_path / "m.tflite")
    assert tfprune.wrappers_of(pruned)
    assert tfprune.verify_tflite(path, pruned, data[0]) <= 1e-4


def test_sparse_export_stores_block_sparse_dense_weights(tmp_path):
    inputs = keras.Input((64,))
    x = keras.layers.Dense(64, name="fc1")(inputs)
    outputs = keras.layers.Dense(8, name="fc2")(x)
    model = keras.Model(inputs, outputs)
    pruned = tfprune.prune(
        model, granularity="block", schedule=tfprune.OneShot(0.8), layers=["fc1"]
    )
    apply_target(pruned, 0.8)
    dense_path = tfprune.export_tflite(pruned, tmp_path / "dense.tflite")
    sparse_path = tfprune.export_tflite(pruned, tmp_path / "sparse.tflite", sparse=True)
    sparse_tensors = [t for t in tfprune.inspect_tflite(sparse_path)["tensors"] if t["sparse"]]
    assert len(sparse_tensors) == 1 and sparse_tensors[0]["block_map"] == [1]
    assert not any(t["sparse"] for t in tfprune.inspect_tflite(dense_path)["tensors"])
    assert sparse_path.stat().st_size < dense_path.stat().st_size
    x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    assert tfprune.verify_tflite(sparse_path, pruned, x) <= 1e-4
    assert "FULLY_CONNECTED" in tfprune.inspect_tflite(sparse_path)["operators"]


def test_int8_export_keeps_zeros_and_stays_close(tmp_path, data):
    plain = tfprune.strip(pruned_cnn())
    path = tfprune.export_tflite(
        plain, tmp_path / "q.tflite", quantize="int8", representative_data=data[0]
    )
    types = {t["type"] for t in tfprune.inspect_tflite(path)["tensors"]}
    assert "INT8" in types
    interpreter = tfprune.export.load_interpreter(path)
    # conv2's kernel in TFLite's OHWI layout, quantized: half of its 16 filters must be all zero.
    (kernel,) = [
        interpreter.get_tensor(d["index"])
        for d in interpreter.get_tensor_details()
        if tuple(d["shape"]) == (16, 3, 3, 8) and d["dtype"] == np.int8
    ]
    assert (np.abs(kernel).reshape(16, -1).max(axis=1) == 0).sum() == 8
    (probabilities,) = tfprune.export.run_tflite(path, data[0])
    reference = plain(data[0]).numpy()
    assert np.abs(probabilities - reference).max() < 0.05
    with pytest.raises(ValueError, match="representative_data"):
        tfprune.export_tflite(plain, tmp_path / "r.tflite", quantize="int8")
    # Examples of another shape: named before the calibrator fails in C++.
    name, shape = plain.inputs[0].name, tuple(plain.inputs[0].shape[1:])
    with pytest.raises(ValueError, match=rf"for input '{name}' holds examples of shape .*takes"):
        tfprune.export_tflite(
            plain, tmp_path / "r.tflite", quantize="int8", representative_data=data[0][:, :-1]
        )
    assert shape[0] is not None  # the cut axis has a size to disagree with
    assert not (tmp_path / "r.tflite").exists()


def test_multi_input_multi_output_models_map_by_order(tmp_path):
    a, b = keras.Input((4,), name="zeta"), keras.Input((3,), name="alpha")
    h = keras.layers.Concatenate()([a, keras.layers.Dense(4, name="fb")(b)])
    out1 = keras.layers.Dense(2, name="o1")(h)
    out2 = keras.layers.Dense(5, name="o2")(a)
    model = keras.Model([a, b], [out1, out2])
    path = tfprune.export_tflite(model, tmp_path / "mimo.tflite")
    rng = np.random.default_rng(0)
    xs = [rng.random((6, 4), dtype=np.float32), rng.random((6, 3), dtype=np.float32)]
    outputs = tfprune.export.run_tflite(path, xs)
    assert [o.shape for o in outputs] == [(6, 2), (6, 5)]
    assert tfprune.verify_tflite(path, model, xs) <= 1e-5


def test_export_arguments_are_checked_and_failed_exports_leave_files_alone(tmp_path, cnn):
    target = tmp_path / "keep.tflite"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError, match="quantize"):
        tfprune.export_tflite(cnn, target, quantize="fp16")
    with pytest.raises(ValueError, match="does not exist"):
        tfprune.export_tflite(cnn, tmp_path / "no" / "dir" / "m.tflite")
    with pytest.raises(TypeError, match="sparse"):
        tfprune.export_tflite(cnn, target, sparse="yes")
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["keep.tflite"]
    with pytest.raises(ValueError, match="runs"):
        tfprune.benchmark_tflite(target, runs=0)


def _models_with_names():
    single = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    a, b = keras.Input((3,), name="beta"), keras.Input((2,), name="alpha")
    joined = keras.layers.Concatenate()([a, b])
    listed = keras.Model([a, b], [keras.layers.Dense(2)(joined), keras.layers.Dense(1)(a)])
    keyed = keras.Model([a, b], {"z": keras.layers.Dense(2)(joined), "a": keras.layers.Dense(1)(b)})
    keyed_inputs = keras.Model({"beta": a, "alpha": b}, keras.layers.Dense(2)(joined))
    return [single, listed, keyed, keyed_inputs]


@pytest.mark.parametrize("index", range(3), ids=["single", "lists", "dict-outputs"])
def test_signature_is_the_one_from_keras_model_gives(index):
    # Android code calls runSignature with these names; tfprune's lighter conversion
    # (a frozen function, not a temporary SavedModel) must not rename them.
    import tensorflow as tf

    model = _models_with_names()[index]
    ours = tflite_file.signatures(tflite_file.unpack(converter.convert(model)))
    reference = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert ours == tflite_file.signatures(tflite_file.unpack(reference))


@pytest.mark.parametrize("index", range(4), ids=["single", "lists", "dict-outputs", "dict-inputs"])
def test_exports_run_in_the_keras_models_order(index, tmp_path):
    # Dict inputs, which TFLiteConverter.from_keras_model cannot convert under Keras 3, too.
    model = _models_with_names()[index]
    path = tfprune.export_tflite(model, tmp_path / "m.tflite")
    rng = np.random.default_rng(index)
    xs = {t.name: rng.random((5, *t.shape[1:]), dtype=np.float32) for t in model.inputs}
    feed = {3: xs, 0: xs[model.inputs[0].name]}.get(index, list(xs.values()))
    expected = keras.tree.flatten(model.predict(feed, verbose=0))
    got = tfprune.export.run_tflite(path, feed)
    assert len(got) == len(expected)
    for actual, want in zip(got, expected):
        np.testing.assert_allclose(actual, np.asarray(want), atol=1e-5)
    assert tfprune.verify_tflite(path, model, feed) <= 1e-5


def test_unknown_lengths_the_converter_cannot_lower_are_named_with_the_fix(tmp_path, capfd):
    # KerasHub's Llama builds its causal mask from the sequence length: at unknown lengths
    # TensorFlow's converter fails with a dump of the whole graph.
    model = FAMILIES["llama"][0]()
    with pytest.raises(ValueError, match=r"'token_ids' \(None, None\).*input_shapes=\{") as error:
        tfprune.export_tflite(model, tmp_path / "llama.tflite")
    assert len(str(error.value)) < 600 and "\n" not in str(error.value)
    assert "tf.StridedSlice" in str(error.value) and "mlir" not in capfd.readouterr().err.lower()
    assert not (tmp_path / "llama.tflite").exists()
    shapes = {"token_ids": (12,), "padding_mask": (12,)}
    path = tfprune.export_tflite(model, tmp_path / "llama.tflite", input_shapes=shapes)
    x = token_inputs(batch=3, length=12)
    assert tfprune.verify_tflite(path, model, x) <= 1e-4
    assert tuple(model.inputs[0].shape) == (None, None)  # the Keras model is unchanged


@pytest.mark.parametrize(
    "shapes, message",
    [
        ({"tokens": (4,)}, r"names \['tokens'\].*inputs are \['padding_mask', 'token_ids'\]"),
        ({"token_ids": (4, 2)}, r"'token_ids' has shape \(None,\).*another rank"),
        ([(4,)], "1 shapes; the model has 2 inputs"),
        ({"token_ids": (0,)}, "positive integers"),
    ],
)
def test_input_shapes_that_do_not_fit_the_model_are_refused(tmp_path, shapes, message):
    with pytest.raises(ValueError, match=message):
        tfprune.export_tflite(FAMILIES["llama"][0](), tmp_path / "x.tflite", input_shapes=shapes)
