"""The README's quick start, on a tiny model: wrap -> fit -> strip -> export -> verify."""

import keras
import numpy as np
from helpers import build_network, network_plans, small_cnn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.masking.ranking import apply_target


def test_quick_start_end_to_end(tmp_path, data):
    keras.utils.set_random_seed(0)
    x, y = data
    pruned = tfprune.prune(
        small_cnn(),
        granularity="filter",
        criterion="l1",
        schedule=tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=12, frequency=4),
    )
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[tfprune.PruningCallback()])
    plain = tfprune.strip(pruned)
    path = tfprune.export_tflite(plain, tmp_path / "model.tflite")
    assert tfprune.verify_tflite(path, plain, x[:64]) <= 1e-4
    assert tfprune.benchmark_tflite(path, runs=10).median > 0
    summary = tfprune.summary(plain)
    rows = {r.name: r for r in summary.rows}
    assert rows["conv2"].filters_kept == 8 and rows["conv3"].filters_kept == 8
    assert summary.total["effective_flops"] < summary.total["flops"]


@given(
    plan=network_plans(),
    granularity=st.sampled_from(["filter", "unstructured"]),
    target=st.floats(0.1, 0.7),
    ranking=st.sampled_from(["local", "global"]),
)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_networks_strip_and_export_equal(
    tmp_path_factory, plan, granularity, target, ranking
):
    model = build_network(plan)
    pruned = tfprune.prune(
        model,
        granularity=granularity,
        schedule=tfprune.OneShot(target),
        ranking=ranking,
        protect=None,
    )
    apply_target(pruned, target)
    x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
    plain = tfprune.strip(pruned)
    assert np.abs(plain(x) - pruned(x)).max() <= 1e-5
    path = tfprune.export_tflite(plain, tmp_path_factory.mktemp("h") / "m.tflite")
    assert tfprune.verify_tflite(path, plain, x) <= 1e-4
