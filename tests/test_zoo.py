"""Bundled data and reference models: nothing downloads."""

import numpy as np
import pytest

import tfprune


def test_bundled_digits_and_reference_cnn():
    from tfprune.zoo import digits_cnn, load_digits

    (x, y), (x_test, y_test) = load_digits(size=16)
    assert x.shape == (1437, 16, 16, 1) and x_test.shape == (360, 16, 16, 1)
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    assert digits_cnn(width=0.5).count_params() < digits_cnn().count_params()
    with pytest.raises(ValueError, match="multiple of 8"):
        load_digits(size=12)


def test_mnist1d_is_generated_offline_and_its_cnn_prunes_and_shrinks():
    from tfprune.zoo import load_mnist1d, mnist1d_cnn

    (x, y), (x_test, y_test) = load_mnist1d()
    assert (
        x.shape == (4000, 40, 1)
        and x_test.shape == (1000, 40, 1)
        and set(np.unique(y)) == set(range(10))
    )
    model = mnist1d_cnn()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    np.testing.assert_allclose(small(x_test[:16]), pruned(x_test[:16]), atol=1e-5)
    assert tfprune.count_flops(small) < 0.6 * tfprune.count_flops(model)
