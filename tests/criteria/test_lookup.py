"""Criteria by name: every name resolves, serializes and comes back."""

import numpy as np
import pytest

import tfprune
from tfprune.criteria import FPGM, BNScale
from tfprune.criteria import lookup as criteria


def test_random_criterion_is_seeded_and_serializes():
    a = tfprune.criteria.RandomScores(seed=1)(np.zeros((4, 4)), None)
    b = tfprune.criteria.RandomScores(seed=1)(np.zeros((4, 4)), None)
    np.testing.assert_array_equal(a, b)
    for name in ("bn_scale", "taylor", "lap", "lap_bn", "lap_forward", "fpgm", "random"):
        criterion = tfprune.criteria.get(name)
        restored = tfprune.criteria.from_name(tfprune.criteria.name_of(criterion))
        assert restored == criterion and type(restored) is type(criterion)
    assert isinstance(tfprune.criteria.get("fpgm"), FPGM) and isinstance(
        tfprune.criteria.get("bn_scale"), BNScale
    )


def test_criteria_names_and_custom_callables():
    w = np.array([-3.0, 2.0])
    np.testing.assert_array_equal(criteria.get("l1")(w, None), [3.0, 2.0])
    np.testing.assert_array_equal(criteria.get("L2")(w, None), [9.0, 4.0])
    np.testing.assert_array_equal(criteria.get("magnitude")(w, None), [3.0, 2.0])
    custom = lambda weight, layer: -weight  # noqa: E731
    assert criteria.get(custom) is custom
    with pytest.raises(ValueError, match="Unknown criterion"):
        criteria.get("hessian")
    with pytest.raises(TypeError):
        criteria.get(3)


@pytest.mark.parametrize("name", ["robust_taylor", "hydra"])
def test_a_saved_gradient_criterion_loads_before_its_module_was_imported(name, monkeypatch):
    import sys

    import keras

    config = criteria.name_of(criteria.get(name))
    module = criteria.get(name).__class__.__module__
    # As in a fresh process that loads a .keras file: the module and its registration gone.
    monkeypatch.delitem(sys.modules, module)
    monkeypatch.delitem(keras.saving.get_custom_objects(), config["registered_name"])
    restored = criteria.from_name(config)
    assert criteria.name_of(restored) == config
