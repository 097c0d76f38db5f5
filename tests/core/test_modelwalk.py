"""Copying layers from their configs."""

import keras
import pytest

from tfprune.core.modelwalk import clone_layer, copy_layer


class ReportsTooMuch(keras.layers.Layer):
    """A layer whose config also holds a value it computes (as KerasHub's
    ViTPatchingAndEmbedding reports `num_patches`), which its constructor refuses."""

    def __init__(self, side, **kwargs):
        super().__init__(**kwargs)
        self.side = side
        self.cells = side * side

    def get_config(self):
        return {**super().get_config(), "side": self.side, "cells": self.cells}


def test_a_config_with_entries_the_constructor_refuses_is_cloned_from_the_rest():
    layer = ReportsTooMuch(3, name="grid")
    with pytest.raises(TypeError):
        ReportsTooMuch.from_config(layer.get_config())
    clone = clone_layer(layer)
    assert (clone.side, clone.cells, clone.name) == (3, 9, "grid")
    assert ReportsTooMuch.from_config(clone.get_config()).cells == 9  # and it saves loadably


def test_a_config_the_constructor_accepts_but_fails_on_still_raises():
    layer = keras.layers.Dense(2)
    with pytest.raises(TypeError):
        clone_layer(layer, config={**layer.get_config(), "units": None})


class NoKwargs(keras.layers.Layer):
    """A constructor without **kwargs, as keras.io's examples write them."""

    def __init__(self, units):
        super().__init__()
        self.units = units


class TakesALayer(keras.layers.Layer):
    """A constructor argument that Keras' automatic config cannot describe."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner


def test_a_layer_without_kwargs_is_copied_with_its_name_trainability_and_dtype():
    layer = NoKwargs(3)
    layer.trainable = False
    layer.dtype_policy = "mixed_float16"
    with pytest.raises(TypeError, match="trainable"):
        NoKwargs.from_config(layer.get_config())  # what Keras alone does
    clone = clone_layer(layer)
    assert (clone.units, clone.name, clone.trainable) == (3, layer.name, False)
    assert clone.dtype_policy.name == "mixed_float16"
    assert NoKwargs.from_config(clone.get_config()).units == 3  # it saves loadably


def test_a_layer_that_cannot_be_copied_is_named_with_what_to_add():
    layer = TakesALayer(keras.layers.Dense(2), name="holder")
    with pytest.raises(ValueError, match=r"'holder' \(TakesALayer\).*get_config\(\)"):
        clone_layer(layer)


class BrokenConfig(keras.layers.Dense):
    """A get_config that reads an attribute the constructor never set (a class's own bug)."""

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_a_layer_whose_get_config_fails_is_named_with_the_failure():
    layer = BrokenConfig(2, name="broken")
    layer.build((None, 3))  # with weights: a shallow copy would share them
    with pytest.raises(
        ValueError,
        match=r"'broken' \(BrokenConfig\): its get_config\(\) fails "
        r"\(AttributeError: .*factor",
    ):
        copy_layer(layer)


class Stateless(keras.layers.Layer):
    """No weights, and a constructor argument the automatic config cannot describe."""

    def __init__(self, function, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def call(self, x):
        return self.function(x)


def test_copy_layer_copies_a_stateless_layer_it_cannot_rebuild_and_refuses_one_with_weights():
    stateless = Stateless(keras.ops.relu)
    copy = copy_layer(stateless)
    assert copy is not stateless and copy.function is keras.ops.relu
    holder = TakesALayer(keras.layers.Dense(2), name="holder")
    holder.add_weight(shape=(2,), name="scale")
    with pytest.raises(ValueError, match="'holder'"):
        copy_layer(holder)
