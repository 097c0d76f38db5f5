"""Recurrent layers in LiteRT: unrolled where the sequence length is fixed, a loop at batch 1
where it is not, and int8 only on the unrolled form."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.export import recurrent, tflite_file


def gru_model(steps):
    inputs = keras.Input((steps, 4))
    x = keras.layers.GRU(6, return_sequences=True, name="gru")(inputs)
    x = keras.layers.SimpleRNN(5, go_backwards=True, name="rnn")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def operators(path):
    return set(tflite_file.operator_names(tflite_file.unpack(path.read_bytes())))


def test_a_fixed_length_is_unrolled_in_the_file_only(tmp_path):
    keras.utils.set_random_seed(0)
    model = gru_model(8)
    x = np.random.default_rng(0).normal(size=(5, 8, 4)).astype(np.float32)
    path = tfprune.export_tflite(model, tmp_path / "gru.tflite")
    assert "WHILE" not in operators(path)
    assert tfprune.verify_tflite(path, model, x) <= 1e-4
    assert not model.get_layer("gru").unroll  # the Keras model is untouched
    path = tfprune.export_tflite(
        model, tmp_path / "gru_int8.tflite", quantize="int8", representative_data=x
    )
    assert tfprune.verify_tflite(path, model, x) <= 0.1


def test_an_unknown_length_is_a_loop_run_one_example_at_a_time(tmp_path):
    keras.utils.set_random_seed(0)
    model = gru_model(None)
    assert recurrent.has_loops(recurrent.export_form(model))
    path = tfprune.export_tflite(model, tmp_path / "gru.tflite")
    assert "WHILE" in operators(path)
    x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype(np.float32)
    (y,) = tfprune.export.run_tflite(path, x)
    assert y.shape == (3, 3)
    assert tfprune.verify_tflite(path, model, x) <= 1e-4
    with pytest.raises(ValueError, match="recurrent layer 'gru' unrolled.*fixed sequence length"):
        tfprune.export_tflite(model, tmp_path / "q.tflite", quantize="int8", representative_data=x)
    assert not (tmp_path / "q.tflite").exists()


def test_long_sequences_stay_loops_in_float_files():
    model = gru_model(recurrent.MAX_UNROLLED_STEPS + 1)
    assert recurrent.has_loops(recurrent.export_form(model))
    assert not recurrent.has_loops(recurrent.export_form(model, quantize="int8"))
