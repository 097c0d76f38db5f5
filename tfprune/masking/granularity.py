"""How a score tensor becomes a mask: filters, single weights, N:M groups or blocks.

A granularity cuts a weight into *units* (a filter, a weight, a block) that are kept or
pruned as a whole. Weights are handled in the canonical `(filters, spatial, inputs)` view
that `LayerSpec.to_canonical` gives, so one implementation serves every layer type.
"""

from __future__ import annotations

import math
import re

import numpy as np


class Granularity:
    """Base class: the unit of pruning.

    Subclasses define `units` (a `(n_units, unit_size)` view of a canonical array) and its
    inverse `expand`. Masks never regrow: units pruned before stay pruned.

    Example:

    >>> spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0)  # a Dense kernel
    >>> weight = np.array([[1.0, -4.0, 0.5], [1.0, 2.0, -0.5]])  # 2 inputs, 3 filters
    >>> get("filter").mask(np.abs(weight), np.ones_like(weight), sparsity=0.34, spec=spec)
    array([[1., 1., 0.],
           [1., 1., 0.]], dtype=float32)
    """

    #: Whether a pruned unit is a whole output channel, so the bias follows the mask.
    structured = False
    #: Whether units of different layers can be ranked against each other.
    supports_global = True

    # Equal when they name the same pattern: a granularity restored from a file is a copy.
    def __eq__(self, other):
        return isinstance(other, Granularity) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def check(self, layer_name: str, shape, spec) -> None:
        """Raise ValueError if this granularity cannot apply to a weight of `shape`."""

    def units(self, canonical: np.ndarray) -> np.ndarray:
        """Return `canonical` regrouped as `(n_units, unit_size)`."""
        raise NotImplementedError

    def expand(self, unit_keep: np.ndarray, canonical_shape) -> np.ndarray:
        """Broadcast a per-unit keep vector back to the canonical shape."""
        raise NotImplementedError

    def unit_scores(self, scores: np.ndarray, spec) -> np.ndarray:
        """Sum element scores of a weight into one score per unit."""
        return self.units(spec.to_canonical(scores)).sum(axis=1)

    def unit_elements(self, canonical_shape) -> int:
        """Number of weights in one unit of a canonical `(filters, spatial, inputs)` shape."""
        return 1

    def unit_size(self, shape, spec) -> int:
        """Number of weights in one unit of a weight of `shape`."""
        return self.unit_elements(spec.canonical_shape(shape))

    def unit_count(self, canonical_shape) -> int:
        """Number of units in a canonical `(filters, spatial, inputs)` shape."""
        return math.prod(canonical_shape) // self.unit_elements(canonical_shape)

    def pruned_units(self, mask: np.ndarray, spec) -> np.ndarray:
        """Boolean vector: which units are already fully pruned in `mask`."""
        return self.units(spec.to_canonical(mask)).max(axis=1) == 0

    def kept_units(
        self, n_units: int, n_prune: int, n_already: int, min_filters: int, round_to: int
    ) -> int:
        """How many units stay when `n_prune` are asked to go and `n_already` are gone.

        The safeguards: at least one unit (and `min_filters` filters) stays, filter
        counts round up to a multiple of `round_to`, and pruned units never come back.

        Args:
            n_units: the layer's units.
            n_prune: how many are asked to go.
            n_already: how many are pruned already.
            min_filters: the fewest filters a structured mask keeps.
            round_to: structured masks keep a multiple of this many filters.

        Returns:
            The number of units kept.
        """
        keep = max(n_units - n_prune, 1, min_filters if self.structured else 1)
        if self.structured and round_to > 1:
            keep = math.ceil(keep / round_to) * round_to
        return max(1, min(keep, n_units - n_already))

    def pruned_fraction(
        self, n_units: int, sparsity: float, n_already: int, min_filters=1, round_to=1
    ) -> float:
        """Fraction of a layer's weights that `mask(sparsity=...)` would prune."""
        n_prune = int(math.floor(sparsity * n_units + 1e-9))
        return 1.0 - self.kept_units(n_units, n_prune, n_already, min_filters, round_to) / n_units

    def mask_pruning(self, scores, previous_mask, n_prune: int, spec, min_filters=1, round_to=1):
        """Mask that prunes the `n_prune` lowest-scoring units (within the safeguards).

        Args:
            scores: element scores, the weight's shape (higher = more important).
            previous_mask: the current mask; its pruned units stay pruned.
            n_prune: how many units to prune.
            spec: the layer's `LayerSpec`.
            min_filters: the fewest filters a structured mask keeps. Defaults to 1.
            round_to: structured masks keep a multiple of this many filters. Defaults to 1.

        Returns:
            A float32 mask of the weight's shape, 1 = kept.
        """
        unit_scores = self.unit_scores(np.asarray(scores, np.float64), spec)
        already = self.pruned_units(previous_mask, spec)
        n_units = unit_scores.size
        keep = self.kept_units(n_units, n_prune, int(already.sum()), min_filters, round_to)
        # Units pruned before rank lowest, so they stay pruned; a stable sort breaks ties by index.
        order = np.argsort(np.where(already, -np.inf, unit_scores), kind="stable")
        unit_keep = np.ones(n_units, bool)
        unit_keep[order[: n_units - keep]] = False
        canonical_shape = spec.to_canonical(previous_mask).shape
        return spec.from_canonical(
            self.expand(unit_keep, canonical_shape), previous_mask.shape
        ).astype(np.float32)

    def mask(self, scores, previous_mask, sparsity: float, spec, min_filters=1, round_to=1):
        """Mask that prunes a `sparsity` fraction of this layer's units.

        Args:
            scores: element scores, the weight's shape.
            previous_mask: the current mask.
            sparsity: fraction of units to prune, in [0, 1).
            spec: the layer's `LayerSpec`.
            min_filters: the fewest filters a structured mask keeps. Defaults to 1.
            round_to: structured masks keep a multiple of this many filters. Defaults to 1.

        Returns:
            A float32 mask of the weight's shape.
        """
        n_units = self.unit_scores(np.asarray(scores), spec).size
        n_prune = int(math.floor(sparsity * n_units + 1e-9))
        return self.mask_pruning(scores, previous_mask, n_prune, spec, min_filters, round_to)


