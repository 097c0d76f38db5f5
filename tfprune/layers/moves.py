"""Where channels go through `keras.ops` functions: the channel rules of a traced graph.

A tensor's channels lie along one axis, its *channel axis*: the last one for a convolution's
output, the heads axis for the query of a transformer written with `EinsumDense("bqm,muh->
bquh")`. An op may move that axis (a transpose), drop or add axes around it (a mean over the
sequence), split it (a reshape into heads: channel `c` of the input is head `c // size` of the
output) or merge it (the inverse), repeat it (grouped-query attention: key head `j` serves
query heads `j * groups ...`), or mix what it holds (a softmax over channels), which makes it
a barrier.

Each function here takes an `OpView` of one call and returns a `Move`: the channel axis of
each output and, for each output channel, the input channel it carries. A string instead is
why the op is a barrier for these channels. Axes are negative (counted from the end), so
that they hold whatever the batch and sequence axes before them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class OpView:
    """One call of an op, as its channel rule sees it.

    Attributes:
        parameters: the op's parameters by name (`registry.op_parameters`).
        shapes: the inputs' shapes (`None` where unknown).
        axes: each input's channel axis, `None` for an input without channels.
        out_shapes: the outputs' shapes.

    Example:

    >>> view = OpView({"axis": 1}, [(None, 8, 4)], [-1], [(None, 1, 8, 4)])
    >>> expand_dims(view).axes
    [-1]
    """

    parameters: dict
    shapes: list
    axes: list
    out_shapes: list

    def width(self, index: int) -> int:
        """The channel count of input `index` (0 without channels)."""
        axis = self.axes[index]
        return 0 if axis is None else int(self.shapes[index][axis])

    def position(self, index: int = 0) -> int:
        """Input `index`'s channel axis counted from the front."""
        return self.axes[index] + len(self.shapes[index])


@dataclasses.dataclass
class Move:
    """Where one call puts channels.

    Attributes:
        axes: the channel axis of each output (`None`: it carries none).
        ties: `(input index, output index, pairs)`, `pairs` an `(n, 2)` array of `(input
            channel, output channel)`: each output channel carries the input channels paired
            with it (a head carries its units, a repeated key head its copies).

    Example:

    >>> Move([-2], [(0, 0, np.array([[0, 0], [0, 1], [1, 2], [1, 3]]))]).axes
    [-2]
    """

    axes: list
    ties: list


PART_OF_THE_CHANNELS = "it takes a part of the channels, whose bounds shrink would have to rewrite"


def _identity(width):
    return np.stack([np.arange(width), np.arange(width)], axis=1)


def _pairs(inputs, outputs):
    """`(input channel, output channel)` pairs from two equal-length index arrays."""
    return np.stack([np.asarray(inputs), np.asarray(outputs)], axis=1).astype(np.int64)


def _negative(position, rank):
    return position - rank


def _baked(view: OpView, axis: int) -> str | None:
    """Why an input that carries no channels on `axis` breaks removal: it spans that axis
    with the old count baked in (indices broadcast to every head, a per-head scale of shape
    `(heads, 1, 1)`), or `None`."""
    for input_axis, shape in zip(view.axes, view.shapes):
        carries = input_axis == axis and shape[axis] not in (1, None)
        if not carries and -axis <= len(shape) and shape[axis] not in (1, None):
            return f"it combines the channels with a tensor of {shape[axis]} entries on their axis"
    return None


def same_axis(view: OpView) -> Move | str:
    """Elementwise ops, however many inputs, broadcasting from the right: channels stay on
    their axis, and inputs with channels there share them.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({}, [(None, 4, 8), (8,)], [-1, -1], [(None, 4, 8)])
    >>> [t[:2] for t in same_axis(view).ties]
    [(0, 0), (1, 0)]
    """
    present = {a for a in view.axes if a is not None}
    # A single channel (one key/value head) broadcast against many is no channel of theirs.
    wide = {a for a, s in zip(view.axes, view.shapes) if a is not None and s[a] not in (1, None)}
    if len(wide) > 1 or (not wide and len(present) > 1):
        return "its inputs carry channels on different axes"
    if not present:
        return Move([None] * len(view.out_shapes), [])
    axis = next(iter(wide or present))
    if -axis > len(view.out_shapes[0]):
        return "it drops the channel axis"
    baked = _baked(view, axis)
    if baked:
        return baked
    width = int(view.out_shapes[0][axis])
    ties = []
    for index, (input_axis, shape) in enumerate(zip(view.axes, view.shapes)):
        if input_axis is None or (shape[input_axis] == 1 and width != 1):
            continue
        if input_axis != axis or int(shape[input_axis]) != width:
            return f"it broadcasts a tensor of {shape[input_axis]} channels"
        ties.append((index, 0, _identity(width)))
    return Move([axis] * len(view.out_shapes), ties)


