"""PwC's compensation-aware ranking."""

import numpy as np
import pytest

import tfprune


def test_pwc_greedy_order_drops_the_channel_compensation_can_rebuild():
    from tfprune.criteria.pwc import greedy_channel_order

    rng = np.random.default_rng(9)
    base = rng.normal(size=(800, 3))
    # channel 3 is a copy of channel 0 (plus noise): compensation can rebuild either from the other
    x = np.hstack([base, base[:, :1] + 0.01 * rng.normal(size=(800, 1))])
    w = np.array([[1.0], [0.5], [0.5], [3.0]])  # channel 3 has the largest weight: L1 would keep it
    order = greedy_channel_order(x, w, channels=4)
    assert set(order[-1:]) <= {0, 3}  # the last kept is one of the redundant pair
    assert {1, 2} <= set(order[:3])


def test_pwc_criterion_ranks_filters_inside_a_model(trained_digits):
    model, data = trained_digits
    pruned = tfprune.prune(model, criterion="pwc", layers=["conv2"], schedule=tfprune.OneShot(0.5))
    plan = tfprune.apply_target(pruned, 0.5, data=data)
    assert pruned.get_layer("prune_conv2").sparsity() == pytest.approx(0.5)
    assert plan.removed() > 0
