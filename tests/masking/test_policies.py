"""Several pruning policies in one model: each layer's mask has its own pattern and each
policy runs its own schedule."""

import dataclasses

import keras
import numpy as np
import pytest

import tfprune
from tfprune.masking.policies import layer_policies


def conv_and_dense():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(32, name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def mixed(model, **kwargs):
    blocks = tfprune.PolynomialDecay(0.0, 0.75, begin_step=2, end_step=6, frequency=1)
    return tfprune.prune(
        model,
        schedule=tfprune.OneShot(0.5),
        protect=["conv1"],
        policies={keras.layers.Dense: {"granularity": "block:1x4", "schedule": blocks}},
        **kwargs,
    )


def train(pruned, callback, epochs=2):
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    pruned.fit(x, np.arange(32) % 4, epochs=epochs, batch_size=8, verbose=0, callbacks=[callback])
    return x


def test_each_policy_has_its_own_pattern_and_schedule(tmp_path):
    keras.utils.set_random_seed(0)
    pruned = mixed(conv_and_dense())
    callback = tfprune.PruningCallback()
    x = train(pruned, callback)
    by_policy = {}
    for event in callback.events:
        by_policy.setdefault(event["policy"], []).append(event["step"])
    assert by_policy == {0: [0], 1: [2, 3, 4, 5, 6]}
    wrappers = {w.layer.name: w for w in tfprune.wrappers_of(pruned)}
    conv = wrappers["conv2"].mask_array().reshape(-1, 16)
    assert sorted(conv.min(axis=0) == conv.max(axis=0)) == [True] * 16  # whole filters
    assert conv.mean() == 0.5
    for name in ("fc", "head"):
        blocks = wrappers[name].mask_array().T.reshape(wrappers[name].mask.shape[1], -1, 4)
        assert np.all(blocks.min(axis=-1) == blocks.max(axis=-1))  # whole 1x4 blocks
        assert wrappers[name].sparsity() == pytest.approx(0.75)

    tfprune.save_model(pruned, tmp_path / "mixed.keras")
    restored = keras.saving.load_model(tmp_path / "mixed.keras")
    granularities = {w.layer.name: str(w.granularity) for w in tfprune.wrappers_of(restored)}
    assert granularities == {"conv2": "filter", "fc": "block:1x4", "head": "block:1x4"}
    np.testing.assert_allclose(restored(x), pruned(x), atol=1e-6)
    assert len(tfprune.pruning_plans(restored)) == 2
    small = tfprune.shrink(pruned)
    assert small.get_layer("conv2").filters == 8
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5


def test_a_channel_written_by_two_policies_is_not_removed():
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 1, name="a")(inputs)
    b = keras.layers.Conv2D(8, 1, name="b")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    x = keras.layers.Dense(8, name="fc")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    with pytest.raises(ValueError, match="of 'b' is impossible.*two policies is never removed"):
        tfprune.prune(
            model,
            schedule=tfprune.OneShot(0.5),
            protect=["head"],
            policies={"b": {"schedule": tfprune.OneShot(0.25)}},
        )
    pruned = tfprune.prune(
        model, protect=["head"], policies={"b": {"schedule": tfprune.OneShot(0.0)}}
    )
    plans = tfprune.pruning_plans(pruned)
    assert [[w.layer.name for w in p.wrappers] for p in plans] == [["a", "fc"], ["b"]]
    plans[0].apply(0.5)
    wrappers = {w.layer.name: w for w in tfprune.wrappers_of(pruned)}
    assert wrappers["a"].sparsity() == wrappers["b"].sparsity() == 0.0
    assert wrappers["fc"].sparsity() == 0.5


def test_settings_of_a_policy_are_checked():
    model = conv_and_dense()
    with pytest.raises(TypeError, match=r"policies\['fc'\]: unknown settings \['granularty'\]"):
        tfprune.prune(model, policies={"fc": {"granularty": "2:4"}})
    with pytest.raises(ValueError, match="policies: the model has no layer named 'fcc'"):
        tfprune.prune(model, policies={"fcc": "2:4"})
    with pytest.raises(ValueError, match="granularity '2:4' ends at sparsity 0.5"):
        tfprune.prune(model, policies={"fc": {"granularity": "2:4", "schedule": 0.7}})
    with pytest.raises(TypeError, match="policies must be a dict"):
        tfprune.prune(model, policies=["fc"])


