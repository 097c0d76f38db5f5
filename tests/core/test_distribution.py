"""is_chief: the chief task, else worker 0; alone, always."""

import json

import pytest

from tfprune.core.distribution import is_chief


def cluster(task_type, index, chief=False):
    jobs = {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}
    if chief:
        jobs["chief"] = ["127.0.0.1:2221"]
    return json.dumps({"cluster": jobs, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    "config, chief",
    [
        (cluster("worker", 0), True),
        (cluster("worker", 1), False),
        (cluster("worker", 0, chief=True), False),
        (cluster("chief", 0, chief=True), True),
        (cluster("evaluator", 0), False),
        ("", True),
        (json.dumps({"cluster": {}}), True),
    ],
    ids=["worker0", "worker1", "worker0-with-chief", "chief", "evaluator", "unset", "no-task"],
)
def test_chief_from_tf_config(monkeypatch, config, chief):
    monkeypatch.setenv("TF_CONFIG", config)
    assert is_chief() is chief


def test_a_strategy_without_a_cluster_is_its_own_chief(monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("TF_CONFIG", cluster("worker", 1))
    # MirroredStrategy has no cluster resolver: TF_CONFIG decides.
    assert is_chief(tf.distribute.get_strategy()) is False
    monkeypatch.delenv("TF_CONFIG")
    assert is_chief(tf.distribute.get_strategy()) is True
