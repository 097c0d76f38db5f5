"""Depthwise convolutions with large kernels, computed as a sum of small ones.

A 7x7 depthwise convolution (ConvNeXt's, written by `keras.applications` as
`Conv2D(groups=channels)`) runs slowly in LiteRT: measured on an x86 AVX-512 machine with
ai-edge-litert 2.3.0, one at 24x24x96 took 1,290 us with XNNPACK (2.1 GMAC/s), 300 us with
TFLite's own kernel, while a 5x5 one took 53 us (26 GMAC/s). The same kernel cut into tiles of
at most 5x5 (rows 0-4 and 5-6 by columns 0-4 and 5-6: four depthwise convolutions on shifted
views of the padded input, summed) took 200 us, and computes the same function up to float
rounding. `tfprune.export_tflite` converts such layers in this form (the Keras model itself is
never changed); see `tfprune.export.depthwise`.
"""

from __future__ import annotations

import keras

#: The largest kernel side LiteRT's depthwise kernels run fast (XNNPACK's 25-tap kernels).
LARGEST_FAST_SIDE = 5


def tile_bounds(size: int, largest: int = LARGEST_FAST_SIDE) -> list[tuple[int, int]]:
    """Where a kernel axis of `size` taps is cut: `(start, stop)` pieces of at most `largest`.

    Args:
        size: the kernel's extent along one axis.
        largest: the longest piece. Defaults to `LARGEST_FAST_SIDE`.

    Returns:
        The pieces, in order, covering `range(size)`.

    Example:

    >>> tile_bounds(7), tile_bounds(3), tile_bounds(11)
    ([(0, 5), (5, 7)], [(0, 3)], [(0, 5), (5, 10), (10, 11)])
    """
    return [(start, min(start + largest, size)) for start in range(0, size, largest)]


