"""Registry entries check their modes when built, and the callables that go together are one
object (`Units`, `Members`)."""

import keras
import pytest

from tfprune.layers import registry
from tfprune.layers.spec import (
    ChannelRule,
    DeadOutput,
    Fold,
    LayerSpec,
    Members,
    Role,
    RuleKind,
    Side,
    Units,
)


def dense_spec(**settings):
    return LayerSpec("kernel", filter_axes=(-1,), input_axis=0, **settings)


def test_a_mode_given_as_its_string_is_its_enum_member():
    by_string = dense_spec(
        fold="always",
        dead_output="zero",
        flops_weights=(("kernel", "input"),),
        slices=(("kernel", -1, "out"), ("kernel", 0, "in_expanded")),
    )
    by_member = dense_spec(
        fold=Fold.ALWAYS,
        dead_output=DeadOutput.ZERO,
        flops_weights=(("kernel", Side.INPUT),),
        slices=(("kernel", -1, Role.OUT), ("kernel", 0, Role.IN_EXPANDED)),
    )
    assert by_string == by_member
    assert by_string.fold is Fold.ALWAYS and by_string.slices[1][2] is Role.IN_EXPANDED


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"fold": "sometimes"}, "fold='sometimes'"),
        ({"dead_output": "nan"}, "dead_output='nan'"),
        ({"flops_weights": (("kernel", "outputs"),)}, "flops_weights='outputs'"),
        ({"slices": (("kernel", 0, "input"),)}, "slices='input'"),
    ],
)
def test_an_unknown_mode_fails_naming_the_argument_and_the_choices(settings, named):
    with pytest.raises(ValueError, match="expected one of") as error:
        dense_spec(**settings)
    assert f"LayerSpec({named})" in str(error.value)


def test_a_channel_rule_of_an_unknown_kind_fails_before_it_is_registered():
    class Scale(keras.layers.Layer):
        pass

    with pytest.raises(ValueError, match="ChannelRule\\(kind='pass'\\).*'passthrough'"):
        registry.register_channel_rule(Scale, ChannelRule("pass"))
    assert registry.channel_rule(Scale()) is None
    assert ChannelRule("concat").kind is RuleKind.CONCAT


def test_units_and_members_make_a_spec_what_they_describe():
    units = Units(flops=lambda layer, shapes: 1, slicer=lambda layer, kept: None)
    assert dense_spec(units=units).internal_units
    assert not dense_spec().internal_units
    members = Members(of=lambda layer: [(layer, [0])])
    assert dense_spec(members=members).members.rebuilt_as is None


def test_the_builtin_entries_use_the_grouped_callables():
    attention = registry.spec_for(keras.layers.MultiHeadAttention(num_heads=2, key_dim=4))
    assert isinstance(attention.units, Units) and attention.units.fixed_flops is None
    lstm = keras.layers.LSTM(3)
    bidirectional = registry.spec_for(keras.layers.Bidirectional(lstm))
    assert isinstance(bidirectional.members, Members)
    assert bidirectional.dead_output is DeadOutput.ZERO
