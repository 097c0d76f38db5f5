"""Rounding a ranked selection to the families' multiples (`tfprune.masking.rounding`), on
families built directly: each heuristic alone, with removal measured as a weighted count."""

import itertools

import numpy as np

from tfprune.masking.families import Family
from tfprune.masking.granularity import get
from tfprune.masking.rounding import NUDGES, TOLERANCE, Rounding


def family(costs, tile=1, floor=1, refinable=True):
    costs = np.asarray(costs, float)
    return Family(get("filter"), floor, tile, costs, None, None, None, refinable=refinable)


def measured(families):
    """`removed_by` for families whose units remove their cost (of the whole model's 1)."""
    total = sum(float(f.unit_costs.sum()) for f in families)

    def removed_by(selection):
        return sum(float(f.unit_costs[p].sum()) for f, p in zip(families, selection)) / total

    return removed_by


def first(n, count):
    return np.arange(n) < count


def fresh(*sizes):
    return [(np.arange(n, dtype=float), np.zeros(n, bool)) for n in sizes]


def counts(selection):
    return [int(p.sum()) for p in selection]


def test_the_wide_family_rounds_and_the_narrow_one_absorbs_it():
    families = [family(np.ones(32), tile=8), family(np.ones(16), tile=4)]
    rounding = Rounding(families, measured(families), refine_order=[1, 0], local=False)
    # 13 of 32 and 11 of 16 ranked: 24 of 48 units, and neither a multiple.
    chosen = [first(32, 13), first(16, 11)]
    rounded = rounding.rounded(chosen, 0.5, fresh(32, 16))
    assert counts(rounded) == [16, 8]  # kept 16 and 8: multiples of 8 and 4
    assert measured(families)(rounded) == 0.5


def test_local_ranking_takes_each_familys_nearer_multiple():
    families = [family(np.ones(32), tile=8), family(np.ones(16), tile=4)]
    rounding = Rounding(families, measured(families), refine_order=[1, 0], local=True)
    rounded = rounding.rounded([first(32, 13), first(16, 5)], 20 / 48, fresh(32, 16))
    # Kept 19 -> 16 (3 away, not 24), kept 11 -> 12 (1 away, not 8).
    assert counts(rounded) == [16, 4]


def test_rounding_that_misses_beyond_the_tolerance_falls_back_to_single_filters():
    families = [family(np.ones(16), tile=8)]
    rounding = Rounding(families, measured(families), refine_order=[0], local=False)
    chosen = [first(16, 5)]
    rounded = rounding.rounded(chosen, 5 / 16, fresh(16))
    # Kept 11 rounds to 8 or 16: 3/16 or 5/16 off, far beyond TOLERANCE; 5 is exact.
    assert 3 / 16 > TOLERANCE
    assert counts(rounded) == [5]


def test_rounded_prunes_the_lowest_scores_when_it_rounds():
    families = [family(np.ones(8), tile=4), family(np.ones(8), tile=4)]
    rounding = Rounding(families, measured(families), refine_order=[0, 1], local=False)
    scores = np.array([5.0, 0.0, 6.0, 1.0, 7.0, 2.0, 8.0, 3.0])
    scored = [(scores, np.zeros(8, bool)), fresh(8)[0]]
    chosen = [scores < 3, first(8, 5)]  # 3 and 5 of 8: 8 of 16 in all
    rounded = rounding.rounded(chosen, 0.5, scored)
    assert counts(rounded) == [4, 4]
    assert set(np.flatnonzero(rounded[0])) == {1, 3, 5, 7}


def test_traded_changes_two_families_at_once_where_no_single_change_helps():
    families = [family(np.ones(16), tile=4), family(np.ones(8), tile=2)]
    rounding = Rounding(families, measured(families), refine_order=[1, 0], local=False)
    options = {0: [first(16, 4), first(16, 8)], 1: [first(8, 2), first(8, 4)]}
    selection = [first(16, 8), first(8, 2)]  # 10 of 24
    # Alone, A down gives 6 and B up 12 (both 2 or more off 8); together 8.
    traded = rounding.traded(selection, options, 8 / 24)
    assert counts(traded) == [4, 4]