def _moved(view: OpView, position_out) -> Move | str:
    """Input 0's channels, unchanged, on output axis `position_out` (counted from the front
    of the output), or the reason given instead."""
    if isinstance(position_out, str):
        return position_out
    rank = len(view.out_shapes[0])
    return Move([_negative(position_out, rank)], [(0, 0, _identity(view.width(0)))])


def _normalized(axis, rank):
    return axis + rank if axis < 0 else axis


def _axis_list(axis, rank) -> list:
    """An op's `axis` parameter (one or several) counted from the front."""
    return [_normalized(a, rank) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]


def _without(view: OpView, dropped: list, reason: str) -> Move | str:
    """Input 0's channels once the axes `dropped` are gone (`reason` if theirs is one)."""
    position = view.position()
    if position in dropped:
        return reason
    return _moved(view, position - sum(a < position for a in dropped))


def expand_dims(view: OpView) -> Move | str:
    """`expand_dims`: a new axis before or after the channels.

    Args:
        view: the call.

    Returns:
        The move.

    Example:

    >>> expand_dims(OpView({"axis": -1}, [(None, 8)], [-1], [(None, 8, 1)])).axes
    [-2]
    """
    added = sorted(_axis_list(view.parameters["axis"], len(view.out_shapes[0])))
    position = view.position()
    for a in added:
        if a <= position:
            position += 1
    return _moved(view, position)


def squeeze(view: OpView) -> Move | str:
    """`squeeze`: axes of size 1 dropped around the channels; without an axis, a barrier
    (after `shrink`, the channel axis itself may have size 1).

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> squeeze(OpView({"axis": 1}, [(None, 1, 8)], [-1], [(None, 8)])).axes
    [-1]
    """
    axis = view.parameters.get("axis")
    if axis is None:
        return "it squeezes whatever axes have size 1, which shrink may change"
    return _without(view, _axis_list(axis, len(view.shapes[0])), "it drops the channel axis")


def reduction(view: OpView) -> Move | str:
    """`mean`, `sum`, `max`...: a reduction over axes other than the channels'.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> reduction(OpView({"axis": 1, "keepdims": False}, [(None, 4, 8)], [-1], [(None, 8)])).axes
    [-1]
    """
    axis = view.parameters.get("axis")
    if axis is None:
        return "it reduces over every axis, channels included"
    reduced = _axis_list(axis, len(view.shapes[0]))
    reason = "it reduces over channels, mixing them"
    if view.parameters.get("keepdims"):
        return reason if view.position() in reduced else _moved(view, view.position())
    return _without(view, reduced, reason)


def along_axis(view: OpView) -> Move | str:
    """An op that mixes entries along some axes (`softmax`, `take_along_axis`, `cumsum`):
    a barrier on the channel axis, a pass-through elsewhere.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> along_axis(OpView({"axis": -1}, [(None, 4, 8)], [-1], [(None, 4, 8)]))
    'it mixes the channels along their axis'
    """
    axis = view.parameters.get("axis", -1)
    if axis is None or view.position() in _axis_list(axis, len(view.shapes[0])):
        return "it mixes the channels along their axis"
    return _baked(view, view.axes[0]) or _moved(view, view.position())


def transpose(view: OpView) -> Move | str:
    """`transpose`, `moveaxis`, `swapaxes`: the channel axis goes where the permutation
    puts it.

    Args:
        view: the call.

    Returns:
        The move.

    Example:

    >>> transpose(OpView({"axes": (0, 2, 1, 3)}, [(None, 8, 2, 4)], [-2], [(None, 2, 8, 4)])).axes
    [-3]
    """
    rank = len(view.shapes[0])
    order = list(range(rank))
    parameters = view.parameters
    if "axes" in parameters:
        order = list(parameters["axes"]) if parameters["axes"] is not None else order[::-1]
        order = [_normalized(a, rank) for a in order]
    elif "source" in parameters:
        sources = parameters["source"]
        destinations = parameters["destination"]
        sources = [sources] if isinstance(sources, int) else list(sources)
        destinations = [destinations] if isinstance(destinations, int) else list(destinations)
        sources = [_normalized(a, rank) for a in sources]
        destinations = [_normalized(a, rank) for a in destinations]
        rest = [a for a in order if a not in sources]
        order = [None] * rank
        for s, d in zip(sources, destinations):
            order[d] = s
        it = iter(rest)
        order = [a if a is not None else next(it) for a in order]
    else:  # swapaxes
        a, b = (_normalized(parameters[k], rank) for k in ("axis1", "axis2"))
        order[a], order[b] = order[b], order[a]
    return _moved(view, order.index(view.position()))


