"""Ranking: local and global, toward sparsity and FLOPs targets."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.criteria.base import ScoringContext
from tfprune.masking.families import first_in_order, pruning_order
from tfprune.masking.ranking import PruningPlan


def test_global_ranking_prunes_unevenly_to_the_overall_target(cnn):
    pruned = tfprune.prune(
        cnn, schedule=tfprune.OneShot(0.5), ranking="global", protect=None, round_to=1
    )
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
        "conv1": 4,
        "conv2": 8,
        "conv3": 4,
    }
    tfprune.apply_target(pruned, 0.5)
    kept = {
        w.layer.name: int(w.mask_array().reshape(-1, w.mask_array().shape[-1]).any(axis=0).sum())
        for w in tfprune.wrappers_of(pruned)
    }
    assert kept["conv1"] == 4 and kept["conv2"] % 8 == 0 and kept["conv3"] % 4 == 0


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


@given(
    values=st.lists(st.integers(0, 3), min_size=1, max_size=4),
    pruned_share=st.floats(0.0, 0.6),
    target=st.floats(0.0, 0.95),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=60, deadline=None)
def test_selection_equals_sorting_every_unit_with_ties(values, pruned_share, target, seed):
    """Global unstructured ranking selects (np.partition) instead of sorting 25M units on
    ResNet50; on scores with many exact ties it must take what the sorted walk takes: units by
    normalised score, ties by layer, then raw score, then index."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.5, 1.0, 2.0])[: len(set(values)) or 1]
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, name="a"), keras.layers.Dense(4, name="b")]
        + [keras.layers.Dense(3, name="head")]
    )
    pruned = tfprune.prune(model, granularity="unstructured", ranking="global", protect=None)
    for wrapper in tfprune.wrappers_of(pruned):
        shape = tuple(wrapper.pruned_variable.shape)
        wrapper.layer.kernel.assign(
            rng.choice(levels, size=shape) * rng.choice([-1, 1], size=shape)
        )
        mask = (rng.random(shape) >= pruned_share).astype(np.float32)
        mask.flat[0] = 1.0  # never everything pruned
        wrapper.assign_mask(mask)
    plan = PruningPlan(pruned)
    got = plan.select(target)

    context = ScoringContext(pruned)
    scored = [(family.score(context), family.already()) for family in plan.families]
    steps = []
    for index, (scores, already) in enumerate(scored):
        alive = scores[~already]
        scale = alive.mean() if alive.size and alive.mean() > 0 else 1.0
        order = np.argsort(np.where(already, -np.inf, scores), kind="stable")
        for position, unit in enumerate(order[int(already.sum()) : -1]):  # the last one stays
            steps.append((scores[unit] / scale, index, position, unit))
    steps.sort(key=lambda step: step[:3])
    goal, removed = target * plan.denominator, float(sum(a.sum() for _, a in scored))
    expected = [already.copy() for _, already in scored]
    for _, index, _, unit in steps:
        if removed + 1 - goal > goal - removed:
            break
        expected[index][unit] = True
        removed += 1
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@given(
    scores=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    already_share=st.floats(0.0, 0.8),
    count=st.integers(-1, 45),
    seed=st.integers(0, 1000),
)
@settings(max_examples=200, deadline=None)
def test_first_in_order_equals_the_stable_sort(scores, already_share, count, seed):
    scores = np.array(scores, np.float64)
    already = np.random.default_rng(seed).random(scores.size) < already_share
    order = pruning_order(scores, already)
    expected = np.zeros(scores.size, bool)
    expected[order[: max(count, 0)]] = True
    np.testing.assert_array_equal(first_in_order(scores, already, count), expected)


def test_round_to_auto_spreads_a_gradual_schedule_over_layers_as_fine_steps_do():
    # Coarse steps overshoot the small increments of a schedule: ranked step by step, the
    # layer whose tiles cost the most FLOPs was skipped at every update and the other one
    # took all the pruning (95 % of its filters on MNIST-1D). Ranked filter by filter and
    # rounded after, both layers follow the fine ranking to within a tile.
    keras.utils.set_random_seed(0)
    model = tfprune.zoo.mnist1d_cnn()  # conv1 32 filters (tiles of 8), conv2 and conv3 64 (16)

    def sparsities(round_to):
        pruned = tfprune.prune(
            model, schedule=tfprune.OneShot(0.5), target="flops", ranking="global",
            round_to=round_to,
        )  # fmt: skip
        for target in np.linspace(0.05, 0.5, 10):
            tfprune.apply_target(pruned, float(target))
        return {w.layer.name: w.sparsity() for w in tfprune.wrappers_of(pruned)}

    auto, fine = sparsities("auto"), sparsities(1)
    assert set(auto) == {"conv1", "conv2", "conv3"}
    for name in auto:  # a tile is a quarter of each of these layers
        assert abs(auto[name] - fine[name]) <= 1 / 4 + 1e-9, (auto, fine)
