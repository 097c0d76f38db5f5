"""Sparse storage per layer: only where LiteRT's sparse kernels pay, measured."""

import warnings

import keras
import numpy as np
import pytest
from helpers import small_cnn

import tfprune
from tfprune.export import converter, sparse_storage


def zero_blocks(kernel, fraction, block, seed):
    """Zero `fraction` of the 1 x `block` blocks that TFLite's FC weight [out, in] stores,
    i.e. `block` consecutive inputs of one Keras kernel column."""
    rng = np.random.default_rng(seed)
    inputs, outputs = kernel.shape
    dead = rng.random((inputs // block, outputs)) < fraction
    return kernel * ~np.repeat(dead, block, axis=0)


def mlp(fractions, block=4, width=512, units=None):
    """An MLP whose named Dense layers have the given share of zero blocks; `units` gives
    some of them another width than `width`."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((width,), name="features")
    x = inputs
    for name in fractions:
        x = keras.layers.Dense((units or {}).get(name, width), activation="relu", name=name)(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs)
    for seed, (name, fraction) in enumerate(fractions.items()):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([zero_blocks(kernel, fraction, block, seed), bias])
    return model


def stored(path):
    return {
        t["name"]: t
        for t in tfprune.inspect_tflite(path)["tensors"]
        if t["constant"] and len(t["shape"]) == 2
    }


def by_layer(tensors, layer):
    (tensor,) = [t for n, t in tensors.items() if f"/{layer}_" in n or f"/{layer}/" in n]
    return tensor


def test_auto_stores_only_the_layer_whose_sparse_kernel_pays(tmp_path):
    # The sparse kernel runs outside XNNPACK's partition, which costs most of its gain when
    # dense layers of the same size surround it (measured 0.86-0.94x, within what timing
    # noise on a busy machine can flip); here the sparse layer carries most of the FLOPs.
    model = mlp({"very_sparse": 0.96, "half_sparse": 0.5}, width=1024, units={"half_sparse": 128})
    report = tfprune.export.plan_sparse_storage(model)
    choices = {c.tensor.split("/")[1].rsplit("_", 1)[0]: c for c in report.choices}
    assert choices["very_sparse"].sparse and choices["very_sparse"].block_zeros > 0.9
    assert not choices["half_sparse"].sparse and "break-even" in choices["half_sparse"].reason
    assert not choices["logits"].sparse
    assert "SPARSE" in str(report) and "measured" in str(report)

    auto = tfprune.export_tflite(model, tmp_path / "auto.tflite", sparse="auto")
    dense = tfprune.export_tflite(model, tmp_path / "dense.tflite")
    tensors = stored(auto)
    assert by_layer(tensors, "very_sparse")["sparse"] and by_layer(tensors, "very_sparse")[
        "block_shape"
    ] == [1, 4]
    assert not by_layer(tensors, "half_sparse")["sparse"]
    x = np.random.default_rng(1).random((8, 1024), dtype=np.float32)
    assert tfprune.verify_tflite(auto, model, x) <= 1e-4
    # Whether the file runs faster is a benchmark (BENCHMARKS.md section 6), not a timed test.
    assert auto.stat().st_size < dense.stat().st_size


def test_auto_keeps_convolutions_dense_and_forced_sparse_warns_with_numbers(tmp_path, data):
    pruned = tfprune.prune(small_cnn(), granularity="unstructured", schedule=tfprune.OneShot(0.7))
    tfprune.apply_target(pruned, 0.7)
    report = tfprune.export.plan_sparse_storage(pruned)
    convs = [c for c in report.choices if c.op == "CONV_2D"]
    assert convs and not any(c.sparse for c in convs)
    assert all("DENSIFY" in c.reason for c in convs if c.zeros >= 0.3)
    path = tfprune.export_tflite(pruned, tmp_path / "auto.tflite", sparse="auto")
    assert "DENSIFY" not in tfprune.inspect_tflite(path)["operators"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forced = tfprune.export_tflite(pruned, tmp_path / "forced.tflite", sparse=True)
    assert "DENSIFY" in tfprune.inspect_tflite(forced)["operators"]
    slower = [w for w in caught if "sparse=True makes this model slower" in str(w.message)]
    # Forcing may or may not be measurably slower on this tiny model; when it warns, it
    # says by how much.
    assert all(" us vs " in str(w.message) and "x)" in str(w.message) for w in slower)
    assert tfprune.verify_tflite(forced, pruned, data[0]) <= 1e-4


def test_int8_sparse_dense_layers_use_1x16_blocks_and_zeros_survive(tmp_path):
    model = mlp({"very_sparse": 0.97, "half_sparse": 0.5}, block=16, width=256)
    x = np.random.default_rng(2).random((64, 256), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # forcing the 50 % layer sparse is slower, and says so
        path = tfprune.export_tflite(
            model, tmp_path / "q.tflite", sparse=True, quantize="int8", representative_data=x
        )
    tensors = stored(path)
    very, half = by_layer(tensors, "very_sparse"), by_layer(tensors, "half_sparse")
    assert very["type"] == "INT8" and very["sparse"] and very["block_shape"] == [1, 16]
    # Symmetric weight quantization maps 0 to 0: at least the Keras zeros are zero.
    for name, tensor in (("very_sparse", very), ("half_sparse", half)):
        assert tensor["zeros"] >= np.mean(model.get_layer(name).get_weights()[0] == 0) - 1e-9
    (quantized,) = tfprune.export.run_tflite(path, x[:16])
    reference = keras.ops.convert_to_numpy(model(x[:16]))
    assert np.abs(quantized - reference).max() <= 0.1 * np.abs(reference).max()


def test_int8_auto_keeps_sparse_weights_only_when_measured_faster():
    # Whether int8 sparse kernels pay here depends on how LiteRT partitions the graph
    # (BENCHMARKS.md section 6), so the check is the guarantee, not a particular choice.
    model = mlp({"s1": 0.97, "s2": 0.97}, block=16, width=512)
    x = np.random.default_rng(2).random((64, 512), dtype=np.float32)
    report = tfprune.export.plan_sparse_storage(model, quantize="int8", representative_data=x)
    assert report.ratio is not None
    if any(c.sparse for c in report.choices):
        assert report.ratio <= sparse_storage.NOISE and not report.fell_back
    else:
        assert (
            report.fell_back
            and report.ratio > sparse_storage.NOISE
            and "measured" in report.choices[0].reason
        )


def test_xnnpack_sparse_path_is_named_and_near_misses_explained():
    def mobilenet_like(zeros):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(32, 1, activation="relu", name="pointwise")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(10)(x))
        layer = model.get_layer("pointwise")
        kernel, bias = layer.get_weights()
        flat = kernel.reshape(-1)
        flat[np.random.default_rng(0).permutation(flat.size)[: int(zeros * flat.size)]] = 0
        layer.set_weights([flat.reshape(kernel.shape), bias])
        return model

    def check(model):
        return sparse_storage.xnnpack_sparse_path(converter.convert(model, None, None))

    assert check(mobilenet_like(0.8)).eligible
    near = check(mobilenet_like(0.6))
    assert not near.eligible and "near miss" in str(near)
    assert not check(small_cnn()).eligible


def test_export_says_when_the_xnnpack_sparse_path_applies_or_narrowly_misses(tmp_path, capsys):
    for zeros, expected in ((0.8, "XNNPACK sparse path: eligible"), (0.6, "near miss")):
        model = keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                keras.layers.Conv2D(32, 1, activation="relu", name="pointwise"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(10),
            ]
        )
        layer = model.get_layer("pointwise")
        kernel, bias = layer.get_weights()
        flat = kernel.reshape(-1)
        flat[np.random.default_rng(0).permutation(flat.size)[: int(zeros * flat.size)]] = 0
        layer.set_weights([flat.reshape(kernel.shape), bias])
        tfprune.export_tflite(model, tmp_path / "m.tflite")
        assert expected in capsys.readouterr().out
    tfprune.export_tflite(small_cnn(), tmp_path / "plain.tflite")
    tfprune.export_tflite(model, tmp_path / "quiet.tflite", verbose=False)
    assert "XNNPACK" not in capsys.readouterr().out


def test_sparse_storage_arguments_are_checked(cnn):
    with pytest.raises(TypeError, match="sparse"):
        tfprune.export.plan_sparse_storage(cnn, sparse="always")
    with pytest.raises(ValueError, match="sparse='auto' or True"):
        tfprune.export.plan_sparse_storage(cnn, sparse=False)
