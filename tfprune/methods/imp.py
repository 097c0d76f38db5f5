"""Iterative magnitude pruning with rewinding, and mask similarity.

From "On Iterative Neural Network Pruning, Reinitialization, and the Similarity of Masks"
(Paganini and Forde, arXiv 2001.05050).

IMP alternates training and pruning: round `r` prunes to `1 - (1 - rate) ** r` of the
prunable weights, then resets the survivors. What they are reset to is the `rewind` mode:

- `"init"`: the values the model had before any training (the rewind of "The Lottery Ticket
  Hypothesis", Frankle and Carbin, arXiv 1803.03635);
- `"epoch"`: the values at the end of epoch `rewind_epoch` of the first round;
- `"reinit"`: freshly drawn values from the layers' own initializers;
- `"keep"`: no reset; the next round fine-tunes the trained survivors.

Pruned weights stay zero whatever the mode: the masks are re-applied after every reset.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks
from tfprune.core.modelwalk import copy_weights
from tfprune.masking.granularity import Filter
from tfprune.masking.prune import prune
from tfprune.masking.ranking import apply_target
from tfprune.masking.schedules import OneShot
from tfprune.masking.wrappers import followers_of, model_sparsity, wrappers_of

REWIND_MODES = ("init", "epoch", "reinit", "keep")


def _reapply_masks(model) -> None:
    """Zero what the masks prune after weights were overwritten."""
    for wrapper in wrappers_of(model):
        wrapper.assign_mask(wrapper.mask_array())
    for follower in followers_of(model):
        follower.assign_channel_mask(follower.mask_array())


class _EpochSnapshot(keras.callbacks.Callback):
    """Stores the model's weights at the end of one epoch into `target` (a plain clone)."""

    def __init__(self, epoch, target):
        super().__init__()
        self.epoch, self.target, self.taken = epoch, target, False

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            copy_weights(self.model, self.target)
            self.taken = True


class IterativePruning:
    """Iterative magnitude pruning: rounds of train, prune, rewind the survivors.

    `run` calls your own `compile` and `fit` functions, so data pipelines, callbacks and
    epochs stay yours. With `rounds=R` it trains R + 1 times: R times followed by a pruning
    step and a rewind, then once more at the final sparsity `1 - (1 - rate) ** R`.

    Args:
        rate: fraction of the remaining weights pruned per round, in (0, 1). Defaults to 0.2.
        rounds: number of pruning rounds (>= 1). Defaults to 3.
        rewind: `"init"`, `"epoch"`, `"reinit"` or `"keep"` (see the module docstring).
            Defaults to `"init"`.
        rewind_epoch: for `"epoch"`, the epoch (from 1) of the first round whose end values
            are the rewind point. Defaults to `None`.
        seed: for `"reinit"`, draw round `r`'s values with seed `seed + r`; `None` draws from
            Keras' global random state as it is. Defaults to `None`.
        **prune_kwargs: passed to `tfprune.prune` (`granularity`, default `"unstructured"`;
            `criterion`, default `"magnitude"`; `layers`, `exclude`, `protect`, ...).

    Attributes:
        rewind_point: after `run`, a plain model holding the values survivors were rewound
            to (None for `"reinit"` and `"keep"`).
        history: one dict per training: round, target pruned before it, sparsity reached
            and what `fit` returned (a `keras.callbacks.History`'s `.history`, if any).

    Raises:
        TypeError: for a rate that is not a number or rounds that are not an integer.
        ValueError: for a rate outside (0, 1), rounds < 1, an unknown rewind mode, or a
            missing `rewind_epoch` for `"epoch"`.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(3, name="head")])
    >>> x, y = np.random.rand(16, 4), np.arange(16) % 3
    >>> imp = IterativePruning(rate=0.5, rounds=2, rewind="init")
    >>> pruned = imp.run(
    ...     model,
    ...     compile=lambda m: m.compile("adam", "sparse_categorical_crossentropy"),
    ...     fit=lambda m, callbacks: m.fit(x, y, epochs=1, verbose=0, callbacks=callbacks),
    ... )
    >>> [round(h["sparsity"], 2) for h in imp.history]  # after 0, 1 and 2 rounds
    [0.0, 0.5, 0.75]
    """

    def __init__(
        self, rate=0.2, rounds=3, rewind="init", rewind_epoch=None, seed=None, **prune_kwargs
    ):
        checks.check_number(
            "IterativePruning: rate", rate, 0, 1, include_low=False, include_high=False
        )
        checks.check_integer("IterativePruning: rounds", rounds, minimum=1)
        checks.check_choice("IterativePruning: rewind", rewind, REWIND_MODES)
        if rewind == "epoch":
            if rewind_epoch is None:
                raise ValueError(
                    "IterativePruning: rewind='epoch' needs rewind_epoch, an epoch >= 1 of the "
                    "first round."
                )
            checks.check_integer("IterativePruning: rewind_epoch", rewind_epoch, minimum=1)
        self.rate, self.rounds, self.rewind, self.rewind_epoch, self.seed = (
            float(rate),
            rounds,
            rewind,
            rewind_epoch,
            seed,
        )
        self.prune_kwargs = {
            "granularity": "unstructured",
            "criterion": "magnitude",
            **prune_kwargs,
        }
        self.rewind_point = None
        self.history = []

    def target(self, round_index: int) -> float:
        """The fraction pruned after round `round_index` (from 1): `1 - (1 - rate) ** r`."""
        return 1.0 - (1.0 - self.rate) ** round_index

    def run(self, model, compile, fit):
        """Run every round on a pruned copy of `model` (left unchanged) and return the copy.

        Args:
            model: a Keras 3 functional or Sequential model.
            compile: `compile(pruned_model)`; called before each training, so every round
                starts with a fresh optimizer.
            fit: `fit(pruned_model, callbacks) -> History or None`; pass `callbacks` on to
                `model.fit` (the `"epoch"` rewind point is taken by one).

        Returns:
            The pruned model, with its `PruneWrapper`s (strip it to export).

        Raises:
            RuntimeError: if `rewind="epoch"` and training never reached `rewind_epoch`.
        """
        pruned = prune(model, schedule=OneShot(self.target(self.rounds)), **self.prune_kwargs)
        point = None
        if self.rewind in ("init", "epoch"):
            point = keras.models.clone_model(model)
            copy_weights(pruned, point)
        self.rewind_point, self.history = point, []
        for round_index in range(self.rounds + 1):
            callbacks = []
            if round_index == 0 and self.rewind == "epoch":
                callbacks.append(_EpochSnapshot(self.rewind_epoch, point))
            compile(pruned)
            result = fit(pruned, callbacks)
            if callbacks and not callbacks[0].taken:
                raise RuntimeError(
                    f"IterativePruning: the first round ended before epoch {self.rewind_epoch}, "
                    "the rewind point; train longer or lower rewind_epoch."
                )
            self.history.append(
                {
                    "round": round_index,
                    "target": self.target(round_index),
                    "sparsity": model_sparsity(wrappers_of(pruned)),
                    "fit": getattr(result, "history", None),
                }
            )
            if round_index == self.rounds:
                break
            apply_target(pruned, self.target(round_index + 1))
            self._reset_survivors(model, pruned, round_index + 1)
        return pruned

    def _reset_survivors(self, model, pruned, round_index) -> None:
        if self.rewind == "keep":
            return
        source = self.rewind_point
        if self.rewind == "reinit":
            if self.seed is not None:
                keras.utils.set_random_seed(self.seed + round_index)
            source = keras.models.clone_model(model)
        copy_weights(source, pruned)
        _reapply_masks(pruned)


