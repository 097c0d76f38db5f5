"""Families: channel groups scored as arrays give what summing each group gives."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.criteria.base import ScoringContext
from tfprune.masking.families import element_scores
from tfprune.masking.ranking import PruningPlan

REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "first": lambda values: values[0]}


@pytest.mark.parametrize("reduction", list(REDUCE))
def test_group_scores_equal_each_groups_own_reduction(reduction):
    """Nine convolutions meet at one Add (a group of nine members, past np.sum's
    eight-number block) and three more at another."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 5, 3))
    wide = keras.layers.Add()([keras.layers.Conv2D(6, 1, name=f"w{i}")(inputs) for i in range(9)])
    narrow = keras.layers.Add()([keras.layers.Conv2D(4, 1, name=f"n{i}")(wide) for i in range(3)])
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(narrow))
    pruned = tfprune.prune(model, group_reduction=reduction, protect=["head"])
    plan = PruningPlan(pruned)
    context = ScoringContext(pruned)
    assert sorted(len(g.members) for g in plan.groups) == [3] * 4 + [9] * 6
    for family in plan.families:
        expected = []
        for group in (plan.groups[i] for i in family.group_ids):
            values = [
                w.granularity.unit_scores(element_scores(w, context), w.spec)[f]
                for w, f in group.members
            ]
            expected.append(REDUCE[reduction](np.array(values)))
        np.testing.assert_array_equal(family.score(context), expected)
