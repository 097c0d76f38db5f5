"""The shared argument checks: one wording per kind of mistake, TypeError for types and
ValueError for ranges."""

import keras
import numpy as np
import pytest

from tfprune.core import checks


@pytest.mark.parametrize(
    "kwargs,value,message",
    [
        ({"low": 0}, -0.1, r"eps must be >= 0, got -0.1\."),
        ({"low": 0, "include_low": False}, 0, r"eps must be > 0, got 0\."),
        ({"low": 0, "high": 1}, 1.5, r"eps must be in \[0, 1\], got 1.5\."),
        ({"low": 0, "high": 1, "include_high": False}, 1.0, r"eps must be in \[0, 1\), got 1.0\."),
        (
            {"low": 0, "high": 1, "include_low": False, "include_high": False},
            0.0,
            r"eps must be in \(0, 1\), got 0.0\.",
        ),
        ({"high": 2}, 3, r"eps must be <= 2, got 3\."),
        ({"low": 0}, float("nan"), r"eps must be >= 0, got nan\."),
    ],
)
def test_numbers_out_of_range_name_the_argument_and_the_range(kwargs, value, message):
    with pytest.raises(ValueError, match=message):
        checks.check_number("eps", value, **kwargs)


def test_numbers_of_the_wrong_type_are_type_errors():
    for value in ("0.1", True, None, [0.1]):
        with pytest.raises(TypeError, match="eps must be a number"):
            checks.check_number("eps", value)
    assert checks.check_number("eps", np.float32(0.25), 0, 1) == 0.25
    assert isinstance(checks.check_number("eps", 1), float)


def test_fraction_excludes_one_and_carries_a_hint():
    assert checks.check_fraction("target", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"target must be in \[0, 1\), got 1\. Never all\."):
        checks.check_fraction("target", 1, hint="Never all.")


def test_integers():
    assert checks.check_integer("steps", np.int64(3), minimum=1) == 3
    with pytest.raises(ValueError, match=r"steps must be an integer >= 1, got 0\."):
        checks.check_integer("steps", 0, minimum=1)
    for value in (1.0, True, "3"):
        with pytest.raises(TypeError, match="steps must be an integer"):
            checks.check_integer("steps", value)


def test_choices():
    assert checks.check_choice("norm", "l2", ("linf", "l2")) == "l2"
    with pytest.raises(ValueError, match=r"norm must be 'linf' or 'l2', got 'l1'\."):
        checks.check_choice("norm", "l1", ("linf", "l2"))
    with pytest.raises(ValueError, match=r"mode must be 'a', 'b' or 'c', got 1\."):
        checks.check_choice("mode", 1, ("a", "b", "c"))
    with pytest.raises(ValueError, match="flag must be True"):
        checks.check_choice("flag", 1, (True,))  # 1 == True, but is not the choice


def test_paths():
    assert checks.check_path("m.tflite").suffix == ".tflite"
    with pytest.raises(TypeError, match="output must be a str or os.PathLike, got int"):
        checks.check_path(3, "output")


def test_labels_fit_the_classifier():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    np.testing.assert_array_equal(checks.check_labels(model, [0, 2]), [0, 2])
    with pytest.raises(ValueError, match="integer class ids"):
        checks.check_labels(model, [0.5, 1.0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        checks.check_labels(model, [0, 3])


def test_models():
    checks.check_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), "prune")
    with pytest.raises(TypeError, match="prune: expected a keras.Model, got int"):
        checks.check_model(3, "prune")
    with pytest.raises(ValueError, match="shrink: model .* is not built"):
        checks.check_model(keras.Sequential([keras.layers.Dense(2)]), "shrink")