def repeat(view: OpView) -> Move | str:
    """`repeat`: along the channel axis, input channel `j` becomes output channels
    `j * repeats ... j * repeats + repeats - 1` (a key head serving its query heads in
    grouped-query attention); along another axis, a pass-through.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({"repeats": 2, "axis": 2}, [(None, 8, 2, 4)], [-2], [(None, 8, 4, 4)])
    >>> repeat(view).ties[0][2][:, 0].tolist()  # the key head of each query head
    [0, 0, 1, 1]
    """
    rank = len(view.shapes[0])
    axis, repeats = view.parameters.get("axis"), view.parameters["repeats"]
    if axis is None:
        return "it repeats a flattened tensor"
    if _normalized(axis, rank) != view.position():
        return _moved(view, view.position())
    if not isinstance(repeats, int):
        return "it repeats channels unevenly"
    sources = np.repeat(np.arange(view.width(0)), repeats)
    return Move([view.axes[0]], [(0, 0, _pairs(sources, np.arange(sources.size)))])


def tile(view: OpView) -> Move | str:
    """`tile`: copies along other axes pass channels through; copies of the channels are a
    barrier.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> tile(OpView({"repeats": (1, 3, 1)}, [(None, 2, 8)], [-1], [(None, 6, 8)])).axes
    [-1]
    """
    repeats = list(view.parameters["repeats"])
    if -view.axes[0] <= len(repeats) and repeats[view.axes[0]] != 1:
        return "it tiles the channels"
    return _moved(view, len(view.out_shapes[0]) + view.axes[0])


def broadcast_to(view: OpView) -> Move | str:
    """`broadcast_to`: new leading axes, and copies along axes of size 1.

    Args:
        view: the call.

    Returns:
        The move.

    Example:

    >>> broadcast_to(OpView({"shape": (3, 2, 8)}, [(2, 8)], [-1], [(3, 2, 8)])).axes
    [-1]
    """
    return _moved(view, len(view.out_shapes[0]) + view.axes[0])


def _index_items(key, rank):
    """A `get_item` key as one item per input axis (`None` items add axes)."""
    items = list(key) if isinstance(key, tuple) else [key]
    if any(i is Ellipsis for i in items):
        at = next(n for n, i in enumerate(items) if i is Ellipsis)
        used = sum(i is not None for i in items) - 1
        items[at : at + 1] = [slice(None)] * (rank - used)
    used = sum(i is not None for i in items)
    return items + [slice(None)] * (rank - used)


def get_item(view: OpView) -> Move | str:
    """Indexing (`x[:, :length]`, `x[..., 0]`): the channel axis keeps its channels when
    taken whole; a part of them, or one, is a barrier (its bounds count channels, which
    `shrink` would have to rewrite).

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> key = (slice(None), slice(4))
    >>> get_item(OpView({"key": key}, [(None, 8, 4)], [-1], [(None, 4, 4)])).axes
    [-1]
    >>> get_item(OpView({"key": (Ellipsis, slice(2))}, [(None, 4)], [-1], [(None, 2)]))
    'it takes a part of the channels, whose bounds shrink would have to rewrite'
    """
    key = view.parameters["key"]
    rank = len(view.shapes[0])
    position, out_position, axis = view.position(), 0, 0
    for item in _index_items(key, rank):
        if item is None:
            out_position += 1
            continue
        if axis == position:
            if not isinstance(item, slice):
                return "it indexes one channel"
            if item != slice(None):
                return PART_OF_THE_CHANNELS
            out = _negative(out_position, len(view.out_shapes[0]))
            return Move([out], [(0, 0, _identity(view.width(0)))])
        if isinstance(item, slice):
            out_position += 1
        axis += 1
    return "it indexes the channel axis in a way tfprune cannot follow"


