"""Measuring a latency table in LiteRT: the grid, the cache, and a prediction that follows the
interpreter (loosely: the benchmark holds the real accuracy)."""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune.export.converter import convert
from tfprune.export.interpreter import interleaved_latencies
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.latency import auto_multiple, model_probes
from tfprune.methods.latency_table import cache_path, measure_latency_table, tile_of

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_latency_table")


def plain_cnn(width=32, size=16):
    """Layers wide enough that each costs tens of microseconds, far above invoke overhead."""
    inputs = keras.Input((size, size, 8))
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = plain_cnn()
    cache = tmp_path_factory.mktemp("latency-cache")
    return model, cache, measure_latency_table(model, steps=2, runs=20, cache_dir=cache, verbose=0)


def test_every_layer_is_measured_on_its_grid(measured):
    model, cache, table = measured
    probes = {p.key: p for _, p in model_probes(ChannelGraph(model))}
    assert set(table.entries) == set(probes)
    conv2 = table.entries[next(k for k, p in probes.items() if p.out_width == 64)]
    # conv1 and conv2 differ only in widths: one entry holds both grids.
    assert conv2["in"] == [4, 8, 16, 32] and {32, 64} <= set(conv2["out"])
    us = np.asarray(conv2["us"])
    assert np.all(us > 0) and np.all(np.diff(us, axis=0) >= 0) and np.all(np.diff(us, axis=1) >= 0)
    depthwise = table.entries[next(k for k, p in probes.items() if p.coupled)]
    assert depthwise["out"] is None and len(depthwise["us"]) == 2
    assert table.device["threads"] == 1 and table.device["litert"]
    assert table.scale > 0 and table.model_latency(model) > 0
    assert table.tile in (1, 2, 4, 8, 16, 32)
    # Output widths on the grid are the multiples round_to="auto" keeps (or the full width).
    multiple = auto_multiple(64, table.tile)
    assert all(w % multiple == 0 or w == 64 for w in conv2["out"])


def test_measured_points_are_cached_per_device(measured):
    model, cache, table = measured
    path = cache_path(1, cache)
    points = json.loads(path.read_text())["points"]
    probe_points = [k for k in points if not k.startswith("channel tile")]
    assert len(probe_points) == sum(np.asarray(e["us"]).size for e in table.entries.values())
    assert len(points) - len(probe_points) == 96  # the channel tile's staircase
    # A poisoned cache shows the second measurement reads it instead of timing anything.
    poisoned = {k: v if k.startswith("channel tile") else 1000.0 for k, v in points.items()}
    path.write_text(json.dumps({"device": {}, "points": poisoned}))
    again = measure_latency_table(model, steps=2, cache_dir=cache, verbose=0)
    assert all(np.all(np.asarray(e["us"]) == 1000.0) for e in again.entries.values())
    fresh = measure_latency_table(
        model, steps=2, runs=5, cache_dir=cache, cache=False, verbose=0, tile=table.tile
    )
    assert all(np.all(np.asarray(e["us"]) < 1000.0) for e in fresh.entries.values())
    assert cache_path(2, cache) != path  # another thread count is another device


def test_an_unreadable_cache_is_measured_again(tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    path = cache_path(1, tmp_path)
    path.write_text("{ half written")
    table = measure_latency_table(model, steps=2, runs=5, cache_dir=tmp_path, verbose=0, tile=8)
    assert len(table.entries) == 1 and json.loads(path.read_text())["points"]
    assert table.tile == 8  # given, so not measured: no staircase in the cache
    assert not any(k.startswith("channel tile") for k in json.loads(path.read_text())["points"])


def test_tile_of_reads_a_staircase_of_32_with_a_cheap_16():
    # The shape measured on an AVX-512 Xeon (1x1 convolution, 32x32x64, microseconds): one
    # cost up to 16 channels, 17-31 dearer than 32 itself, then a step every 32 channels.
    # Read only to 48 widths, it looked like a tile of 16, and widths of 48 cost what 64 do.
    def cost(c):
        return (
            18.0 if c <= 16 else 34.0 if c < 32 else 29.0 if c == 32 else 18.0 + 33 * (-(-c // 32))
        )

    staircase = {c: cost(c) for c in range(1, 97)}
    assert tile_of(staircase) == 32
    assert tile_of({c: staircase[c] for c in range(1, 49)}) == 16


def test_prediction_follows_litert_on_a_narrower_model(measured):
    model, _, table = measured
    narrow = plain_cnn(width=24)
    measured_s = interleaved_latencies([convert(narrow), convert(model)], rounds=7, runs=20)
    measured_ratio = measured_s[0] / measured_s[1]
    predicted_ratio = table.model_latency(narrow) / table.model_latency(model)
    assert predicted_ratio == pytest.approx(measured_ratio, rel=0.2)


def smooth(table):
    """`table`'s grids and channel tile with latencies proportional to the work (input times
    output width, or width for a depthwise layer): the measured table's numbers move from run
    to run, and with them which widths a latency target picks."""
    config = table.get_config()
    for entry in config["entries"].values():
        if entry["out"] is None:
            entry["us"] = [float(width) for width in entry["in"]]
        else:
            entry["us"] = [[float(i * o) for o in entry["out"]] for i in entry["in"]]
    return tfprune.LatencyTable.from_config({**config, "scale": 1.0, "fixed_us": 0.0, "tile": 16})


def test_latency_target_prunes_shrinks_and_exports(measured, tmp_path):
    model, _, measured_table = measured
    table = smooth(measured_table)
    pruned = tfprune.prune(
        model, target="latency", latency_table=table, schedule=tfprune.OneShot(0.4)
    )
    pruned.compile("adam", "mse")
    x = np.random.rand(8, 16, 16, 8).astype("float32")
    pruned.fit(x, np.zeros((8, 4)), verbose=0, callbacks=[tfprune.PruningCallback()])
    masked = tfprune.strip(pruned)
    small = tfprune.shrink(masked)
    (plan,) = tfprune.pruning_plans(pruned)
    removed = 1 - table.model_latency(small) / table.model_latency(model)
    assert removed == pytest.approx(plan.removed(), abs=1e-9)
    # Whole tiles of 16 remove 0.226 (32, 48), 0.439 (16, 64) or 0.451 (32, 32) of this tiny
    # model's latency, none within 2 % of 0.4: conv1 goes down to single filters, and the
    # wide conv2 keeps whole tiles.
    assert removed == pytest.approx(0.4, abs=0.02)
    conv1, conv2 = [small.get_layer(name).filters for name in ("conv1", "conv2")]
    assert conv2 % 16 == 0 and conv1 % 16 != 0 and conv1 >= 16  # at least half the first conv
    np.testing.assert_allclose(small(x), masked(x), atol=1e-5)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x[:1]) <= 1e-4


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="steps"):
        measure_latency_table(plain_cnn(), steps=1)
    with pytest.raises(ValueError, match="tile"):
        measure_latency_table(plain_cnn(), tile=0)
    with pytest.raises(TypeError, match="measure_latency_table"):
        measure_latency_table("model.keras")


def test_layers_sharing_a_key_share_one_grid_covering_both(measured):
    _, cache, _ = measured  # its channel tile is measured already
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(12, name="fc"), keras.layers.Dense(3, name="out")]
    )
    (entry,) = measure_latency_table(
        model, steps=2, runs=5, cache_dir=cache, verbose=0
    ).entries.values()
    assert {3, 6, 12} == set(entry["in"]) and {3, 12} <= set(entry["out"])
