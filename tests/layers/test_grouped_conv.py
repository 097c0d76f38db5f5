"""GroupedConv2D computes what a convolution masked to its groups computes."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["same", "valid"]),
    st.sampled_from([1, 2]),
)
def test_grouped_conv_equals_a_masked_conv(n_groups, seed, padding, strides):
    rng = np.random.default_rng(seed)
    channels, filters = 5, 6
    assignment = rng.integers(0, n_groups, filters)
    groups = []
    mask = np.zeros((3, 3, channels, filters), np.float32)
    for g in range(n_groups):
        outputs = np.flatnonzero(assignment == g)
        if not outputs.size:
            continue
        inputs = np.sort(rng.choice(channels, int(rng.integers(0, channels + 1)), replace=False))
        groups.append([inputs.tolist(), outputs.tolist()])
        mask[:, :, inputs[:, None], outputs[None, :]] = 1
    kernel = rng.normal(size=mask.shape).astype(np.float32) * mask
    bias = rng.normal(size=filters).astype(np.float32)
    conv = keras.layers.Conv2D(filters, 3, strides=strides, padding=padding, activation="relu")
    x = rng.random((2, 9, 9, channels), dtype=np.float32)
    reference = conv(x)
    conv.set_weights([kernel, bias])
    grouped = tfprune.layers.GroupedConv2D(
        filters, 3, groups, strides=strides, padding=padding, activation="relu"
    )
    grouped.build(x.shape)
    for (inputs, outputs), variable in zip(groups, grouped.kernels):
        variable.assign(
            kernel[:, :, np.asarray(inputs or [0], int)[:, None], np.asarray(outputs)[None, :]]
        )
    grouped.bias.assign(bias)
    assert reference.shape == grouped(x).shape
    assert (
        np.abs(keras.ops.convert_to_numpy(grouped(x)) - keras.ops.convert_to_numpy(conv(x))).max()
        <= 1e-5
    )