def slice_(view: OpView) -> Move | str:
    """`slice(x, start, shape)`: the channels pass where it takes them whole; a part of them
    is a barrier.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({"start_indices": (2, 0), "shape": (2, 8)}, [(4, 8)], [-1], [(2, 8)])
    >>> slice_(view).axes
    [-1]
    """
    size = list(view.parameters["shape"])[view.position()]
    start = view.parameters.get("start_indices")
    start = 0 if start is None else list(start)[view.position()]
    if start != 0 or size not in (-1, view.width(0)):
        return PART_OF_THE_CHANNELS
    return Move([view.axes[0]], [(0, 0, _identity(view.width(0)))])


def concatenate(view: OpView) -> Move | str:
    """`concatenate`: along the channel axis the inputs' channels follow each other; along
    another axis they are the same channels.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({"axis": -1}, [(None, 3), (None, 2)], [-1, -1], [(None, 5)])
    >>> [t[2][:, 1].tolist() for t in concatenate(view).ties]
    [[0, 1, 2], [3, 4]]
    """
    present = [a for a in view.axes if a is not None]
    if not present:
        return Move([None], [])
    if len(set(present)) > 1 or len(present) != len(view.axes):
        return "its inputs carry channels on different axes"
    rank = len(view.out_shapes[0])
    axis = _normalized(view.parameters.get("axis", 0), rank)
    channel = present[0]
    if axis != rank + channel:
        return same_axis(view)
    ties, offset = [], 0
    for index in range(len(view.shapes)):
        width = view.width(index)
        ties.append((index, 0, _pairs(np.arange(width), np.arange(offset, offset + width))))
        offset += width
    return Move([channel], ties)


def split(view: OpView) -> Move | str:
    """`split`: along another axis every output carries the channels; along the channel axis
    into equal sections, channel `j` of each section is one unit with the others' `j` (so
    that they stay equal: a gated unit written `gate, up = split(h, 2)`); at explicit
    indices, a barrier.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({"indices_or_sections": 2, "axis": -1}, [(None, 4)], [-1], [(None, 2)] * 2)
    >>> split(view).ties[0][2].tolist()  # inputs 0 and 2 are output channel 0
    [[0, 0], [1, 1], [2, 0], [3, 1]]
    """
    rank = len(view.shapes[0])
    axis = _normalized(view.parameters.get("axis", 0), rank)
    channel = view.axes[0]
    outputs = range(len(view.out_shapes))
    if axis != view.position():
        width = view.width(0)
        return Move([channel] * len(outputs), [(0, k, _identity(width)) for k in outputs])
    sections = view.parameters.get("indices_or_sections")
    if not isinstance(sections, (int, np.integer)):
        return PART_OF_THE_CHANNELS
    width = int(view.out_shapes[0][channel])
    inputs = np.arange(width * sections)
    ties = [(0, k, _pairs(inputs, inputs % width)) for k in outputs]
    return Move([channel] * len(outputs), ties)


def stack(view: OpView) -> Move | str:
    """`stack`: the inputs' same channels, with a new axis.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> stack(OpView({"axis": 0}, [(None, 4)] * 2, [-1, -1], [(2, None, 4)])).axes
    [-1]
    """
    move = same_axis(dataclasses.replace(view, out_shapes=[view.shapes[0]]))
    if isinstance(move, str) or move.axes[0] is None:
        return move
    rank = len(view.out_shapes[0])
    added = _normalized(view.parameters.get("axis", 0), rank)
    position = len(view.shapes[0]) + move.axes[0]
    position += added <= position
    return Move([_negative(position, rank)], move.ties)


