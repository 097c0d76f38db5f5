"""Granularities: how scores become masks, and the safeguards they keep."""

import numpy as np
import pytest

import tfprune
from tfprune.criteria import lookup as criteria
from tfprune.layers.spec import LayerSpec
from tfprune.masking import granularity

DENSE = LayerSpec("kernel", filter_axes=(-1,), input_axis=0)


CONV = LayerSpec("kernel", filter_axes=(-1,), input_axis=-2)


def test_filter_mask_prunes_lowest_l1_filters():
    weight = np.ones((3, 3, 2, 4), np.float32) * np.array([4.0, 1.0, 3.0, 2.0])
    mask = granularity.Filter().mask(criteria.l1(weight), np.ones_like(weight), 0.5, CONV)
    assert mask[..., 1].max() == 0 and mask[..., 3].max() == 0
    assert mask[..., 0].min() == 1 and mask[..., 2].min() == 1


def test_unstructured_prunes_exact_fraction_of_smallest():
    weight = np.arange(1, 21, dtype=np.float32).reshape(4, 5)
    mask = granularity.Unstructured().mask(np.abs(weight), np.ones_like(weight), 0.3, DENSE)
    assert mask.sum() == 14
    assert np.all(mask.ravel()[:6] == 0)


def test_nm_keeps_n_per_group_along_input_axis():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(8, 3)).astype(np.float32)  # Dense (in=8, out=3)
    mask = granularity.NM(2, 4).mask(np.abs(weight), np.ones_like(weight), 0.5, DENSE)
    groups = mask.T.reshape(3, 2, 4)  # per output unit, groups of 4 consecutive inputs
    assert np.all(groups.sum(axis=-1) == 2)
    kept = np.abs(weight.T.reshape(3, 2, 4)) * groups
    dropped = np.abs(weight.T.reshape(3, 2, 4)) * (1 - groups)
    assert np.all(kept.max(axis=-1) >= dropped.max(axis=-1))
    assert np.all(
        np.sort(np.where(groups, np.abs(weight.T.reshape(3, 2, 4)), np.inf), -1)[..., 0]
        >= dropped.max(-1)
    )


def test_nm_ramps_with_the_schedule():
    weight = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    mask = granularity.NM(2, 4).mask(np.abs(weight), np.ones_like(weight), 0.25, DENSE)
    assert np.all(mask.T.reshape(2, 2, 4).sum(-1) == 3)


def test_block_1x4_prunes_whole_blocks_of_inputs():
    weight = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    mask = granularity.Block(1, 4).mask(np.abs(weight), np.ones_like(weight), 0.5, DENSE)
    blocks = mask.T.reshape(4, 2, 4)  # (out, in-blocks, 4)
    assert np.all(blocks.min(-1) == blocks.max(-1))  # each block all kept or all pruned
    assert blocks.mean() == 0.5


def test_safeguards_min_filters_and_round_to():
    weight = np.random.default_rng(3).normal(size=(3, 3, 2, 16)).astype(np.float32)
    ones = np.ones_like(weight)
    g = granularity.Filter()
    kept = lambda m: int(g.units(CONV.to_canonical(m)).max(axis=1).sum())  # noqa: E731
    assert kept(g.mask(np.abs(weight), ones, 0.99, CONV)) == 1
    assert kept(g.mask(np.abs(weight), ones, 0.99, CONV, min_filters=3)) == 3
    assert kept(g.mask(np.abs(weight), ones, 0.6, CONV, round_to=4)) == 8  # 16 - 9 = 7 -> 8


def test_masks_never_regrow():
    weight = np.random.default_rng(4).normal(size=(4, 8)).astype(np.float32)
    g = granularity.Filter()
    first = g.mask(np.abs(weight), np.ones_like(weight), 0.5, DENSE)
    # Even if the pruned filters now score highest, they stay pruned at a lower target.
    second = g.mask(np.abs(weight) * (2 - first) * 100, first, 0.25, DENSE)
    assert np.all(second <= first)
    assert second.mean() == first.mean()


@pytest.mark.parametrize(
    "name,expected",
    [
        ("filter", "filter"),
        ("unstructured", "unstructured"),
        ("n:m", "2:4"),
        ("1:4", "1:4"),
        ("block", "block:1x4"),
        ("block:1x16", "block:1x16"),
    ],
)
def test_get_parses_names(name, expected):
    assert str(granularity.get(name)) == expected
    assert str(granularity.get(str(granularity.get(name)))) == expected


def test_get_rejects_bad_identifiers():
    with pytest.raises(ValueError, match="Unknown granularity"):
        granularity.get("channelwise")
    with pytest.raises(TypeError):
        granularity.get(3)
    with pytest.raises(ValueError, match="0 < n < m"):
        tfprune.masking.NM(4, 2)
    with pytest.raises(ValueError, match="positive"):
        tfprune.masking.Block(0, 4)


def test_nm_rejects_layers_it_cannot_group():
    with pytest.raises(ValueError, match="'fc'.*multiple of 4"):
        granularity.NM(2, 4).check("fc", (10, 3), DENSE)
    depthwise = LayerSpec("depthwise_kernel", filter_axes=(-2, -1), input_axis=None)
    with pytest.raises(ValueError, match="'dw'.*no"):
        granularity.Block(1, 4).check("dw", (3, 3, 4, 1), depthwise)
