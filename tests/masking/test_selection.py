"""Which layers prune wraps: selectors, automatic protection, the graph's pins."""

import keras
import numpy as np
import pytest
from helpers import weights_of, wrapped_names

import tfprune


def test_default_keeps_half_the_first_conv_and_protects_the_classifier(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.9), round_to=1)
    assert wrapped_names(pruned) == ["conv1", "conv2", "conv3"]
    assert [w.min_filters for w in tfprune.wrappers_of(pruned)] == [4, 1, 1]
    tfprune.apply_target(pruned, 0.9)
    kept = {
        layer.name: layer.filters
        for layer in tfprune.shrink(tfprune.strip(pruned)).layers
        if isinstance(layer, keras.layers.Conv2D)
    }
    # The first conv stops at half; the others go to 10 % (at least one filter).
    assert kept == {"conv1": 4, "conv2": 2, "conv3": 2}
    # Asked for by name, it has the policy's own floor.
    named = tfprune.prune(cnn, layers=["conv1"])
    assert [w.min_filters for w in tfprune.wrappers_of(named)] == [1]
    # Excluded, it is not pruned, and the guard does not move on to the next convolution.
    rest = tfprune.prune(cnn, exclude=["conv1"])
    assert [(w.layer.name, w.min_filters) for w in tfprune.wrappers_of(rest)] == [
        ("conv2", 1),
        ("conv3", 1),
    ]


def test_default_leaves_the_first_conv_whole_for_weight_granularities(cnn):
    for granularity in ("unstructured", "2:4"):
        assert "conv1" not in wrapped_names(tfprune.prune(cnn, granularity=granularity))


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"layers": ["conv1", "head"]}, ["conv1", "head"]),
        ({"layers": ["conv1", "conv3"]}, ["conv1", "conv3"]),
        ({"layers": keras.layers.Conv2D, "protect": None}, ["conv1", "conv2", "conv3"]),
        ({"layers": lambda layer: layer.name.endswith("3")}, ["conv3"]),
        ({"exclude": ["conv3"]}, ["conv2"]),
        ({"exclude": keras.layers.Conv2D, "protect": None}, ["head"]),
        ({"protect": None}, ["conv1", "conv2", "conv3", "head"]),
        ({"protect": ["conv2"]}, ["conv1", "conv3", "head"]),
    ],
)
def test_layer_selection(cnn, kwargs, expected):
    assert wrapped_names(tfprune.prune(cnn, granularity="unstructured", **kwargs)) == expected


def test_filter_pruning_skips_layers_whose_channels_are_the_models_outputs(cnn):
    pruned = tfprune.prune(cnn, protect=None)
    assert wrapped_names(pruned) == [
        "conv1",
        "conv2",
        "conv3",
    ]  # not the head: its filters are the outputs
    followers = [
        layer for layer in pruned.layers if isinstance(layer, tfprune.masking.ChannelMaskWrapper)
    ]
    assert [f.layer.name for f in followers] == ["bn"]  # BN after conv2 follows its masks
    with pytest.raises(ValueError, match="'head' cannot be pruned: a model output"):
        tfprune.prune(cnn, layers=["conv2", "head"])


def test_explicitly_requested_unprunable_layer_is_rejected(cnn):
    before = weights_of(cnn)
    with pytest.raises(ValueError, match="'bn' \\(BatchNormalization\\) cannot be pruned"):
        tfprune.prune(cnn, layers=["bn"])
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        tfprune.prune(cnn, layers=["conv9"])
    with pytest.raises(ValueError, match="exclude: .*'nope'"):
        tfprune.prune(cnn, exclude=["nope"])
    for a, b in zip(before, weights_of(cnn)):
        np.testing.assert_array_equal(a, b)
