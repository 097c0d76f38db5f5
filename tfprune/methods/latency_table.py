"""Measuring a latency table on this machine: each layer alone in LiteRT, at a grid of widths.

`measure_latency_table(model)` finds the model's probes (`tfprune.graph.latency`), builds
each as a one-layer model at every grid point, converts it with the same converter as
`export_tflite` and times it in the LiteRT interpreter (XNNPACK, batch 1). Points are cached
on disk, keyed by the device (machine, CPU model, LiteRT version, threads), so a second model
with the same layer shapes, or the same model again, measures only what is new. The whole
model is timed once too, which calibrates the table (`LatencyTable.scale`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import os
import pathlib
import platform

import keras
import numpy as np

from tfprune.core import checks, files
from tfprune.export.converter import convert
from tfprune.export.interpreter import interleaved_latencies
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.latency import LatencyTable, model_probes
from tfprune.masking.strip import strip
from tfprune.masking.wrappers import wrappers_of

CACHE_ENV = "TFPRUNE_CACHE_DIR"
_TURNS = 5  # a point's invokes come in this many turns with the other points of its probe


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def device(threads: int = 1) -> dict:
    """What a latency measurement depends on besides the layer: this machine and LiteRT.

    Args:
        threads: interpreter threads. Defaults to 1.

    Returns:
        `{"machine", "cpu", "litert", "threads"}`.

    Example:

    >>> sorted(device())
    ['cpu', 'litert', 'machine', 'threads']
    """
    return {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "litert": importlib.metadata.version("ai-edge-litert"),
        "threads": threads,
    }


def cache_path(threads: int = 1, cache_dir=None) -> pathlib.Path:
    """The file that caches measured points for this device.

    Args:
        threads: interpreter threads. Defaults to 1.
        cache_dir: the cache directory. Defaults to `None`: `$TFPRUNE_CACHE_DIR`, else
            `~/.cache/tfprune`.

    Returns:
        The path (it need not exist yet).

    Example:

    >>> cache_path(cache_dir="/tmp/c").name.startswith("latency-")
    True
    """
    root = cache_dir or os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "tfprune"
    digest = hashlib.sha256(json.dumps(device(threads), sort_keys=True).encode()).hexdigest()
    return pathlib.Path(root) / f"latency-{digest[:16]}.json"


def _read_cache(path: pathlib.Path) -> dict:
    """The cached points, or none if the file is missing or unreadable (it is rebuilt)."""
    try:
        points = json.loads(path.read_text()).get("points", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: float(v) for k, v in points.items() if isinstance(v, int | float)}


def _monotone(us) -> list:
    """Latencies made non-decreasing in each width: a wider layer never runs faster, so a
    point below its narrower neighbour is measurement noise and takes that neighbour's value."""
    values = np.asarray(us, float)
    for axis in range(values.ndim):
        values = np.maximum.accumulate(values, axis=axis)
    return values.tolist()


def _point(key: str, in_width: int, out_width: int | None) -> str:
    return f"{key}|{in_width}|{out_width}"


def measure_latency_table(
    model,
    threads: int = 1,
    steps: int = 4,
    runs: int = 50,
    cache_dir=None,
    cache: bool = True,
    verbose: int = 1,
) -> LatencyTable:
    """Measure the LiteRT latency of every prunable layer of `model` at a grid of widths.

    Each layer alone (with its configuration and input size) is converted and timed at
    `steps` input widths times `steps` output widths, evenly spaced up to its full widths
    (`steps` points for a depthwise layer); the whole model is timed once, so that the
    table's prediction at full width is the measured latency. Give the result to
    `tfprune.prune(model, target="latency", latency_table=table)`.

    Args:
        model: a built Keras 3 model (a pruned one is stripped first; it is not modified).
        threads: LiteRT interpreter threads, as the app will run it. Defaults to 1.
        steps: grid points per width axis (at least 2). Defaults to 4.
        runs: timed invokes per point, in turns with the probe's other points; their
            median counts. Defaults to 50.
        cache_dir: where measured points are cached. Defaults to `None`:
            `$TFPRUNE_CACHE_DIR`, else `~/.cache/tfprune`.
        cache: read and write the cache. Defaults to True.
        verbose: 1 shows a progress bar, 0 nothing. Defaults to 1.

    Returns:
        A `tfprune.LatencyTable` with one entry per distinct probe, calibrated on the model.

    Raises:
        TypeError: for a model tfprune cannot read (see `tfprune.prune`).
        ValueError: for steps < 2, runs < 1 or threads < 1.

    Example:

    ```python
    table = tfprune.measure_latency_table(model)  # about 2 s per distinct layer shape
    table.save("latency_table.json")
    pruned = tfprune.prune(model, target="latency", latency_table=table,
                           schedule=tfprune.PolynomialDecay(0.0, 0.5, 0, 1000))
    ```
    """
    checks.check_model(model, "measure_latency_table")
    checks.check_integer("steps", steps, minimum=2)
    checks.check_integer("threads", threads, minimum=1)
    checks.check_integer("runs", runs, minimum=1)
    plain = strip(model) if wrappers_of(model) else model
    pairs = model_probes(ChannelGraph(plain))
    # Layers of one key at other widths (two Dense layers) share an entry on all their grids.
    grids = {}
    for _, probe in pairs:
        ins, outs = probe.grid(steps)
        known = grids.setdefault(probe.key, (probe, set(), None if outs is None else set()))
        known[1].update(ins)
        if outs is not None:
            known[2].update(outs)
    grids = {k: (p, sorted(i), None if o is None else sorted(o)) for k, (p, i, o) in grids.items()}
    path = cache_path(threads, cache_dir)
    points = _read_cache(path) if cache else {}
    missing = {}  # probe key -> [(probe, input width, output width)] not in the cache
    for probe, ins, outs in grids.values():
        for in_width, out_width in itertools.product(ins, outs or [None]):
            if _point(probe.key, in_width, out_width) not in points:
                missing.setdefault(probe.key, []).append((probe, in_width, out_width))
    progress = keras.utils.Progbar(
        sum(map(len, missing.values())) + 1, verbose=verbose, unit_name="probe"
    )
    turns = max(1, runs // _TURNS)

    def medians_us(flatbuffers) -> list[float]:
        return [t * 1e6 for t in interleaved_latencies(flatbuffers, threads, _TURNS, turns)]

    done = 0
    for batch in missing.values():
        # One probe's points are timed in turns: drift on a shared machine then moves them
        # together and leaves the shape of the entry alone.
        flatbuffers = [convert(p.model(i, o or i)) for p, i, o in batch]
        for (probe, in_width, out_width), value in zip(batch, medians_us(flatbuffers)):
            points[_point(probe.key, in_width, out_width)] = value
        done += len(batch)
        progress.update(done)
    if cache and missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(path, json.dumps({"device": device(threads), "points": points}))
    entries = {}
    for probe, ins, outs in grids.values():
        if outs is None:
            us = [points[_point(probe.key, i, None)] for i in ins]
        else:
            us = [[points[_point(probe.key, i, o)] for o in outs] for i in ins]
        entries[probe.key] = {"in": ins, "out": outs, "us": _monotone(us)}
    table = LatencyTable(entries, 1.0, device(threads))
    (whole,) = medians_us([convert(plain)])
    progress.update(done + 1)
    covered = sum(table.predict(p.key, p.in_width, p.out_width) for _, p in pairs)
    return LatencyTable(entries, whole / covered if covered > 0 else 1.0, device(threads))