def mask_similarity(a, b) -> dict:
    """How alike two pruned models' masks are, layer by layer.

    Args:
        a: a model pruned with `tfprune.prune` (with `PruneWrapper`s).
        b: another, pruned on the same architecture (another run, criterion or rewind mode).

    Returns:
        `{layer name: {"jaccard", "empty_filters_a", "empty_filters_b"}}`: the Jaccard index
        `|A & B| / |A | B|` of the *kept* weights (1.0 for identical masks), and per model the
        fraction of output filters left entirely empty. A `"mean"` entry averages each
        field over the layers.

    Raises:
        ValueError: if either model has no wrappers or they wrap different layers / shapes.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(3, name="head")])
    >>> a = tfprune.prune(model, granularity="unstructured", schedule=0.5)
    >>> b = tfprune.prune(model, granularity="unstructured", schedule=0.5)
    >>> _ = tfprune.apply_target(a, 0.5), tfprune.apply_target(b, 0.5)
    >>> mask_similarity(a, b)["fc"]["jaccard"]  # same weights, same criterion: same masks
    1.0
    """
    wrapped_a = {w.layer.name: w for w in wrappers_of(a)}
    wrapped_b = {w.layer.name: w for w in wrappers_of(b)}
    if not wrapped_a or not wrapped_b:
        raise ValueError(
            "mask_similarity needs two models returned by tfprune.prune (with PruneWrappers)."
        )
    if set(wrapped_a) != set(wrapped_b):
        raise ValueError(
            "mask_similarity: the models prune different layers: "
            f"{sorted(set(wrapped_a) ^ set(wrapped_b))}."
        )
    result = {}
    for name, wrapper in wrapped_a.items():
        mask_a, mask_b = wrapper.mask_array() > 0, wrapped_b[name].mask_array() > 0
        if mask_a.shape != mask_b.shape:
            raise ValueError(
                f"mask_similarity: layer '{name}' has masks of shape {mask_a.shape} and "
                f"{mask_b.shape}."
            )
        union = np.logical_or(mask_a, mask_b).sum()
        result[name] = {
            "jaccard": float(np.logical_and(mask_a, mask_b).sum() / union) if union else 1.0,
            "empty_filters_a": float(np.mean(Filter().pruned_units(mask_a, wrapper.spec))),
            "empty_filters_b": float(np.mean(Filter().pruned_units(mask_b, wrapped_b[name].spec))),
        }
    fields = ("jaccard", "empty_filters_a", "empty_filters_b")
    result["mean"] = {f: float(np.mean([row[f] for row in result.values()])) for f in fields}
    return result
