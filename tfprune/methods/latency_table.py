"""Measuring a latency table on this machine: each layer alone in LiteRT, at a grid of widths.

`measure_latency_table(model)` finds the model's probes (`tfprune.graph.latency`), builds
each as a one-layer model at every grid point, converts it with the same converter as
`export_tflite` and times it in the LiteRT interpreter (XNNPACK, batch 1). Points are cached
on disk, keyed by the device (machine, CPU model, LiteRT version, threads), so a second model
with the same layer shapes, or the same model again, measures only what is new. The whole
model is timed too, at full and at half width, which calibrates the table
(`LatencyTable.scale`, `LatencyTable.fixed_us`).
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
from tfprune.masking.prune import prune
from tfprune.masking.ranking import apply_target
from tfprune.masking.schedules import OneShot
from tfprune.masking.strip import strip
from tfprune.masking.wrappers import wrappers_of
from tfprune.shrinking.shrink import shrink

CACHE_ENV = "TFPRUNE_CACHE_DIR"
_TURNS = 5  # a point's invokes come in this many turns with the other points of its probe
_TILE_KEY = "channel tile"
# Two tiles of the widest candidate and one more: AVX-512 kernels step every 32 channels.
_TILE_PROBE_WIDTH = 96
_TILE_PROBE_INPUT = 64
_TILE_FLAT = 0.25  # inside a tile latency rises by noise only, far less than between tiles
_FLOOR_US = 0.01  # a layer costs something, however close to the invoke overhead it times


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
    tile: int | None = None,
) -> LatencyTable:
    """Measure the LiteRT latency of every prunable layer of `model` at a grid of widths.

    Each layer alone (with its configuration and input size) is converted and timed at
    `steps` input widths times `steps` output widths, evenly spaced up to its full widths
    (`steps` points for a depthwise layer), less the cost of invoking a one-op model; the
    whole model is timed at full width and with half of every layer's filters removed, and
    the table is calibrated so that it predicts both. Give the result to
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
        tile: the channel tile of the device's kernels, if known (`LatencyTable.tile`).
            Defaults to `None`: measured once per device from a 1x1 convolution (cached).

    Returns:
        A `tfprune.LatencyTable` with one entry per distinct probe, calibrated on the model.

    Raises:
        TypeError: for a model tfprune cannot read (see `tfprune.prune`).
        ValueError: for steps < 2, runs, threads or tile < 1.

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
    if tile is not None:
        checks.check_integer("tile", tile, minimum=1)
    plain = strip(model) if wrappers_of(model) else model
    pairs = model_probes(ChannelGraph(plain))
    path = cache_path(threads, cache_dir)
    points = _read_cache(path) if cache else {}
    cached = len(points)
    turns = max(1, runs // _TURNS)

    def medians_us(flatbuffers) -> list[float]:
        return [t * 1e6 for t in interleaved_latencies(flatbuffers, threads, _TURNS, turns)]

    tile = tile or _channel_tile(points, medians_us)
    # Layers of one key at other widths (two Dense layers) share an entry on all their grids.
    grids = {}
    for _, probe in pairs:
        ins, outs = probe.grid(steps, tile)
        known = grids.setdefault(probe.key, (probe, set(), None if outs is None else set()))
        known[1].update(ins)
        if outs is not None:
            known[2].update(outs)
    grids = {k: (p, sorted(i), None if o is None else sorted(o)) for k, (p, i, o) in grids.items()}
    missing = {}  # probe key -> [(probe, input width, output width)] not in the cache
    for probe, ins, outs in grids.values():
        for in_width, out_width in itertools.product(ins, outs or [None]):
            if _point(probe.key, in_width, out_width) not in points:
                missing.setdefault(probe.key, []).append((probe, in_width, out_width))
    progress = keras.utils.Progbar(
        sum(map(len, missing.values())) + 1, verbose=verbose, unit_name="probe"
    )
    done = 0
    # A one-op model: what invoking a model costs, whatever it computes. Each probe pays it
    # once, the whole model once, so it is taken off every point.
    empty = convert(keras.Sequential([keras.Input((1,), batch_size=1), keras.layers.ReLU()]))
    for batch in missing.values():
        # One probe's points are timed in turns (with the empty model): drift on a shared
        # machine then moves them together and leaves the shape of the entry alone.
        flatbuffers = [convert(p.model(i, o or i)) for p, i, o in batch]
        *values, overhead = medians_us([*flatbuffers, empty])
        for (probe, in_width, out_width), value in zip(batch, values):
            points[_point(probe.key, in_width, out_width)] = max(value - overhead, _FLOOR_US)
        done += len(batch)
        progress.update(done)
    if cache and len(points) > cached:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(path, json.dumps({"device": device(threads), "points": points}))
    entries = {}
    for probe, ins, outs in grids.values():
        if outs is None:
            us = [points[_point(probe.key, i, None)] for i in ins]
        else:
            us = [[points[_point(probe.key, i, o)] for o in outs] for i in ins]
        entries[probe.key] = {"in": ins, "out": outs, "us": _monotone(us)}
    raw = LatencyTable(entries, 1.0, device(threads), 0.0, tile)
    half = _half_width(plain)
    models = [plain] if half is None else [plain, half]
    measured = medians_us([convert(m) for m in models])
    progress.update(done + 1)
    scale, fixed = _calibration(measured, [raw.probe_sum(m) for m in models])
    return LatencyTable(entries, scale, device(threads), fixed, tile)


def _channel_tile(points: dict, medians_us) -> int:
    """The output-channel tile of this device's convolution kernels, from a 1x1 convolution
    timed at 1 to 96 output channels (cached with the points); see `tile_of`."""
    widths = range(1, _TILE_PROBE_WIDTH + 1)
    keys = [_point(_TILE_KEY, _TILE_PROBE_INPUT, c) for c in widths]
    if not all(key in points for key in keys):
        inputs = keras.Input((32, 32, _TILE_PROBE_INPUT), batch_size=1)
        models = [keras.Model(inputs, keras.layers.Conv2D(c, 1)(inputs)) for c in widths]
        for key, value in zip(keys, medians_us([convert(m) for m in models])):
            points[key] = value
    return tile_of({c: points[key] for c, key in zip(widths, keys)})


def tile_of(latency: dict) -> int:
    """The channel tile a kernel's latency staircase shows.

    Within a tile every width costs the same, and the cost rises from one tile to the next:
    a tile `t` is accepted if, over the blocks of `t` widths after the first, the median rise
    inside a block is under a quarter of the median rise between blocks. The largest
    accepted tile of 2, 4, 8, 16 and 32 is the answer (the staircase needs two blocks of a
    candidate after the first: 96 widths for 32).

    Args:
        latency: `{output channels: latency}` for 1, 2, ... channels.

    Returns:
        The tile (1 if none is accepted).

    Example:

    >>> tile_of({c: float(-(-c // 8)) for c in range(1, 49)})  # a step every 8 channels
    8
    >>> tile_of({c: float(-(-c // 32)) for c in range(1, 97)})  # AVX-512: every 32
    32
    >>> tile_of({c: float(c) for c in range(1, 49)})  # every channel costs
    1
    """
    top = max(latency)
    accepted = [1]
    for candidate in (2, 4, 8, 16, 32):
        starts = range(candidate + 1, top - candidate + 2, candidate)
        inside = [latency[s + candidate - 1] - latency[s] for s in starts]
        between = [
            latency[s + candidate] - latency[s + candidate - 1]
            for s in starts
            if s + candidate <= top
        ]
        if between and np.median(between) > 0:
            if np.median(inside) < _TILE_FLAT * np.median(between):
                accepted.append(candidate)
    return max(accepted)


def _half_width(model):
    """The model with half of every prunable layer's filters removed (what `shrink` builds),
    or `None` if nothing in it prunes: the second point that calibrates a table."""
    try:
        pruned = prune(model, schedule=OneShot(0.5), protect=None)
    except ValueError:
        return None
    apply_target(pruned, 0.5)
    return shrink(strip(pruned))


def _calibration(measured, sums) -> tuple[float, float]:
    """`(scale, fixed_us)` with `fixed_us + scale * sum` through the measured points: the
    line through both (full and half width; `fixed_us` is negative where the probes alone
    overstate narrow layers), or through the first and zero with one point, or when the line
    would leave less than a tenth of the full model's latency at zero width (noise)."""
    if len(sums) == 2 and sums[0] > sums[1]:
        scale = (measured[0] - measured[1]) / (sums[0] - sums[1])
        fixed = measured[0] - scale * sums[0]
        if scale > 0 and fixed > -0.9 * measured[0]:
            return scale, fixed
    return (measured[0] / sums[0], 0.0) if sums[0] > 0 else (1.0, 0.0)
