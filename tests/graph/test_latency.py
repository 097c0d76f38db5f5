"""The latency table: its format, its predictions, and `target="latency"` pruning against a
table given by hand (no LiteRT here; measuring one is tested in tests/methods)."""

import json

import keras
import numpy as np
import pytest
from helpers import small_cnn

import tfprune
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.latency import LatencyTable, auto_multiple, model_probes
from tfprune.masking.families import family_multiple
from tfprune.masking.ranking import apply_target, pruning_plans
from tfprune.masking.rounding import TOLERANCE
from tfprune.zoo import digits_cnn


def flops_like_table(model, per_mac=1e-3, steps=4) -> LatencyTable:
    """A hand-made table: every layer costs `per_mac` us per multiply-add at every width,
    as a phone's table would list it, with no measurement."""
    entries = {}
    for call, probe in model_probes(ChannelGraph(model)):
        ins, outs = probe.grid(steps)
        positions = np.prod(call.outputs[0].shape[1:-1] or [1])
        kernel = np.prod(probe.config.get("kernel_size", (1,)))
        if outs is None:
            us = [per_mac * positions * kernel * i for i in ins]
        else:
            us = [[per_mac * positions * kernel * i * o for o in outs] for i in ins]
        entries[probe.key] = {"in": ins, "out": outs, "us": us}
    return LatencyTable(entries, scale=1.0, device={"machine": "phone"})


def test_table_round_trips_through_json(tmp_path):
    table = flops_like_table(small_cnn())
    path = table.save(tmp_path / "phone.json")
    loaded = LatencyTable.load(path)
    assert loaded == table and loaded.fingerprint() == table.fingerprint()
    assert json.loads(path.read_text())["format"] == "tfprune.latency/1"
    assert loaded.device == {"machine": "phone"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"format": "other"}', "not a tfprune latency table"),
        ('{"format": "tfprune.latency/1"}', "not a valid latency table"),
    ],
)
def test_unreadable_tables_are_refused_with_the_file_named(tmp_path, text, message):
    path = tmp_path / "table.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        LatencyTable.load(path)


def test_entries_must_match_their_widths():
    with pytest.raises(ValueError, match=r"'us' must hold \(2, 1\)"):
        LatencyTable({"k": {"in": [1, 2], "out": [4], "us": [[1.0, 2.0]]}})
    with pytest.raises(ValueError, match="scale must be a positive number"):
        LatencyTable({}, scale=0)


def test_prediction_interpolates_and_extrapolates_linearly():
    table = LatencyTable(
        {
            "dense": {"in": [4, 8], "out": [4, 8], "us": [[4.0, 8.0], [8.0, 16.0]]},
            "depthwise": {"in": [8, 16], "out": None, "us": [1.0, 5.0]},
        }
    )
    assert table.predict("dense", 8, 8) == 16.0
    assert table.predict("dense", 6, 6) == pytest.approx(9.0)
    assert table.predict("dense", 2, 8) == pytest.approx(4.0)  # below the grid, linearly
    assert table.predict("depthwise", 12, 999) == pytest.approx(3.0)  # one axis
    assert table.predict("depthwise", 1, 1) == 0.0  # never negative
    with pytest.raises(KeyError, match="measure_latency_table"):
        table.predict("conv", 1, 1)


def test_layers_of_the_same_shape_share_a_probe_key():
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(keras.layers.Conv2D(4, 1)(a))
    c = keras.layers.Conv2D(8, 3, padding="same", strides=2, name="c")(b)
    model = keras.Model(inputs, c)
    keys = {call.layer.name: probe.key for call, probe in model_probes(ChannelGraph(model))}
    assert keys["a"] == keys["b"] and keys["a"] != keys["c"]
    probe = dict((call.layer.name, p) for call, p in model_probes(ChannelGraph(model)))["c"]
    assert probe.model(2, 3).output.shape == (1, 4, 4, 3)
    assert probe.grid(4) == ([2, 4, 6, 8], [2, 4, 6, 8])


@pytest.mark.parametrize("ranking", ["local", "global"])
@pytest.mark.parametrize("goal", [0.3, 0.6])
def test_latency_target_reaches_the_predicted_target(ranking, goal):
    keras.utils.set_random_seed(0)
    model = small_cnn()
    table = flops_like_table(model)
    pruned = tfprune.prune(
        model, target="latency", latency_table=table, ranking=ranking, protect=["head"]
    )
    plan = apply_target(pruned, goal)
    assert plan.removed() == pytest.approx(goal, abs=0.02)
    small = tfprune.shrink(tfprune.strip(pruned))
    # The plan's prediction is the table's prediction for the model shrink builds.
    assert 1 - table.model_latency(small) / table.model_latency(model) == pytest.approx(
        plan.removed(), abs=1e-9
    )


