"""FPGM prunes the most replaceable filter, not the smallest."""

import numpy as np
import pytest
from helpers import conv_with_filters, pruned_filters

import tfprune


def test_fpgm_picks_the_planted_duplicate_not_the_smallest_filter():
    rng = np.random.default_rng(5)
    filters = rng.normal(size=(3, 3, 2, 8)).astype(np.float32)
    filters[..., 0] *= 0.05  # smallest norm: what L1 would prune
    centre = np.delete(filters, [3, 5], axis=-1).mean(axis=-1)
    filters[..., 3] = centre  # a duplicated filter at the centre: the most replaceable
    filters[..., 5] = centre
    model = conv_with_filters(filters)
    assert pruned_filters(model, "l1") == {0}
    assert pruned_filters(model, "fpgm") <= {3, 5} and len(pruned_filters(model, "fpgm")) == 1
    with pytest.raises(ValueError, match="cannot rank 'unstructured'"):
        tfprune.prune(model, criterion="fpgm", granularity="unstructured", layers=["conv"])