def reshape(view: OpView) -> Move | str:
    """`reshape`: the channel axis kept (axes before it merged or split), split into an
    outer and an inner axis (a projection's units into heads: the outer axis carries the
    channels, channel `c` going to head `c // inner`), merged with the axes after it (heads
    back into units: unit `o` carries head `o // size`), or merged with the axes before it
    when it is last (`Flatten`'s channels-last expansion: feature `o` carries `o % width`).

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> move = reshape(OpView({}, [(None, 5, 8)], [-1], [(None, 5, 2, 4)]))
    >>> move.axes, move.ties[0][2][:, 1].tolist()  # units 0-3 are head 0, 4-7 head 1
    ([-2], [0, 0, 0, 0, 1, 1, 1, 1])
    """
    shape, out = list(view.shapes[0]), list(view.out_shapes[0])
    position, width = view.position(), view.width(0)
    if None in shape[position + 1 :]:
        return "it reshapes across axes of unknown size"
    inner = math.prod(shape[position + 1 :])
    suffixes = {math.prod(shape[k:]): k for k in range(position + 1, len(shape) + 1)}
    known = [j for j in range(len(out) - 1, -1, -1) if None not in out[j:]]
    for j in known:  # the channel axis kept, first: axes of size 1 make the rest ambiguous
        if out[j] == width and math.prod(out[j + 1 :]) == inner:
            return Move([j - len(out)], [(0, 0, _identity(width))])
    for j in known:
        size, tail = out[j], math.prod(out[j + 1 :])
        axis = j - len(out)
        units = np.arange(width)
        if width % size == 0 and size * tail == width * inner:  # split: outer part here
            return Move([axis], [(0, 0, _pairs(units, units // (width // size)))])
        if tail in suffixes and size == width * math.prod(shape[position + 1 : suffixes[tail]]):
            # merged with the axes after it
            merged = np.arange(size)
            return Move([axis], [(0, 0, _pairs(merged // (size // width), merged))])
        if inner == 1 and tail == 1 and size % width == 0:  # merged with the axes before it
            before = [d for d in shape[:position] if d is not None]
            if size // width in {math.prod(before[k:]) for k in range(len(before) + 1)}:
                merged = np.arange(size)
                return Move([axis], [(0, 0, _pairs(merged % width, merged))])
    return "it reshapes the channel axis in a way tfprune cannot follow"


def _einsum_parts(equation):
    inputs, _, output = equation.replace(" ", "").partition("->")
    return inputs.split(","), output


def einsum(view: OpView) -> Move | str:
    """`einsum`: channels on a letter the output keeps (the heads of `"bquh,bkuh->buqk"`)
    are tied across the operands and go to that letter's output axis; channels summed over
    are a barrier (only a weight's axis could read them, and that is a layer).

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> view = OpView({"subscripts": "bquh,bkuh->buqk"}, [(None, 8, 2, 4)] * 2, [-2, -2],
    ...               [(None, 2, 8, 8)])
    >>> einsum(view).axes
    [-3]
    """
    inputs, output = _einsum_parts(view.parameters["subscripts"])
    if any("." in letters for letters in inputs + [output]):
        return "it is an einsum with an ellipsis"
    if len(inputs) != len(view.shapes):
        return "it is an einsum with a constant operand"
    letters = {inputs[i][len(inputs[i]) + a] for i, a in enumerate(view.axes) if a is not None}
    if not letters:
        return Move([None], [])
    if len(letters) > 1:
        return "its operands carry channels on different letters"
    letter = letters.pop()
    if letter not in output:
        return "it sums over channels"
    ties = []
    for index, axis in enumerate(view.axes):
        if letter in inputs[index]:
            if axis is None or inputs[index][len(inputs[index]) + axis] != letter:
                return "an operand holds the channels' letter on an axis without channels"
            ties.append((index, 0, _identity(view.width(index))))
    return Move([output.index(letter) - len(output)], ties)


def matmul(view: OpView) -> Move | str:
    """`matmul`: channels on a batch axis pass through; channels summed over are a barrier,
    and so are channels of the rows or columns (they are mixed by the other operand's).

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> matmul(OpView({}, [(None, 2, 8, 4), (None, 2, 4, 8)], [-3, -3], [(None, 2, 8, 8)])).axes
    [-3]
    """
    if any(a is not None and a >= -2 for a in view.axes):
        return "it multiplies along the channel axis"
    return same_axis(dataclasses.replace(view))


def dot_product_attention(view: OpView) -> Move | str:
    """`dot_product_attention(query, key, value)` on `(batch, length, heads, size)`: the
    heads pass through, tied across query, key and value; head sizes are a barrier.

    Args:
        view: the call.

    Returns:
        The move, or why it is a barrier.

    Example:

    >>> shape = (None, 8, 2, 4)
    >>> dot_product_attention(OpView({}, [shape] * 3, [-2] * 3, [shape])).axes
    [-2]
    """
    axes = view.axes[:3]
    if any(a is not None and a != -2 for a in axes):
        return "it mixes the head sizes"
    heads = [(i, 0, _identity(view.width(i))) for i, a in enumerate(axes) if a is not None]
    if not heads:
        return Move([None], [])
    # A bias or mask `(batch, heads, queries, keys)` holding one entry per head.
    for shape in view.shapes[3:]:
        if len(shape) == 4 and shape[1] not in (1, None):
            return f"it adds a bias or mask with {shape[1]} heads baked in"
    return Move([-2], heads)