class Filter(Granularity):
    """Whole output channels: the granularity that `shrink` turns into smaller layers.

    Example:

    >>> get("filter")
    Filter()
    """

    structured = True

    def units(self, canonical):
        return canonical.reshape(canonical.shape[0], -1)

    def unit_elements(self, canonical_shape):
        return canonical_shape[1] * canonical_shape[2]

    def pruned_units(self, mask, spec):
        if spec.gates > 1:
            return super().pruned_units(mask, spec)
        # Reduced in place over the other axes: no transposed copy of a large mask.
        ndim = np.ndim(mask)
        filter_axes = [a % ndim for a in spec.filter_axes]
        others = tuple(a for a in range(ndim) if a not in filter_axes)
        alive = np.max(mask, axis=others) if others else np.asarray(mask)
        if filter_axes != sorted(filter_axes):
            alive = np.transpose(alive, np.argsort(np.argsort(filter_axes)))
        return alive.reshape(-1) == 0

    def expand(self, unit_keep, canonical_shape):
        return np.broadcast_to(unit_keep[:, None, None], canonical_shape)

    def __str__(self):
        return "filter"

    def __repr__(self):
        return "Filter()"


class Unstructured(Granularity):
    """Single weights (magnitude pruning in the style of tfmot).

    Example:

    >>> spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0)
    >>> weight = np.array([[0.1, -2.0], [3.0, 0.2]])
    >>> Unstructured().mask(np.abs(weight), np.ones_like(weight), sparsity=0.5, spec=spec)
    array([[0., 1.],
           [1., 0.]], dtype=float32)
    """

    def units(self, canonical):
        return canonical.reshape(-1, 1)

    def expand(self, unit_keep, canonical_shape):
        return unit_keep.reshape(canonical_shape)

    def __str__(self):
        return "unstructured"

    def __repr__(self):
        return "Unstructured()"


def _require_input_axis(kind: str, layer_name: str, shape, spec, size: int) -> None:
    if spec.input_axis is None:
        raise ValueError(
            f"Layer '{layer_name}': {kind} pruning runs along input channels, and this layer type "
            "has none (depthwise convolutions). Exclude it with `exclude=[...]` or use "
            "granularity='filter'."
        )
    if shape[spec.input_axis] % size:
        raise ValueError(
            f"Layer '{layer_name}': {kind} pruning needs its {shape[spec.input_axis]} input "
            f"channels{' (inputs and recurrent units together)' if spec.joined else ''} to be a "
            f"multiple of {size}. Exclude this layer with "
            f"`exclude=['{layer_name}']`."
        )


class NM(Granularity):
    """N:M sparsity: at most `n` nonzeros in every `m` consecutive input channels.

    Groups run along the input-channel axis, innermost in TFLite's layout. A schedule that
    is still ramping up prunes `round(sparsity * m)` weights per group; its final sparsity
    must be `1 - n / m`.

    Args:
        n: weights kept per group. Defaults to 2.
        m: group size. Defaults to 4.

    Raises:
        ValueError: unless `0 < n < m` are integers.

    Example:

    >>> spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0)
    >>> weight = np.array([[4.0], [1.0], [3.0], [2.0]])  # one filter reading 4 inputs
    >>> NM(2, 4).mask(np.abs(weight), np.ones_like(weight), sparsity=0.5, spec=spec).ravel()
    array([1., 0., 1., 0.], dtype=float32)
    """

    supports_global = False

    def __init__(self, n: int = 2, m: int = 4):
        if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
            raise ValueError(f"N:M granularity needs integers 0 < n < m, got n={n!r}, m={m!r}.")
        self.n, self.m = n, m

    def check(self, layer_name, shape, spec):
        _require_input_axis(f"{self}", layer_name, shape, spec, self.m)

    def units(self, canonical):
        return canonical.reshape(-1, 1)

    def expand(self, unit_keep, canonical_shape):
        return unit_keep.reshape(canonical_shape)

    def _per_group(self, sparsity):
        return min(int(round(sparsity * self.m)), self.m - self.n)

    def pruned_fraction(self, n_units, sparsity, n_already, min_filters=1, round_to=1):
        return max(self._per_group(sparsity) / self.m, n_already / n_units)

    def mask(self, scores, previous_mask, sparsity, spec, min_filters=1, round_to=1):
        per_group = self._per_group(sparsity)
        groups = spec.to_canonical(np.asarray(scores, np.float64)).reshape(-1, self.m)
        previous = spec.to_canonical(previous_mask).reshape(-1, self.m)
        ranked = np.argsort(np.where(previous == 0, -np.inf, groups), axis=1, kind="stable")
        keep = np.ones_like(groups, bool)
        np.put_along_axis(keep, ranked[:, :per_group], False, axis=1)
        keep &= previous != 0
        canonical_shape = spec.to_canonical(previous_mask).shape
        return spec.from_canonical(keep.reshape(canonical_shape), previous_mask.shape).astype(
            np.float32
        )

    def __str__(self):
        return f"{self.n}:{self.m}"

    def __repr__(self):
        return f"NM(n={self.n}, m={self.m})"


