"""Predicted LiteRT latency of a model at other layer widths: the latency table.

A FLOPs target treats every multiply-add alike; a phone does not. XNNPACK packs output
channels in tiles, so 24 filters can cost what 32 do, and a 1x1 convolution on a small map
costs more per FLOP than a 3x3 one on a large map. A `LatencyTable` holds what was measured:
for each *probe* (one layer type with its configuration and input size, its channel counts
left free) the LiteRT latency of that layer alone at a grid of input and output widths, in
microseconds. The latency of a model whose layers were narrowed is predicted as the sum of
its layers' entries, interpolated bilinearly between grid points, calibrated on the whole
model: `fixed_us + scale * sum`, with `scale` and `fixed_us` fitted so that the prediction
equals the measured latency of the model at full width and at half width. What the probes
leave out (pooling, additions, activations not fused) mostly grows with the channel counts
and goes into `scale`; what does not (the interpreter's own work, layers no probe covers) goes
into `fixed_us`.

The table is plain JSON, so one measured on a phone can be given instead of measuring here:

    {"format": "tfprune.latency/1",
     "device": {"machine": "...", "cpu": "...", "litert": "2.3.0", "threads": 1},
     "scale": 0.93, "fixed_us": 12.5, "tile": 8,
     "entries": {"<probe key>": {"in": [8, 16, 32], "out": [16, 32, 64],
                                 "us": [[...3 values...], [...], [...]]}}}

`tile` is the channel tile of the device's kernels (XNNPACK computes output channels in
blocks: 8 or 16 on AVX2 x86 machines, depending on the layer's shape, 32 on an AVX-512 one,
8 on ARM NEON): a prediction rounds
output widths up to whole tiles, and `prune(round_to="auto")` keeps whole tiles on wide
layers (`auto_multiple`). `us[i][j]` is the latency at input width
`in[i]` and output width `out[j]`; a depthwise layer, whose outputs follow its inputs, has
`"out": null` and one value per input width. A
probe key is `probe_of(...).key`, a JSON text naming the layer class, its configuration
without the channel counts, and its input shape with the channel axis written `"C"`.
`tfprune.measure_latency_table` (in `tfprune.methods`) measures and caches tables; this
module only reads and predicts, and never runs LiteRT.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import pathlib

import keras
import numpy as np

from tfprune.core import files
from tfprune.core.modelwalk import weights_owner
from tfprune.graph import channel_graph, reference
from tfprune.layers import registry
from tfprune.layers.spec import LayerSpec

FORMAT = "tfprune.latency/1"
#: The channel tile `round_to="auto"` keeps without a measured table. XNNPACK's float32
#: convolution and dense kernels compute 8 output channels at a time on ARM NEON and 8 or 16
#: on AVX2 x86 (16 measured for a 1x1 convolution at 32x32x64): multiples of 16 are whole
#: tiles on both. AVX-512 machines step every 32; a measured table says so.
DEFAULT_TILE = 16
#: `round_to="auto"` leaves a layer at least this many widths to choose from: a layer
#: narrower than `tile * AUTO_CHOICES` keeps multiples of a smaller power of two.
AUTO_CHOICES = 4
# Config entries that change neither the op LiteRT runs nor its cost.
_IGNORED = ("name", "trainable", "dtype", "seed")
_IGNORED_PARTS = ("initializer", "regularizer", "constraint")


def auto_multiple(n_units: int, tile: int = DEFAULT_TILE) -> int:
    """The multiple `round_to="auto"` keeps a layer of `n_units` filters at.

    Whole channel tiles where the layer is wide enough to keep `AUTO_CHOICES` widths of
    them; else the largest power of two that leaves it that many (a layer of 16 filters keeps
    multiples of 4), so that narrow layers stay prunable. Widths off the tile cost the whole
    tile in XNNPACK, so rounding up to the tile keeps filters at no cost in latency.

    Args:
        n_units: the layer's filters (or channel groups).
        tile: the device's channel tile (`LatencyTable.tile`). Defaults to `DEFAULT_TILE`.

    Returns:
        A power of two between 1 and `tile` (or `tile` itself, if it is not a power of two
        and the layer is wide enough).

    Example:

    >>> [auto_multiple(n) for n in (4, 16, 32, 64, 512)]
    [1, 4, 8, 16, 16]
    """
    if n_units >= tile * AUTO_CHOICES:
        return tile
    multiple = 1
    while multiple * 2 * AUTO_CHOICES <= n_units:
        multiple *= 2
    return multiple


@dataclasses.dataclass(frozen=True)
class Probe:
    """One layer as the latency table sees it: its type, configuration and input size, with
    its channel counts free.

    Attributes:
        key: the table key (a JSON text; equal for layers that cost the same at equal widths).
        layer_class: the layer's class.
        config: its configuration (name included), the widths set by `model`.
        input_shape: its input shape without the batch axis, at full width.
        in_width: the input channels at full width.
        out_width: the output channels at full width.
        config_key: the config entry of the output width, or `None` (depthwise).
        groups_key: the config entry that follows the input width (a grouped convolution
            written as a depthwise one), or `None`.
        coupled: outputs follow inputs (depthwise): the table has one axis.

    Example:

    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    >>> probe = probe_of(model.get_layer("conv"), inputs.shape, model.output.shape)
    >>> probe.in_width, probe.out_width, probe.model(2, 3).output.shape
    (3, 4, (1, 6, 6, 3))
    """

    key: str
    layer_class: type
    config: dict
    input_shape: tuple
    in_width: int
    out_width: int
    config_key: str | None
    groups_key: str | None
    coupled: bool

    def model(self, in_width: int, out_width: int) -> keras.Model:
        """A one-layer model of this probe at the given widths (batch 1), to measure.

        Args:
            in_width: input channels.
            out_width: output channels (ignored for a coupled probe, whose depth multiplier
                stays).

        Returns:
            A built `keras.Model` with fresh weights.
        """
        config = dict(self.config, name="probe")
        if self.groups_key:
            config[self.groups_key] = in_width
        if self.config_key:
            multiplier = self.out_width // self.in_width
            config[self.config_key] = in_width * multiplier if self.coupled else out_width
        inputs = keras.Input((*self.input_shape[:-1], in_width), batch_size=1)
        return keras.Model(inputs, self.layer_class.from_config(config)(inputs))

    def grid(self, steps: int, tile: int = 1) -> tuple[list[int], list[int] | None]:
        """The widths a table measures: `steps` evenly spaced up to full width on each axis,
        the channel axis a kernel tiles (outputs; a depthwise layer's only axis) rounded up
        to the multiples `round_to="auto"` keeps (`auto_multiple`): whole tiles on a wide
        layer, finer on a narrow one, whose widths inside a tile are then measured, not
        assumed (on AVX-512, 17-31 output channels cost more than 32).

        Args:
            steps: points per axis.
            tile: the device's channel tile (`LatencyTable.tile`). Defaults to 1.

        Returns:
            `(input widths, output widths)`; output widths are `None` for a coupled probe.
        """
        if self.coupled:
            return _widths(self.in_width, steps, auto_multiple(self.in_width, tile)), None
        outputs = _widths(self.out_width, steps, auto_multiple(self.out_width, tile))
        return _widths(self.in_width, steps, 1), outputs


def _widths(full: int, steps: int, tile: int) -> list[int]:
    widths = {max(1, int(round(full * k / steps))) for k in range(1, steps + 1)}
    return sorted({min(full, _whole_tiles(w, tile)) for w in widths})


def _whole_tiles(width: float, tile: int) -> int:
    return int(-(-width // tile) * tile)


def _plain(value):
    """A config value as JSON can hold it (dtype policies and the like become their text)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def covered(layer) -> bool:
    """Whether a latency table can hold a layer: see `probe_of`.

    Args:
        layer: a built layer (a `PruneWrapper` stands for the layer it wraps).

    Returns:
        True for convolutions, dense and depthwise layers, channels last.

    Example:

    >>> covered(keras.layers.Dense(4)), covered(keras.layers.MultiHeadAttention(2, 4))
    (True, False)
    """
    layer = weights_owner(layer)
    spec = registry.spec_for(layer)
    if not isinstance(spec, LayerSpec):
        return False
    if spec.units or spec.members or spec.states or spec.gates > 1:
        return False
    if getattr(layer, "data_format", None) == "channels_first":
        return False
    return spec.coupled or isinstance(spec.config_key, str)


def probe_of(layer, input_shape, output_shape) -> Probe | None:
    """The probe of one layer call, or `None` if the table does not cover the layer.

    Covered are the registry's channel producers whose width is a config entry (Conv1D-3D,
    Dense, EinsumDense as dense, transposed and separable convolutions...) and depthwise
    convolutions, channels last. Attention heads, recurrent layers, Bidirectional wrappers
    and layers of other types are not: they count in the table's `fixed_us`.

    Args:
        layer: the layer (a `PruneWrapper` stands for the layer it wraps).
        input_shape: the shape of its input in the model (unknown dimensions are taken at
            the reference size, `tfprune.reference_size()`).
        output_shape: the shape of its output (its last axis is the output width).

    Returns:
        A `Probe`, or `None`.

    Example:

    >>> dense = keras.layers.Dense(4)
    >>> dense.build((None, 6))
    >>> json.loads(probe_of(dense, (None, 6), (None, 4)).key)["layer"]
    'Dense'
    >>> probe_of(keras.layers.LSTM(4), (None, 5, 6), (None, 4)) is None  # a recurrent layer
    True
    """
    layer = weights_owner(layer)
    if not covered(layer):
        return None
    spec = registry.spec_for(layer)
    config = layer.get_config()
    shape = tuple(int(d) if d is not None else reference.reference_size() for d in input_shape)
    shape = shape[1:]
    in_width, out_width = shape[-1], int(output_shape[-1])
    width_keys = {spec.config_key, spec.groups_key}
    kept = {
        k: v
        for k, v in sorted(config.items())
        if k not in _IGNORED and k not in width_keys and not any(p in k for p in _IGNORED_PARTS)
    }
    key = json.dumps(
        {"layer": type(layer).__name__, "config": _plain(kept), "input": [*shape[:-1], "C"]},
        sort_keys=True,
    )
    return Probe(
        key,
        type(layer),
        config,
        shape,
        in_width,
        out_width,
        spec.config_key if isinstance(spec.config_key, str) else None,
        spec.groups_key,
        spec.coupled,
    )


def _interpolate(x: float, xs, ys) -> float:
    """Piecewise-linear through `(xs, ys)`, continued linearly past both ends, never below 0."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.size == 1:
        return max(float(ys[0] * x / xs[0]), 0.0)
    if x < xs[0]:
        value = ys[0] + (x - xs[0]) * (ys[1] - ys[0]) / (xs[1] - xs[0])
    elif x > xs[-1]:
        value = ys[-1] + (x - xs[-1]) * (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    else:
        value = np.interp(x, xs, ys)
    return max(float(value), 0.0)


@keras.saving.register_keras_serializable(package="tfprune")
class LatencyTable:
    """Measured LiteRT latency of layers at a grid of widths, and the predictions it gives.

    Build one with `tfprune.measure_latency_table(model)`, or load one measured elsewhere
    (a phone) with `LatencyTable.load(path)`; the JSON format is in this module's docstring.

    Args:
        entries: `{probe key: {"in": widths, "out": widths or None, "us": latencies}}`.
        scale: how the sum of the probes' latencies maps to the model's. Defaults to 1.
        fixed_us: the model's latency that no probe's width changes, in microseconds;
            negative where the probes alone overstate narrow layers. Defaults to 0.
        tile: the device's channel tile: kernels compute output channels (a depthwise
            layer's channels) in blocks of this many, so 17 channels cost what 24 do at 8.
            Predictions round those widths up to whole tiles. Defaults to 1.
        device: what the table was measured on (`machine`, `cpu`, `litert`, `threads`).
            Defaults to `None`: unknown.

    Raises:
        ValueError: for an entry whose latencies do not match its widths.

    Example:

    >>> key = '{"layer": "Dense"}'
    >>> table = LatencyTable({key: {"in": [4, 8], "out": [4, 8], "us": [[1, 2], [2, 4]]}})
    >>> table.predict(key, 6, 8)  # halfway between 2 and 4
    3.0
    """

    def __init__(
        self,
        entries: dict,
        scale: float = 1.0,
        device: dict | None = None,
        fixed_us: float = 0.0,
        tile: int = 1,
    ):
        self.entries = {}
        for key, entry in entries.items():
            ins, outs = list(entry["in"]), entry.get("out")
            us = np.asarray(entry["us"], float)
            expected = (len(ins),) if outs is None else (len(ins), len(outs))
            if us.shape != expected or not np.all(np.isfinite(us)) or np.any(us < 0):
                raise ValueError(
                    f"latency table entry {key}: 'us' must hold {expected} finite non-negative "
                    f"latencies for its widths, got shape {us.shape}."
                )
            self.entries[key] = {
                "in": [int(w) for w in ins],
                "out": None if outs is None else [int(w) for w in outs],
                "us": us.tolist(),
            }
        if not (isinstance(scale, int | float) and 0 < scale < float("inf")):
            raise ValueError(f"latency table: scale must be a positive number, got {scale!r}.")
        self.scale = float(scale)
        if not (isinstance(fixed_us, int | float) and np.isfinite(fixed_us)):
            raise ValueError(f"latency table: fixed_us must be a finite number, got {fixed_us!r}.")
        self.fixed_us = float(fixed_us)
        if not (isinstance(tile, int) and tile >= 1):
            raise ValueError(f"latency table: tile must be an integer >= 1, got {tile!r}.")
        self.tile = tile
        self.device = dict(device or {})
        self._fingerprint = None
        self._arrays = {}

    def predict(self, key: str, in_width: float, out_width: float) -> float:
        """The latency of one probe at the given widths, in microseconds.

        Args:
            key: a probe key (`Probe.key`).
            in_width: its input channels.
            out_width: its output channels (ignored for a depthwise entry).

        Returns:
            The interpolated latency.

        Raises:
            KeyError: if the table has no entry for `key`.
        """
        if key not in self.entries:
            raise KeyError(
                f"the latency table has no entry for {key}; measure the model with "
                "tfprune.measure_latency_table(model), or add the entry."
            )
        entry = self.entries[key]
        if key not in self._arrays:  # predictions run many times per mask update
            self._arrays[key] = np.asarray(entry["us"])
        us = self._arrays[key]
        if entry["out"] is None:
            return _interpolate(self._tiled(in_width, entry["in"]), entry["in"], us)
        out_width = self._tiled(out_width, entry["out"])
        column = [_interpolate(in_width, entry["in"], us[:, j]) for j in range(us.shape[1])]
        return _interpolate(out_width, entry["out"], column)

    def _tiled(self, width, grid) -> float:
        """The width whose cost `width` channels have: where the grid was measured at most a
        tile apart around `width`, the next measured width (a kernel's cost is a staircase,
        and the measured steps say where it rises); elsewhere whole tiles, up to the grid's
        last (full) width, which was measured with its own partial tile."""
        if width >= grid[-1]:
            return width
        above = next(g for g in grid if g >= width)
        below = max((g for g in grid if g < width), default=0)
        if above - below <= self.tile:
            return above
        return min(_whole_tiles(width, self.tile), grid[-1])

    def fingerprint(self) -> str:
        """A short hash of the table's contents: equal tables, equal fingerprints.

        Returns:
            16 hex digits.
        """
        if self._fingerprint is None:
            text = json.dumps(self.get_config(), sort_keys=True)
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self._fingerprint

    def get_config(self) -> dict:
        """The table as the JSON format holds it.

        Returns:
            A dict with `format`, `device`, `scale`, `fixed_us`, `tile` and `entries`.
        """
        # A copy: changing the dict must not change the table (or its fingerprint).
        return copy.deepcopy(
            {
                "format": FORMAT,
                "device": self.device,
                "scale": self.scale,
                "fixed_us": self.fixed_us,
                "tile": self.tile,
                "entries": self.entries,
            }
        )

    @classmethod
    def from_config(cls, config: dict) -> LatencyTable:
        """A table from `get_config()`'s dict (or the JSON file's contents).

        Args:
            config: the dict.

        Returns:
            A `LatencyTable`.

        Raises:
            ValueError: for a dict of another format.
        """
        if config.get("format") != FORMAT:
            raise ValueError(
                f"not a tfprune latency table: format {config.get('format')!r}, expected "
                f"{FORMAT!r} (see tfprune.graph.latency for the format)."
            )
        return cls(
            config["entries"],
            config.get("scale", 1.0),
            config.get("device"),
            config.get("fixed_us", 0.0),
            config.get("tile", 1),
        )

    def save(self, path) -> pathlib.Path:
        """Write the table as JSON, atomically.

        Args:
            path: the file to write.

        Returns:
            The path written.
        """
        return files.write_atomically(path, json.dumps(self.get_config(), indent=1))

    @classmethod
    def load(cls, path) -> LatencyTable:
        """Read a table written by `save` (or by hand, on another device).

        Args:
            path: the JSON file.

        Returns:
            A `LatencyTable`.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: if it is not a latency table in the documented format.

        Example:

        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "phone.json"
        >>> _ = LatencyTable({}, scale=1.25).save(path)
        >>> LatencyTable.load(path).scale
        1.25
        """
        try:
            config = json.loads(pathlib.Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not a latency table (not JSON: {error}).") from None
        if not isinstance(config, dict):
            raise ValueError(f"{path} is not a latency table (a JSON object is expected).")
        try:
            return cls.from_config(config)
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a valid latency table: {error!r}.") from None

    def __eq__(self, other):
        return isinstance(other, LatencyTable) and self.fingerprint() == other.fingerprint()

    def __hash__(self):
        return hash(self.fingerprint())

    def __repr__(self):
        return (
            f"LatencyTable({len(self.entries)} entries, scale={self.scale:.3f}, "
            f"fixed_us={self.fixed_us:.1f}, tile={self.tile})"
        )

    def probe_sum(self, model) -> float:
        """The sum of the table's entries over a model's layers at their widths, uncalibrated.

        Args:
            model: a plain model (or a pruned one: wrappers stand for their layers).

        Returns:
            Microseconds.

        Raises:
            KeyError: if a layer has no entry.
        """
        pairs = model_probes(channel_graph.ChannelGraph(model))
        return sum(self.predict(p.key, p.in_width, p.out_width) for _, p in pairs)

    def model_latency(self, model) -> float:
        """The predicted LiteRT latency of a model whose layers the table holds.

        Args:
            model: a plain model (for example a shrunk one).

        Returns:
            Microseconds: `fixed_us + scale * probe_sum(model)`, never below 0.

        Raises:
            KeyError: if a layer has no entry.

        Example:

        ```python
        table = tfprune.measure_latency_table(model)
        small = tfprune.shrink(tfprune.strip(pruned))
        table.model_latency(small) / table.model_latency(model)  # the latency ratio predicted
        ```
        """
        return calibrated(self, self.probe_sum(model))


def calibrated(table: LatencyTable, probe_sum: float) -> float:
    """A model's predicted latency from the sum of its probes: `fixed_us + scale * sum`,
    never below 0.

    Args:
        table: the `LatencyTable`.
        probe_sum: the sum of the table's entries over the model's layers.

    Returns:
        Microseconds.

    Example:

    >>> calibrated(LatencyTable({}, scale=2.0, fixed_us=-5.0), 10.0)
    15.0
    """
    return max(table.fixed_us + table.scale * probe_sum, 0.0)


def model_probes(graph) -> list[tuple[object, Probe]]:
    """Every layer call of a model the table covers, with its probe.

    Args:
        graph: the model's `ChannelGraph`.

    Returns:
        `(call, probe)` pairs in graph order, one per call (a layer shared by two calls has
        two, as it costs twice).

    Example:

    >>> from tfprune.graph.channel_graph import ChannelGraph
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    >>> [call.layer.name for call, _ in model_probes(ChannelGraph(model))]
    ['conv']
    """
    pairs = []
    for call in graph.calls():
        if not isinstance(call.rule, LayerSpec) or not call.inputs:
            continue
        shapes = [reference.concrete_shape(t) for t in (call.inputs[0], call.outputs[0])]
        probe = probe_of(call.layer, *shapes)
        if probe is not None:
            pairs.append((call, probe))
    return pairs