def tiled_depthwise(inputs, kernel, padding: str):
    """A stride-1 depthwise convolution as the sum of its kernel's tiles.

    The input is padded once as `padding` asks; each tile of the kernel (`tile_bounds` on
    both axes) convolves, without padding, the view of the padded input its taps read.

    Args:
        inputs: `(batch, height, width, channels)`.
        kernel: `(kh, kw, channels, multiplier)`, as `keras.ops.depthwise_conv` takes it.
        padding: `"same"` or `"valid"`.

    Returns:
        What `keras.ops.depthwise_conv(inputs, kernel, 1, padding)` returns, up to float
        rounding.

    Example:

    >>> x = np.random.default_rng(0).random((1, 9, 9, 2), dtype=np.float32)
    >>> k = np.random.default_rng(1).random((7, 7, 2, 1), dtype=np.float32)
    >>> whole = keras.ops.depthwise_conv(x, k, strides=1, padding="same")
    >>> float(np.abs(tiled_depthwise(x, k, "same") - whole).max()) < 1e-5
    True
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    height, width = inputs.shape[1], inputs.shape[2]
    top = left = 0
    if padding == "same":
        # Keras' and TensorFlow's "same" at stride 1: the odd tap of padding goes last.
        top, left = (kh - 1) // 2, (kw - 1) // 2
        inputs = keras.ops.pad(inputs, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left], [0, 0]])
    rows = [b for b in tile_bounds(kh) if _reads_input(b, kh, top, height, padding)]
    columns = [b for b in tile_bounds(kw) if _reads_input(b, kw, left, width, padding)]
    total = None
    for r0, r1 in rows:
        for c0, c1 in columns:
            # The rows tap r0..r1-1 reads: the padded input less r0 rows above and kh - r1 below.
            view = inputs[:, r0 : r1 - kh or None, c0 : c1 - kw or None, :]
            part = keras.ops.depthwise_conv(view, kernel[r0:r1, c0:c1], strides=1, padding="valid")
            total = part if total is None else total + part
    return total


def _reads_input(bounds, size, before, extent, padding) -> bool:
    """Whether kernel taps `bounds = (start, stop)` of a kernel `size` long ever fall on the
    input (`extent` positions after `before` zeros of padding), not only on the padding: a
    7x7 kernel on a 2x2 map has tiles that read zeros only. Such a tile adds nothing and is
    left out; int8 export needs that, as its all-zero output calibrates to an empty range
    that XNNPACK refuses. An unknown extent (`None`) reads."""
    if extent is None:
        return True
    start, stop = bounds
    outputs = extent if padding == "same" else extent - size + 1
    # Output position y reads padded positions y + start .. y + stop - 1, for y < outputs.
    return start <= before + extent - 1 and outputs - 1 + stop - 1 >= before


def splittable(layer) -> bool:
    """Whether `layer` is a depthwise convolution `SplitDepthwiseConv2D` or
    `SplitGroupedConv2D` can compute: stride 1, no dilation, channels last, a kernel side
    over `LARGEST_FAST_SIDE`, and (a grouped `Conv2D`) one input channel per group.

    Args:
        layer: a Keras layer.

    Returns:
        True or False.

    Example:

    >>> splittable(keras.layers.DepthwiseConv2D(7)), splittable(keras.layers.DepthwiseConv2D(3))
    (True, False)
    """
    if type(layer) is keras.layers.DepthwiseConv2D:
        pass
    elif type(layer) is keras.layers.Conv2D and layer.groups > 1 and layer.built:
        if int(layer.kernel.shape[2]) != 1 or layer.filters != layer.groups:
            return False
    else:
        return False
    return (
        max(layer.kernel_size) > LARGEST_FAST_SIDE
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.data_format == "channels_last"
    )


@keras.saving.register_keras_serializable(package="tfprune")
class SplitDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """`DepthwiseConv2D` computed as a sum of kernel tiles of at most 5x5 (`tiled_depthwise`).

    Same arguments, weights and function as `keras.layers.DepthwiseConv2D` (stride 1, no
    dilation); only the ops it is traced into differ, which LiteRT runs several times faster
    for kernels over 5x5 (see the module docstring).

    Raises:
        ValueError: for strides or dilation other than 1.

    Example:

    >>> layer = SplitDepthwiseConv2D(7, padding="same")
    >>> tuple(layer(np.zeros((1, 8, 8, 3))).shape)
    (1, 8, 8, 3)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1):
            raise ValueError(
                f"SplitDepthwiseConv2D '{self.name}': only strides=1 and dilation_rate=1 are "
                "computed tile by tile; use keras.layers.DepthwiseConv2D."
            )

    def call(self, inputs):
        outputs = tiled_depthwise(inputs, self.kernel, self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)


@keras.saving.register_keras_serializable(package="tfprune")
class SplitGroupedConv2D(keras.layers.Conv2D):
    """A depthwise convolution written as `Conv2D(filters=C, groups=C)` (ConvNeXt's form),
    computed as a sum of kernel tiles of at most 5x5 (`tiled_depthwise`).

    Same arguments, weights and function as the `keras.layers.Conv2D` it stands for.

    Raises:
        ValueError: for strides or dilation other than 1, or `groups` other than `filters`.

    Example:

    >>> layer = SplitGroupedConv2D(4, 7, groups=4, padding="same")
    >>> tuple(layer(np.zeros((1, 8, 8, 4))).shape)
    (1, 8, 8, 4)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if (
            tuple(self.strides) != (1, 1)
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != self.filters
        ):
            raise ValueError(
                f"SplitGroupedConv2D '{self.name}': only a depthwise Conv2D (groups=filters, "
                "strides=1, dilation_rate=1) is computed tile by tile; use keras.layers.Conv2D."
            )

    def call(self, inputs):
        # (kh, kw, 1, C) holds the same numbers, in the same order, as (kh, kw, C, 1).
        kernel = keras.ops.reshape(self.kernel, (*self.kernel_size, self.filters, 1))
        outputs = tiled_depthwise(inputs, kernel, self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        return self.activation(outputs)
