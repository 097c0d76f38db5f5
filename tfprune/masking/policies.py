"""Several pruning policies in one model: which layers `prune(policies=...)` gives which
granularity, criterion, schedule, ranking and target.

Each policy is ranked and scheduled on its own (`tfprune.pruning_plans`): filter pruning on
the convolutions can run alongside 1x4 blocks on the Dense layers (the pattern LiteRT's sparse
FULLY_CONNECTED kernel runs), each on its own steps.
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune.core import modelwalk
from tfprune.criteria import lookup as criteria
from tfprune.graph import reference
from tfprune.graph.latency import LatencyTable
from tfprune.masking import granularity as granularities
from tfprune.masking import schedules
from tfprune.masking.selection import as_list, matches

#: The settings a policy can give, as `prune`'s arguments of the same names.
SETTINGS = (
    "granularity",
    "criterion",
    "schedule",
    "ranking",
    "target",
    "min_filters",
    "round_to",
    "group_reduction",
    "latency_table",
)


@dataclasses.dataclass(frozen=True)
class Policy:
    """What every layer of one pruning policy shares: how its units are scored, ranked and
    scheduled, and the size at which its FLOPs count.

    Each `PruneWrapper` holds its policy; wrappers with equal policies are ranked and
    scheduled together (`tfprune.pruning_plans`), and a policy is saved once per wrapper
    with the model. The per-layer settings (`min_filters`, `round_to`, `rate`) stay on the
    wrapper.

    Attributes:
        granularity: a `tfprune.masking.Granularity`.
        criterion: a criterion callable (`tfprune.criteria`).
        schedule: a `tfprune` schedule.
        ranking: `"local"` or `"global"`.
        target: `"sparsity"`, `"flops"` or `"latency"`.
        group_reduction: how a channel group's scores combine: `"sum"`, `"mean"`, `"max"` or
            `"first"`.
        latency_table: a `tfprune.LatencyTable` (for `target="latency"`), or `None`.
        reference_size: the size unknown input dimensions count at for FLOPs targets
            (`tfprune.set_reference_size` when the model was pruned), so that a reloaded
            model prunes toward the same FLOPs in any process.

    Example:

    >>> a = Policy.from_settings({"granularity": "filter", "criterion": "l1", "schedule": 0.5})
    >>> b = Policy.from_settings({"granularity": "filter", "criterion": "l2", "schedule": 0.5})
    >>> a == Policy.from_config(a.get_config()), a == b
    (True, False)
    """

    granularity: granularities.Granularity
    criterion: object
    schedule: schedules.PruningSchedule
    ranking: str = "local"
    target: str = "sparsity"
    group_reduction: str = "sum"
    latency_table: LatencyTable | None = None
    reference_size: int = 128

    @classmethod
    def from_settings(cls, settings: dict) -> Policy:
        """A policy from `prune`'s settings of the same names (names, numbers or objects).

        Args:
            settings: some of `SETTINGS` (`granularity`, `criterion` and `schedule` default
                to `"filter"`, `"l1"` and 0.5; the per-layer settings are ignored), and
                optionally `reference_size` (the current `tfprune.reference_size()`).

        Returns:
            A `Policy`.
        """
        policy = normalized(
            {"granularity": "filter", "criterion": "l1", "schedule": None, **settings}
        )
        table = policy.get("latency_table")
        if isinstance(table, dict):
            table = LatencyTable.from_config(table)
        return cls(
            granularity=policy["granularity"],
            criterion=policy["criterion"],
            schedule=policy["schedule"],
            ranking=policy.get("ranking", "local"),
            target=policy.get("target", "sparsity"),
            group_reduction=policy.get("group_reduction", "sum"),
            latency_table=table,
            reference_size=int(policy.get("reference_size") or reference.reference_size()),
        )

    def get_config(self) -> dict:
        """The policy as JSON-serializable settings.

        Returns:
            A dict that `from_config` reads back.
        """
        return {
            "granularity": str(self.granularity),
            "criterion": criteria.name_of(self.criterion),
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "ranking": self.ranking,
            "target": self.target,
            "group_reduction": self.group_reduction,
            "latency_table": None
            if self.latency_table is None
            else self.latency_table.get_config(),
            "reference_size": self.reference_size,
        }

    @classmethod
    def from_config(cls, config: dict) -> Policy:
        """Inverse of `get_config`.

        Args:
            config: what `get_config` returned.

        Returns:
            A `Policy`.
        """
        config = dict(config)
        config["criterion"] = criteria.from_name(config["criterion"])
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls.from_settings(config)


def normalized(settings: dict) -> dict:
    """A policy's settings with granularity, criterion and schedule as objects.

    Args:
        settings: one value per name in `SETTINGS` (names, numbers or objects).

    Returns:
        A new dict.

    Example:

    >>> policy = normalized({"granularity": "2:4", "criterion": "l1", "schedule": 0.5})
    >>> policy["granularity"], type(policy["schedule"]).__name__
    (NM(n=2, m=4), 'ConstantSparsity')
    """
    policy = dict(settings)
    policy["granularity"] = granularities.get(policy["granularity"])
    policy["criterion"] = criteria.get(policy["criterion"])
    schedule = policy.get("schedule")
    policy["schedule"] = schedules.get(0.5 if schedule is None else schedule)
    return policy


def layer_policies(model, base: dict, policies):
    """The policies of a model and which one each layer follows.

    Args:
        model: the model being pruned.
        base: `prune`'s own settings (one per name in `SETTINGS`), for the layers no
            selector names.
        policies: `None`, or `{selector: settings}`: a selector as `layers=` takes them (a
            name, a class, a predicate, or a tuple of those), settings a dict of some of
            `SETTINGS` (the others come from `base`), or just a granularity.

    Returns:
        `(policies, policy_of)`: the normalized policies (`base` first) and a function
        `layer -> index` giving the first policy whose selector matches it (0 for none).

    Raises:
        TypeError: for a mapping of the wrong type, or settings with unknown names.
        ValueError: for a selector naming a layer the model does not have.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc"),
    ...                           keras.layers.Dense(2, name="head")])
    >>> base = dict(granularity="filter", criterion="l1", schedule=0.5, ranking="local",
    ...             target="sparsity", min_filters=1, round_to=1, group_reduction="sum")
    >>> found, policy_of = layer_policies(model, base, {"fc": "block:1x4"})
    >>> [str(p["granularity"]) for p in found], policy_of(model.get_layer("fc"))
    (['filter', 'block:1x4'], 1)
    """
    found = [normalized(base)]
    if policies is None:
        return found, lambda layer: 0
    if not isinstance(policies, dict):
        raise TypeError(
            f"policies must be a dict {{layer selector: settings}}, got {type(policies).__name__}."
        )
    names = {layer.name for layer in modelwalk.all_layers(model)}
    selectors = []
    for selector, settings in policies.items():
        if isinstance(settings, (str, granularities.Granularity)):
            settings = {"granularity": settings}
        if not isinstance(settings, dict):
            raise TypeError(
                f"policies[{selector!r}] must be a dict of prune settings or a granularity, got "
                f"{type(settings).__name__}."
            )
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise TypeError(
                f"policies[{selector!r}]: unknown settings {unknown}; a policy sets some of "
                f"{list(SETTINGS)}."
            )
        for name in as_list(selector):
            if isinstance(name, str) and name not in names:
                raise ValueError(
                    f"policies: the model has no layer named '{name}'. Layers: {sorted(names)}."
                )
        found.append(normalized({**base, **settings}))
        selectors.append(as_list(selector))

    def policy_of(layer) -> int:
        for index, selector in enumerate(selectors):
            if any(matches(layer, s) for s in selector):
                return index + 1
        return 0

    return found, policy_of
