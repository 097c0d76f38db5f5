"""Network slimming's BN-scale importance."""

import numpy as np
import pytest
from helpers import conv_with_filters, pruned_filters

import tfprune


def test_bn_scale_ranks_a_zeroed_gamma_first_and_needs_a_bn():
    rng = np.random.default_rng(6)
    model = conv_with_filters(rng.normal(size=(3, 3, 2, 8)).astype(np.float32))
    gamma = np.ones(8, np.float32)
    gamma[6] = 0.0
    model.get_layer("bn").set_weights([gamma, np.zeros(8), np.zeros(8), np.ones(8)])
    assert pruned_filters(model, "bn_scale") == {6}
    with pytest.raises(ValueError, match="'reader' is not followed by a BatchNormalization"):
        tfprune.prune(model, criterion="bn_scale", layers=["conv", "reader"], protect=None)
