"""Copying layers from their configs."""

import keras
import pytest

from tfprune.core.modelwalk import clone_layer


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
