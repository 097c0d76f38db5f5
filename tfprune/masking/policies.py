"""Pruning policies: `Policy`, what the layers pruned together share, and which layers
`prune(policies=...)` gives which policy.

Each policy is ranked and scheduled on its own (`tfprune.pruning_plans`): filter pruning on
the convolutions can run alongside 1x4 blocks on the Dense layers (the pattern LiteRT's sparse
FULLY_CONNECTED kernel runs), each on its own steps.
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune.core import checks, modelwalk
from tfprune.criteria import lookup as criteria
from tfprune.graph import reference
from tfprune.graph.latency import LatencyTable
from tfprune.masking import granularity as granularities
from tfprune.masking import schedules
from tfprune.masking.selection import as_list, matches

RANKINGS = ("local", "global")
TARGETS = ("sparsity", "flops", "latency")
GROUP_REDUCTIONS = ("sum", "mean", "max", "first")


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

    Raises:
        ValueError: for an unknown ranking, target or group reduction, or settings that do
            not go together (a latency target without filter granularity, N:M sparsity with
            another schedule's final target, or ranked globally).
        TypeError: for a latency target without a `tfprune.LatencyTable`.

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

    def __post_init__(self):
        checks.check_choice("group_reduction", self.group_reduction, GROUP_REDUCTIONS)
        checks.check_choice("ranking", self.ranking, RANKINGS)
        checks.check_choice("target", self.target, TARGETS)
        if self.target == "latency":
            _check_latency_target(self.granularity, self.latency_table)
        if isinstance(self.granularity, granularities.NM):
            _check_nm(self.granularity, self.ranking, self.target, self.schedule)

    @classmethod
    def from_settings(cls, settings: dict) -> Policy:
        """A policy from `prune`'s settings of the same names (names, numbers or objects).

        Args:
            settings: some of `SETTINGS` (`granularity`, `criterion` and `schedule` default
                to `"filter"`, `"l1"` and 0.5; the per-layer settings are ignored), and
                optionally `reference_size` (the current `tfprune.reference_size()`).

        Returns:
            A `Policy`.

        Raises:
            ValueError: for settings that do not go together, as `Policy` raises.
            TypeError: for a latency target without a `tfprune.LatencyTable`.
        """
        policy = normalized(
            {"granularity": "filter", "criterion": "l1", "schedule": None, **settings}
        )
        if isinstance(policy.get("latency_table"), dict):
            policy["latency_table"] = LatencyTable.from_config(policy["latency_table"])
        policy["reference_size"] = int(policy.get("reference_size") or reference.reference_size())
        return cls(**{name: policy[name] for name in FIELDS if name in policy})

    def get_config(self) -> dict:
        """The policy as JSON-serializable settings.

        Returns:
            A dict that `from_config` reads back.
        """
        config = {name: getattr(self, name) for name in FIELDS}
        table = self.latency_table
        config.update(
            granularity=str(self.granularity),
            criterion=criteria.name_of(self.criterion),
            schedule=keras.saving.serialize_keras_object(self.schedule),
            latency_table=None if table is None else table.get_config(),
        )
        return config

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


#: What a policy holds, by name (`Policy`'s fields).
FIELDS = tuple(field.name for field in dataclasses.fields(Policy))
#: The settings that stay per layer, on each wrapper, although `prune` and `policies=` give
#: them per policy.
LAYER_SETTINGS = ("min_filters", "round_to")
#: The settings a policy holds, as `prune` and tfprune 0.1.0's wrapper took them one by one.
POLICY_SETTINGS = tuple(name for name in FIELDS if name != "reference_size")
#: The settings a policy can give, as `prune`'s arguments of the same names.
SETTINGS = POLICY_SETTINGS + LAYER_SETTINGS


def check_layer_settings(min_filters, round_to) -> None:
    """Check the per-layer settings a policy gives.

    Args:
        min_filters: the fewest filters a filter mask keeps (an integer of at least 1).
        round_to: a multiple of filters to keep (at least 1), `"auto"`, or
            `{layer name: multiple or "auto"}`.

    Raises:
        ValueError: for a value below 1.
        TypeError: for a value that is neither an integer nor `"auto"`.

    Example:

    >>> check_layer_settings(1, {"conv1": 8, "*": "auto"})
    >>> check_layer_settings(0, "auto")
    Traceback (most recent call last):
    ...
    ValueError: min_filters must be an integer >= 1, got 0.
    """
    values = [("min_filters", min_filters)]
    values += (
        [(f"round_to[{k!r}]", v) for k, v in round_to.items()]
        if isinstance(round_to, dict)
        else [("round_to", round_to)]
    )
    for name, value in values:
        if value != "auto":
            checks.check_integer(name, value, minimum=1)


def _check_latency_target(granularity, latency_table) -> None:
    if not isinstance(granularity, granularities.Filter):
        raise ValueError(
            f"target='latency' removes filters, and granularity '{granularity}' keeps the "
            "kernels dense, so their latency does not change; use granularity='filter'."
        )
    if not isinstance(latency_table, LatencyTable):
        raise TypeError(
            "target='latency' needs latency_table=tfprune.measure_latency_table(model) "
            "(measured here) or tfprune.LatencyTable.load(path) (measured on the device); "
            f"got {type(latency_table).__name__}."
        )


def _check_nm(granularity, ranking, target, schedule) -> None:
    if ranking == "global" or target != "sparsity":
        raise ValueError(
            f"granularity '{granularity}' fixes the sparsity of every group; use "
            "ranking='local' and target='sparsity'."
        )
    expected = 1 - granularity.n / granularity.m
    if abs(schedule.final_target - expected) > 1e-6:
        raise ValueError(
            f"granularity '{granularity}' ends at sparsity {expected:g}, but the schedule ends "
            f"at {schedule.final_target:g}. Use a schedule whose final target is {expected:g}."
        )


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
