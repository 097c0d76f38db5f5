"""Ranking: local and global, toward sparsity and FLOPs targets."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune


def test_global_ranking_prunes_unevenly_to_the_overall_target(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5), ranking="global", protect=None)
    wrappers = tfprune.wrappers_of(pruned)
    # Scores are normalised per layer, so scaling a whole layer changes nothing; making 12
    # of conv2's 16 filters tiny relative to the rest must make global ranking take them.
    conv2 = pruned.get_layer("prune_conv2").layer
    scale = np.where(np.arange(16) < 12, 1e-3, 1.0).astype(np.float32)
    conv2.kernel.assign(conv2.kernel * scale)
    from tfprune.masking.ranking import apply_target
    from tfprune.masking.wrappers import model_sparsity

    apply_target(pruned, 0.5)
    per_layer = {w.layer.name: w.sparsity() for w in wrappers}
    assert model_sparsity(wrappers) == pytest.approx(0.5, abs=0.06)
    assert per_layer["conv2"] == 0.75
    assert per_layer["conv2"] > max(v for k, v in per_layer.items() if k != "conv2")


@pytest.mark.parametrize("ranking,tolerance", [("local", 0.05), ("global", 0.02)])
def test_flops_target_removes_that_fraction_of_model_flops_after_shrink(cnn, ranking, tolerance):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.4), target="flops", ranking=ranking)
    from tfprune.masking.ranking import apply_target

    plan = apply_target(pruned, 0.4)
    removed = 1 - tfprune.count_flops(tfprune.shrink(pruned)) / tfprune.count_flops(cnn)
    assert removed == pytest.approx(0.4, abs=tolerance)
    assert plan.removed() == pytest.approx(removed, abs=1e-9)  # the plan counts as shrink builds


def test_round_to_per_layer(cnn):
    pruned = tfprune.prune(cnn, schedule=tfprune.OneShot(0.5), round_to={"conv2": 8, "*": 4})
    assert {w.layer.name: w.round_to for w in tfprune.wrappers_of(pruned)} == {
        "conv2": 8,
        "conv3": 4,
    }
    tfprune.apply_target(pruned, 0.5)
    kept = {
        w.layer.name: int(w.mask_array().reshape(-1, w.mask_array().shape[-1]).any(axis=0).sum())
        for w in tfprune.wrappers_of(pruned)
    }
    assert kept["conv2"] % 8 == 0 and kept["conv3"] % 4 == 0


def _greedy_reference(score, family_of, cost, goal, n_families):
    """The global ranking's rule, one step at a time (what `greedy_selection` vectorises)."""
    taken, closed, removed = np.zeros(score.size, bool), set(), 0.0
    for i in range(score.size):
        if family_of[i] in closed:
            continue
        if score[i] != -np.inf and removed + cost[i] - goal > goal - removed:
            closed.add(family_of[i])
            continue
        taken[i] = True
        removed += cost[i]
    return taken


@given(
    n=st.integers(1, 60),
    families=st.integers(1, 5),
    goal_share=st.floats(0.0, 1.2),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=200, deadline=None)
def test_vectorised_global_greedy_matches_the_step_by_step_rule(n, families, goal_share, seed):
    from tfprune.masking.ranking import greedy_selection

    rng = np.random.default_rng(seed)
    score = np.sort(np.where(rng.random(n) < 0.2, -np.inf, rng.random(n)))
    family_of = rng.integers(0, families, n)
    cost = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0], n) * rng.choice([1.0, rng.random() + 0.5])
    goal = goal_share * cost.sum()
    expected = _greedy_reference(score, family_of, cost, goal, families)
    np.testing.assert_array_equal(
        greedy_selection(score, family_of, cost, goal, families), expected
    )
