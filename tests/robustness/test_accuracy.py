"""robust_accuracy refuses data and models it cannot measure."""

import keras
import numpy as np
import pytest

import tfprune


def test_bad_data_and_models_are_rejected(trained_cnn, digits):
    _, _, x, y = digits
    with pytest.raises(ValueError, match="at least one example"):
        tfprune.robust_accuracy(trained_cnn, x[:0], y[:0], tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        tfprune.robust_accuracy(trained_cnn, x, y + 10, tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="120 examples but y has 3"):
        tfprune.robust_accuracy(trained_cnn, x, y[:3], tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="integer class ids"):
        tfprune.robust_accuracy(trained_cnn, x, np.eye(10)[y], tfprune.FGSM(0.1))
    inputs = keras.Input((4,))
    regression = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    with pytest.raises(ValueError, match="class scores"):
        tfprune.robust_accuracy(regression, np.zeros((2, 4)), np.zeros(2, int), tfprune.FGSM(0.1))
    with pytest.raises(ValueError, match="output must be"):
        tfprune.FGSM(0.1, output="scores")
