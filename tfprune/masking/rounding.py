"""Rounding a ranked selection to the multiples families keep, toward a target.

A `PruningPlan` ranks the families of `round_to="auto"` filter by filter, so that the balance
between layers is the one fine steps give; `Rounding` then moves each one's kept count to a
multiple of its tile, and repairs what rounding costs: it trades roundings between families
(`Rounding.traded`), falls back to single filters where a target is missed by more than
`TOLERANCE`, nudges single families a step more or less (`Rounding.nudged`), and keeps a
gradual schedule's final target reachable (`Rounding.keeping_final_reachable`).

A selection is one boolean vector of pruned units per family; `scored` holds one
`(scores, already pruned)` pair per family. Nothing here reads a model: the plan hands over
its families and how it measures a selection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from tfprune.masking.families import normalised_scores

#: How far (in the target's unit: 0.02 is 2 % of the model's FLOPs) a selection may land
#: from its target before families of `round_to="auto"` give up their coarse multiples.
TOLERANCE = 0.02
#: How many single-family steps `Rounding.nudged` takes at most toward a missed target.
NUDGES = 8


@dataclasses.dataclass(frozen=True)
class Rounding:
    """How one plan rounds its selections.

    Args:
        families: the plan's families (`tfprune.masking.families.Family`), with the
            multiples they round to.
        removed_by: `(selection) -> float`, the fraction a selection removes in the
            target's unit.
        refine_order: indices of the families of `round_to="auto"`, narrowest first.
        local: whether the ranking is local (every layer at the target): each family
            then takes its nearer multiple, with no trade between families.
        nudge: whether single families may step toward a missed target (a cost target
            counted structurally, where one family's step changes what others cost).
            Defaults to `False`.

    Example:

    Two layers keep multiples of 4 and 2 filters; ranked filter by filter, they prune 7 of
    16 and 5 of 8 (half the units). The wide one rounds to 8 pruned, the narrow one pays
    with 4, and the removal stays at one half:

    >>> from tfprune.masking.families import Family
    >>> from tfprune.masking.granularity import get
    >>> families = [
    ...     Family(get("filter"), 1, tile, np.ones(n), None, None, None, refinable=True)
    ...     for n, tile in ((16, 4), (8, 2))
    ... ]
    >>> def removed_by(selection):
    ...     return sum(int(p.sum()) for p in selection) / 24
    >>> rounding = Rounding(families, removed_by, refine_order=[1, 0], local=False)
    >>> chosen = [np.arange(16) < 7, np.arange(8) < 5]
    >>> scored = [(np.arange(n, dtype=float), np.zeros(n, bool)) for n in (16, 8)]
    >>> [int(pruned.sum()) for pruned in rounding.rounded(chosen, 0.5, scored)]
    [8, 4]
    """

    families: Sequence
    removed_by: Callable
    refine_order: Sequence[int]
    local: bool
    nudge: bool = False

    def _miss(self, selection, target) -> float:
        return abs(self.removed_by(selection) - target)

    def rounded(self, chosen, target, scored) -> list:
        """`chosen`, each refinable family's kept count moved to a multiple of its tile.

        Widest first, each family's count moves up or down, whichever leaves the removal
        closer to `target` (the narrower families absorb the rounding of the wider ones;
        with local ranking, the nearer multiple); then pairs of families trade their
        roundings while that brings the removal closer (`traded`). Where the result still
        misses the target by more than `TOLERANCE`, families go back to their unrounded
        count, narrowest first, while that brings the removal closer, and all of them if it
        is still missed; then single families take a step more or less (`nudged`).

        Args:
            chosen: the selection ranked filter by filter.
            target: the removal to approach.
            scored: `(scores, already pruned)` per family.

        Returns:
            The rounded selection (a new list, or `chosen` itself where rounding only
            moved away from the target).
        """
        selection = list(chosen)
        options = {}
        for index in reversed(self.refine_order):
            scores, already = scored[index]
            family = self.families[index]
            if self.local:
                selection[index] = family.nearest_snap(chosen[index], scores, already)
                continue
            options[index] = family.snap_options(chosen[index], scores, already)
            selection[index] = min(
                options[index],
                key=lambda p: self._miss([*selection[:index], p, *selection[index + 1 :]], target),
            )
        selection = self.traded(selection, options, target)
        current = self._miss(selection, target)
        for index in self.refine_order:
            if current <= TOLERANCE:
                break
            trial = [*selection[:index], chosen[index], *selection[index + 1 :]]
            trial_miss = self._miss(trial, target)
            if trial_miss < current:
                selection, current = trial, trial_miss
        if current > TOLERANCE and current > self._miss(chosen, target):
            selection = chosen
        return self.nudged(selection, target, scored)

    def traded(self, selection, options, target) -> list:
        """Improve a widest-first rounding by changing one or two families' roundings at a
        time (one up, the other down): whichever change brings the removal nearest
        `target`, while one does.

        Rounding the widest family first fixes it before the narrow ones are seen, which
        misses combinations such as a narrow layer rounded down paying for a wide one
        rounded up. Pairs are chosen on the sum of their single changes, then measured.

        Args:
            selection: one boolean vector per family, its refinable ones rounded.
            options: `{family index: snap options}` of the refinable families.
            target: the removal to approach.

        Returns:
            The improved selection (a new list).
        """
        selection = list(selection)
        removed = self.removed_by(selection)
        for _ in range(len(options)):
            changes = []  # (family index, option, change in removal)
            for index, choices in options.items():
                for option in choices:
                    if not np.array_equal(option, selection[index]):
                        trial = [*selection[:index], option, *selection[index + 1 :]]
                        changes.append((index, option, self.removed_by(trial) - removed))
            if not changes:
                break
            family = np.array([c[0] for c in changes])
            delta = np.array([c[2] for c in changes])
            predicted = np.abs(removed + delta[:, None] + delta[None, :] - target)
            # A pair is two families; the diagonal stands for one change alone.
            predicted[family[:, None] == family[None, :]] = np.inf
            np.fill_diagonal(predicted, np.abs(removed + delta - target))
            first, second = np.unravel_index(int(np.argmin(predicted)), predicted.shape)
            trial = list(selection)
            for k in {int(first), int(second)}:
                trial[changes[k][0]] = changes[k][1]
            trial_removed = self.removed_by(trial)
            if abs(trial_removed - target) >= abs(removed - target) - 1e-12:
                break
            selection, removed = trial, trial_removed
        return selection

    def nudged(self, selection, target, scored) -> list:
        """`selection`, moved a step of one family at a time (one more step of its units
        pruned, the lowest scores, or one fewer of those this update chose, the highest)
        while that brings a removal more than `TOLERANCE` off `target` closer.

        Local ranking prunes every layer to one fraction, so the attention layers lose a
        head at the same fractions all at once, and a FLOPs target can fall between two such
        jumps (an unfolded GPT-2 asked for 0.4 stopped at 0.312): single layers then take a
        step more or less. At most `NUDGES` steps, each the best single one; none unless
        `nudge` is set.

        Args:
            selection: one boolean vector of pruned units per family.
            target: the removal to approach.
            scored: `(scores, already pruned)` per family.

        Returns:
            The selection (a new list if any step was taken).
        """
        if not self.nudge:
            return selection
        removed = self.removed_by(selection)
        for _ in range(NUDGES):
            if abs(removed - target) <= TOLERANCE:
                break
            best = None
            for index, family in enumerate(self.families):
                for trial in self._single_steps(selection, index, family, scored[index]):
                    trial_removed = self.removed_by(trial)
                    if best is None or abs(trial_removed - target) < abs(best[1] - target):
                        best = (trial, trial_removed)
            if best is None or abs(best[1] - target) >= abs(removed - target) - 1e-12:
                break
            selection, removed = best
        return selection

    @staticmethod
    def _single_steps(selection, index, family, scored):
        """The selections one step of family `index` away: a step more pruned, a step fewer."""
        scores, already = scored
        units, step = selection[index], family.round_to
        free = np.flatnonzero(~units)
        mine = np.flatnonzero(units & ~already)
        moves = []
        if free.size - step >= max(1, family.min_filters):
            moves.append((free[np.argsort(scores[free], kind="stable")[:step]], True))
        if mine.size >= step:
            moves.append((mine[np.argsort(-scores[mine], kind="stable")[:step]], False))
        for changed, value in moves:
            trial = list(selection)
            trial[index] = units.copy()
            trial[index][changed] = value
            yield trial

    def keeping_final_reachable(self, selection, target, final, scored, rounded_at) -> list:
        """`selection`, or a trade of one coarse unit for finer ones that keeps the
        schedule's final target reachable within `TOLERANCE`.

        Units pruned at one update stay pruned. Ranked freely, the early updates of a gradual
        schedule can take every cheap unit of low score (a transformer's feed-forward units)
        and leave only coarse ones (heads, 7.5 % of its FLOPs each), so that the last update
        stops short or overshoots. When `selection` would leave the final target out of
        reach, each family in turn prunes its lowest unit not yet pruned, and gives back
        units this update chose in other families, the highest normalised score first,
        while the removal comes closer to `target`; the trade that leaves the final target
        nearest (then the removal nearest `target`) is taken.

        Args:
            selection: one boolean vector of pruned units per family.
            target: this update's target.
            final: the schedule's final target.
            scored: `(scores, already pruned)` per family.
            rounded_at: `(target, scored) -> selection`, the plan's whole selection (ranked
                and rounded) for given scores, which tells what the final update could reach.

        Returns:
            The selection to install.
        """
        if target >= final - 1e-9:
            return selection

        def final_miss(candidate):
            after = [(scores, np.asarray(units)) for (scores, _), units in zip(scored, candidate)]
            return self._miss(rounded_at(final, after), final)

        missed = final_miss(selection)
        if missed <= TOLERANCE:
            return selection
        best, best_key = selection, (missed, self._miss(selection, target))
        newly = _newly_chosen(selection, scored)
        for index, family in enumerate(self.families):
            free = np.flatnonzero(~selection[index])
            if free.size <= max(1, family.min_filters):
                continue
            trial = [np.array(units) for units in selection]
            trial[index][free[np.argmin(scored[index][0][free])]] = True
            trial_removed = self._given_back(trial, index, newly, target)
            key = (final_miss(trial), abs(trial_removed - target))
            if key < best_key:
                best, best_key = trial, key
        return best

    def _given_back(self, trial, index, newly, target) -> float:
        """Give back units of `newly` outside family `index` (in place in `trial`), highest
        score first, while the removal comes closer to `target`; returns the removal."""
        trial_removed = self.removed_by(trial)
        for _, j, unit in newly:
            if j == index or trial_removed <= target:
                continue
            trial[j][unit] = False
            back = self.removed_by(trial)
            if abs(back - target) >= abs(trial_removed - target):
                trial[j][unit] = True
                break
            trial_removed = back
        return trial_removed


def _newly_chosen(selection, scored) -> list:
    """`(normalised score, family, unit)` of the units `selection` prunes that were not
    pruned before, highest score first."""
    newly = []
    for j, ((scores, already), units) in enumerate(zip(scored, selection)):
        normalised = normalised_scores(scores, already)
        newly += [(normalised[u], j, u) for u in np.flatnonzero(units & ~already)]
    newly.sort(key=lambda item: -item[0])
    return newly
