"""FLOPs counted from weights and traced shapes."""

import tfprune
from conftest import conv_model


def test_flops_match_hand_counts():
    model = conv_model()
    conv = 2 * (3 * 3 * 3 * 4) * 8 * 8
    tconv = 2 * (3 * 3 * 2 * 4) * 8 * 8  # one scatter per input position
    flat = model.get_layer("fc").kernel.shape[0]
    fc = 2 * flat * 5
    assert tfprune.count_flops(model) == conv + tconv + fc