def test_a_given_table_decides_what_a_unit_costs():
    """The same target, two tables: one where conv3 is nearly free, one where it costs its
    multiply-adds. Local ranking cuts conv2 and conv3 by the same fraction; with conv3 free
    (its cost falling with both its input and output widths), that fraction must be larger."""
    model = small_cnn()
    table = flops_like_table(model)
    conv3_key = dict((c.layer.name, p.key) for c, p in model_probes(ChannelGraph(model)))["conv3"]
    cheap = table.get_config()
    entry = cheap["entries"][conv3_key]
    entry["us"] = (np.asarray(entry["us"]) / 100).tolist()
    kept = {}
    for name, given in ("flops_like", table), ("cheap_conv3", LatencyTable.from_config(cheap)):
        pruned = tfprune.prune(
            model, target="latency", latency_table=given, ranking="local", protect=["conv1"]
        )
        apply_target(pruned, 0.4)
        small = tfprune.shrink(tfprune.strip(pruned))
        kept[name] = small.get_layer("conv2").filters
    assert kept["cheap_conv3"] < kept["flops_like"]


def test_latency_policy_is_saved_with_the_model(tmp_path):
    model = small_cnn()
    table = flops_like_table(model)
    pruned = tfprune.prune(model, target="latency", latency_table=table, schedule=0.4)
    path = tfprune.save_model(pruned, tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(path)
    (plan,) = pruning_plans(loaded)
    assert plan.target == "latency" and all(
        w.latency_table == table for w in tfprune.wrappers_of(loaded)
    )
    assert plan.total_cost == pytest.approx(table.model_latency(model))


def test_pruning_callback_logs_the_latency_removed():
    model = small_cnn()
    pruned = tfprune.prune(
        model,
        target="latency",
        latency_table=flops_like_table(model),
        schedule=0.4,
        ranking="global",  # local ranking's steps on these 8-16 filter layers are 3 % apart
    )
    pruned.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.rand(8, 12, 12, 1).astype("float32"), np.arange(8) % 4
    history = pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    assert history.history["latency_removed"][0] == pytest.approx(0.4, abs=0.02)


def test_bad_latency_arguments_get_clear_errors():
    model = small_cnn()
    table = flops_like_table(model)
    with pytest.raises(TypeError, match="needs latency_table=tfprune.measure_latency_table"):
        tfprune.prune(model, target="latency")
    with pytest.raises(ValueError, match="use granularity='filter'"):
        tfprune.prune(model, target="latency", latency_table=table, granularity="unstructured")
    with pytest.raises(ValueError, match="no policy has target='latency'"):
        tfprune.prune(model, target="flops", latency_table=table)
    other = flops_like_table(small_cnn(input_shape=(16, 16, 1)))
    with pytest.raises(ValueError, match="no entry for layer 'conv1'.*measured on another model"):
        tfprune.prune(model, target="latency", latency_table=other)


def test_layers_a_table_cannot_hold_are_named():
    inputs = keras.Input((6, 8))
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    x = keras.layers.Dense(8, name="ffn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    table = flops_like_table(model)
    with pytest.raises(ValueError, match=r"'mha' \(MultiHeadAttention\).*exclude=\['mha'\]"):
        tfprune.prune(model, target="latency", latency_table=table, layers=["mha", "ffn"])
    pruned = tfprune.prune(model, target="latency", latency_table=table, layers=["ffn"])
    assert [w.layer.name for w in tfprune.wrappers_of(pruned)] == ["ffn"]


def test_predictions_round_output_widths_up_to_whole_tiles():
    entry = {"in": [8], "out": [8, 16, 20], "us": [[1.0, 2.0, 3.0]]}
    tiled = LatencyTable({"conv": entry}, tile=8)
    assert tiled.predict("conv", 8, 9) == tiled.predict("conv", 8, 16) == 2.0
    assert tiled.predict("conv", 8, 17) == 3.0  # the last tile is the full width's own
    assert LatencyTable({"conv": entry}).predict("conv", 8, 12) == 1.5
    assert LatencyTable.from_config(tiled.get_config()).tile == 8
    with pytest.raises(ValueError, match="tile must be an integer"):
        LatencyTable({}, tile=0)


def test_widths_inside_a_tile_cost_the_next_measured_width():
    # An AVX-512 staircase (tile 32): 17-31 output channels cost more than 32, and 33-64
    # cost what 64 does. A grid measured finer than the tile says so; whole-tile rounding
    # alone would price 24 channels as 32 and interpolate 40 between 32 and 64.
    entry = {"in": [8], "out": [8, 16, 24, 32, 48, 64], "us": [[1.0, 1.0, 3.0, 2.0, 4.0, 4.0]]}
    table = LatencyTable({"conv": entry}, tile=32)
    assert table.predict("conv", 8, 17) == table.predict("conv", 8, 24) == 3.0
    assert table.predict("conv", 8, 40) == 4.0
    assert table.predict("conv", 8, 5) == 1.0
    # A grid a whole tile apart rounds to whole tiles as before.
    coarse = LatencyTable({"conv": {"in": [8], "out": [32, 64], "us": [[2.0, 4.0]]}}, tile=32)
    assert coarse.predict("conv", 8, 40) == 4.0 and coarse.predict("conv", 8, 24) == 2.0


def test_narrow_layers_are_measured_at_the_widths_round_to_auto_keeps():
    model = small_cnn()  # conv2: 16 filters; at tile 16, round_to="auto" keeps multiples of 4
    (probe,) = [p for call, p in model_probes(ChannelGraph(model)) if call.layer.name == "conv2"]
    assert probe.grid(4, tile=16)[1] == [4, 8, 12, 16]


def test_round_to_auto_is_the_default_and_keeps_whole_tiles():
    model = small_cnn()  # conv2 and conv3: 16 filters, narrower than 4 tiles of 16
    pruned = tfprune.prune(model)
    assert {w.round_to for w in tfprune.wrappers_of(pruned)} == {"auto"}
    apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    assert [small.get_layer(n).filters % auto_multiple(16) for n in ("conv2", "conv3")] == [0, 0]
    table = LatencyTable.from_config({**flops_like_table(model).get_config(), "tile": 2})
    pruned = tfprune.prune(model, target="latency", latency_table=table)
    multiples = [family_multiple(w, 16) for w in tfprune.wrappers_of(pruned)]
    assert set(multiples) == {(2, True)}  # the table's tile: 16 filters are 8 tiles of 2
    assert family_multiple(tfprune.wrappers_of(tfprune.prune(model, round_to=4))[0], 16) == (
        4,
        False,
    )


def test_round_to_auto_goes_fine_on_the_narrow_layer_a_flops_target_needs():
    keras.utils.set_random_seed(0)
    model = digits_cnn()  # conv2 32 filters (multiples of 8), conv3 64 (multiples of 16)
    total = tfprune.count_flops(model)

    def shrunk(round_to):
        pruned = tfprune.prune(
            model,
            schedule=tfprune.OneShot(0.85),
            target="flops",
            ranking="global",
            round_to=round_to,
            protect=["conv1"],
        )
        apply_target(pruned, 0.85)
        small = tfprune.shrink(tfprune.strip(pruned))
        widths = [small.get_layer(n).filters for n in ("conv2", "conv3")]
        return 1 - tfprune.count_flops(small) / total, widths

    # Whole tiles remove at most 0.794 here (8 and 16 filters): 0.85 needs conv2 below 8.
    with pytest.raises(ValueError, match="at most 0.794"):
        shrunk({"conv2": 8, "conv3": 16})
    removed, (conv2, conv3) = shrunk("auto")
    assert abs(removed - 0.85) <= TOLERANCE and conv2 < 8
    assert conv3 % 16 == 0  # the wide layer keeps its tiles


def test_round_to_auto_trades_roundings_between_layers_to_reach_the_half_width_net():
    keras.utils.set_random_seed(0)
    model, half = digits_cnn(), digits_cnn(width=0.5)  # 16-32-64 and 8-16-32 filters
    removed = 1 - tfprune.count_flops(half) / tfprune.count_flops(model)
    pruned = tfprune.prune(
        model, schedule=tfprune.OneShot(removed), target="flops", ranking="global"
    )
    apply_target(pruned, removed)
    small = tfprune.shrink(tfprune.strip(pruned))
    # Rounded widest first, conv3 (23 filters by filter-by-filter ranking) went down to 16 and
    # conv1 (9) up to 12, 1.4 % off the target; conv1 down and conv3 up together hit it.
    widths = [small.get_layer(n).filters for n in ("conv1", "conv2", "conv3")]
    assert widths == [half.get_layer(n).filters for n in ("conv1", "conv2", "conv3")]
    assert tfprune.count_flops(small) == tfprune.count_flops(half)
