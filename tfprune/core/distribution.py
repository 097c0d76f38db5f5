"""Which process of a multi-worker job is the chief: the one that writes files.

Read from the `tf.distribute` strategy's cluster resolver when there is one, otherwise
from `TF_CONFIG`, without importing TensorFlow (the strategy is passed in).
"""

from __future__ import annotations

import json
import os


def _task_from_tf_config() -> tuple[dict, str | None, int | None]:
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    return config.get("cluster") or {}, task.get("type"), task.get("index")


def is_chief(strategy=None) -> bool:
    """Whether this process is the chief of its training cluster (or alone).

    In a `tf.distribute.MultiWorkerMirroredStrategy` job every worker runs the same script;
    only one of them should write checkpoints, exports and reports, or the workers
    overwrite each other's files. As in TensorFlow's own convention, the chief is the
    `"chief"` task if the cluster has one, otherwise worker 0; evaluators never are.

    Args:
        strategy: the job's `tf.distribute.Strategy` (its cluster resolver says which
            task this is), or `None` to read `TF_CONFIG`. Defaults to `None`.

    Returns:
        `True` on the chief, and in a single-process job.

    Example:

    >>> import json, os
    >>> os.environ["TF_CONFIG"] = json.dumps({
    ...     "cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
    ...     "task": {"type": "worker", "index": 1}})
    >>> is_chief()
    False
    >>> del os.environ["TF_CONFIG"]
    >>> is_chief()
    True
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type is not None:
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id
    else:
        cluster, task_type, task_id = _task_from_tf_config()
    if not cluster or task_type is None:
        return True
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and int(task_id or 0) == 0