def test_traded_stops_where_no_change_comes_closer():
    families = [family(np.ones(16), tile=4)]
    rounding = Rounding(families, measured(families), refine_order=[0], local=False)
    selection = [first(16, 8)]
    traded = rounding.traded(selection, {0: [first(16, 4), first(16, 8)]}, 0.5)
    assert counts(traded) == [8]


def test_nudged_does_nothing_unless_asked():
    families = [family(np.ones(8))]
    rounding = Rounding(families, measured(families), refine_order=[], local=True)
    selection = [first(8, 1)]
    assert rounding.nudged(selection, 0.75, fresh(8)) is selection


def test_nudged_steps_single_families_toward_a_missed_target_within_the_floor():
    families = [family(np.ones(10), floor=6), family(np.ones(10))]
    rounding = Rounding(families, measured(families), refine_order=[], local=True, nudge=True)
    nudged = rounding.nudged([first(10, 0), first(10, 0)], 0.3, fresh(10, 10))
    # Six steps of one unit each bring 0 to 0.3; the first family stops at its floor of 6.
    assert measured(families)(nudged) == 0.3
    assert counts(nudged)[0] <= 4


def test_nudged_takes_at_most_its_number_of_steps():
    families = [family(np.ones(100))]
    rounding = Rounding(families, measured(families), refine_order=[], local=True, nudge=True)
    nudged = rounding.nudged([first(100, 0)], 0.5, fresh(100))
    assert counts(nudged) == [NUDGES]


def test_nudged_gives_back_the_highest_scores_this_update_chose():
    families = [family(np.ones(10))]
    rounding = Rounding(families, measured(families), refine_order=[], local=True, nudge=True)
    already = first(10, 2)
    scores = np.arange(10.0)
    nudged = rounding.nudged([first(10, 6)], 0.3, [(scores, already)])
    assert np.flatnonzero(nudged[0]).tolist() == [0, 1, 2]


def best_reachable(families):
    """An exhaustive `rounded_at`: the counts nearest `target`, keeping what is pruned,
    lowest scores first in each family."""
    removed_by = measured(families)

    def rounded_at(target, scored):
        best = None
        ranges = [range(int(a.sum()), f.n_units + 1) for f, (_, a) in zip(families, scored)]
        for chosen in itertools.product(*ranges):
            selection = [
                a | np.isin(np.arange(f.n_units), np.argsort(np.where(a, -np.inf, s))[:n])
                for f, (s, a), n in zip(families, scored, chosen)
            ]
            miss = abs(removed_by(selection) - target)
            if best is None or miss < best[0]:
                best = (miss, selection)
        return best[1]

    return rounded_at


def test_keeping_final_reachable_trades_fine_units_for_a_coarse_one():
    # Four coarse units of 0.15 and ten fine ones of 0.01: an update at 0.1 that takes every
    # fine unit leaves 0.4 or 0.55 for a final target of 0.5.
    families = [family([0.15] * 4, refinable=False), family([0.01] * 10, refinable=False)]
    removed_by = measured(families)
    rounding = Rounding(families, removed_by, refine_order=[], local=False)
    scored = [(np.arange(4.0) + 10, np.zeros(4, bool)), (np.arange(10.0), np.zeros(10, bool))]
    greedy = [np.zeros(4, bool), np.ones(10, bool)]
    kept = rounding.keeping_final_reachable(greedy, 0.1, 0.5, scored, best_reachable(families))
    assert counts(kept) == [1, 0]
    after = [(s, np.asarray(p)) for (s, _), p in zip(scored, kept)]
    assert abs(removed_by(best_reachable(families)(0.5, after)) - 0.5) <= TOLERANCE


def test_keeping_final_reachable_leaves_a_selection_that_keeps_it():
    families = [family([0.15] * 4, refinable=False), family([0.01] * 10, refinable=False)]
    rounding = Rounding(families, measured(families), refine_order=[], local=False)
    scored = [(np.arange(4.0), np.zeros(4, bool)), (np.arange(10.0), np.zeros(10, bool))]
    selection = [first(4, 1), first(10, 0)]
    assert (
        rounding.keeping_final_reachable(selection, 0.1, 0.5, scored, best_reachable(families))
        is selection
    )
    # At the final target itself there is nothing left to keep reachable.
    greedy = [np.zeros(4, bool), np.ones(10, bool)]
    assert (
        rounding.keeping_final_reachable(greedy, 0.5, 0.5, scored, best_reachable(families))
        is greedy
    )