class Block(Granularity):
    """Blocks of `rows` output channels x `cols` consecutive input channels.

    `Block(1, 4)` is the 1x4 pattern that TFLite's sparse FULLY_CONNECTED kernel runs
    (1x16 for int8).

    Args:
        rows: block height along the filter axis. Defaults to 1.
        cols: block width along the input-channel axis. Defaults to 4.

    Raises:
        ValueError: unless both are positive integers.

    Example:

    >>> spec = tfprune.layers.LayerSpec("kernel", filter_axes=(-1,), input_axis=0)
    >>> weight = np.concatenate([np.full((4, 1), 0.1), np.full((4, 1), 1.0)])  # 8 inputs
    >>> Block(1, 4).mask(np.abs(weight), np.ones_like(weight), sparsity=0.5, spec=spec).ravel()
    array([0., 0., 0., 0., 1., 1., 1., 1.], dtype=float32)
    """

    def __init__(self, rows: int = 1, cols: int = 4):
        if not (isinstance(rows, int) and isinstance(cols, int) and rows > 0 and cols > 0):
            raise ValueError(
                f"Block granularity needs positive integers, got rows={rows!r}, cols={cols!r}."
            )
        self.rows, self.cols = rows, cols

    def check(self, layer_name, shape, spec):
        _require_input_axis(f"block {self.rows}x{self.cols}", layer_name, shape, spec, self.cols)
        if spec.filter_count(shape) % self.rows:
            raise ValueError(
                f"Layer '{layer_name}': block {self.rows}x{self.cols} pruning needs its "
                f"{spec.filter_count(shape)} filters to be a multiple of {self.rows}. Exclude it "
                f"with `exclude=['{layer_name}']`."
            )

    def unit_elements(self, canonical_shape):
        return self.rows * self.cols

    def units(self, canonical):
        f, s, i = canonical.shape
        blocks = canonical.reshape(f // self.rows, self.rows, s, i // self.cols, self.cols)
        return blocks.transpose(0, 2, 3, 1, 4).reshape(-1, self.rows * self.cols)

    def expand(self, unit_keep, canonical_shape):
        f, s, i = canonical_shape
        keep = unit_keep.reshape(f // self.rows, s, i // self.cols, 1, 1)
        keep = np.broadcast_to(keep, (f // self.rows, s, i // self.cols, self.rows, self.cols))
        return keep.transpose(0, 3, 1, 2, 4).reshape(canonical_shape)

    def __str__(self):
        return f"block:{self.rows}x{self.cols}"

    def __repr__(self):
        return f"Block(rows={self.rows}, cols={self.cols})"


def get(identifier) -> Granularity:
    """Resolve a granularity from a name or instance.

    Args:
        identifier: a `Granularity`, or one of `"filter"`, `"unstructured"`, `"n:m"`
            (2:4), `"N:M"` such as `"1:4"`, `"block"` (1x4), `"block:RxC"` such as
            `"block:1x16"`.

    Returns:
        A `Granularity` instance.

    Raises:
        ValueError: for an unknown name.
        TypeError: for anything that is neither a string nor a `Granularity`.

    Example:

    >>> get("2:4"), get("block:1x16")
    (NM(n=2, m=4), Block(rows=1, cols=16))
    """
    if isinstance(identifier, Granularity):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(
            "granularity must be a string or tfprune.masking.Granularity, got "
            f"{type(identifier).__name__}."
        )
    name = identifier.strip().lower()
    if name == "filter":
        return Filter()
    if name == "unstructured":
        return Unstructured()
    if name == "n:m":
        return NM()
    if name == "block":
        return Block()
    if match := re.fullmatch(r"(\d+):(\d+)", name):
        return NM(int(match[1]), int(match[2]))
    if match := re.fullmatch(r"block:(\d+)x(\d+)", name):
        return Block(int(match[1]), int(match[2]))
    raise ValueError(
        f"Unknown granularity {identifier!r}. Use 'filter', 'unstructured', 'n:m' or e.g. '2:4', "
        "'block' or e.g. 'block:1x16'."
    )