def test_what_runs_one_schedule_refuses_a_mixed_model():
    pruned = mixed(conv_and_dense())
    with pytest.raises(ValueError, match="several pruning policies.*pruning_plans"):
        tfprune.apply_target(pruned, 0.5)
    x = np.zeros((4, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="max_instability caps one schedule"):
        train(
            pruned, tfprune.PruningCallback(validation_data=(x, np.zeros(4)), max_instability=0.1)
        )


def test_the_first_matching_selector_wins():
    model = conv_and_dense()
    base = dict(
        granularity="filter", criterion="l1", schedule=0.5, ranking="local",
        target="sparsity", min_filters=1, round_to=1, group_reduction="sum",
    )  # fmt: skip
    policies, policy_of = layer_policies(
        model, base, {("fc", "conv2"): "unstructured", keras.layers.Dense: "block:1x4"}
    )
    chosen = {layer.name: str(policies[policy_of(layer)]["granularity"]) for layer in model.layers}
    assert chosen["fc"] == chosen["conv2"] == "unstructured"
    assert chosen["head"] == "block:1x4" and chosen["conv1"] == "filter"


@pytest.mark.parametrize(
    "setting", [{"criterion": "l2"}, {"group_reduction": "max"}, {"ranking": "global"}]
)
def test_policies_that_differ_in_one_setting_are_separate_plans(setting):
    model = conv_and_dense()
    pruned = tfprune.prune(model, schedule=0.5, protect=None, policies={"fc": setting})
    plans = tfprune.pruning_plans(pruned)
    assert [[w.layer.name for w in plan.wrappers] for plan in plans] == [
        ["conv1", "conv2"],
        ["fc"],
    ]
    ((name, value),) = setting.items()
    fc = plans[1].wrappers[0]
    assert getattr(fc, name) == (tfprune.criteria.get(value) if name == "criterion" else value)
    with pytest.raises(ValueError, match="criterion or group reduction"):
        tfprune.masking.ranking.PruningPlan(pruned)


def test_a_model_saved_at_one_reference_size_prunes_toward_the_same_flops_at_another(tmp_path):
    from tfprune.masking.ranking import PruningPlan, apply_target

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4))  # sequences of any length: FLOPs count at a size
    x = keras.layers.Conv1D(16, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.Conv1D(16, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    tfprune.set_reference_size(32)
    try:
        pruned = tfprune.prune(model, schedule=0.4, target="flops", ranking="global")
        at_32 = PruningPlan(pruned).total_cost
        assert at_32 == tfprune.count_flops(model)
        pruned.save(tmp_path / "pruned.keras")
    finally:
        tfprune.set_reference_size(128)
    restored = keras.saving.load_model(tmp_path / "pruned.keras")
    assert tfprune.count_flops(model) > at_32  # the process counts at 128 now
    assert PruningPlan(restored).total_cost == at_32
    assert tfprune.wrappers_of(restored)[0].policy == tfprune.wrappers_of(pruned)[0].policy
    for m in (pruned, restored):
        apply_target(m, 0.4)
    for a, b in zip(tfprune.wrappers_of(pruned), tfprune.wrappers_of(restored)):
        np.testing.assert_array_equal(a.mask_array(), b.mask_array())


def test_policies_are_equal_exactly_when_every_setting_is():
    from tfprune.graph.latency import LatencyTable
    from tfprune.masking.policies import Policy

    base = {"granularity": "filter", "criterion": "l1", "schedule": 0.5, "ranking": "local",
            "target": "sparsity", "group_reduction": "sum", "latency_table": None,
            "reference_size": 128}  # fmt: skip
    table = LatencyTable({}, scale=1.0, device={"name": "test"}, fixed_us=0.0, tile=16)
    other = {"granularity": "unstructured", "criterion": "l2", "schedule": 0.3,
             "ranking": "global", "target": "flops", "group_reduction": "max",
             "latency_table": table, "reference_size": 64}  # fmt: skip
    assert set(other) == {f.name for f in dataclasses.fields(Policy)}
    policy = Policy.from_settings(base)
    assert policy == Policy.from_settings(dict(base)) == Policy.from_config(policy.get_config())
    for name, value in other.items():
        changed = Policy.from_settings({**base, name: value})
        assert changed != policy, name
        assert Policy.from_config(changed.get_config()) == changed, name
