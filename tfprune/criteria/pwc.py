"""Pruning with Compensation's ranking: keep first the channels compensation cannot rebuild.

From "Pruning with Compensation: Efficient Channel Pruning for Deep Convolutional Neural
Networks" (Xie et al., arXiv 2108.13728). The least-squares compensation itself is
`tfprune.methods.compensate` (`tfprune.methods.compensation`), which reads its input patches with
the same `patches`.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core.modelwalk import functional_of, weights_owner
from tfprune.criteria.base import ContextCriterion, spread_over_filters
from tfprune.layers.mask_layout import named_variable
from tfprune.layers.spec import LayerSpec


def patches(layer, inputs: np.ndarray) -> np.ndarray:
    """Rows of what one output position of `layer` reads: `(positions, kernel taps x C)`.

    Args:
        layer: a layer for which `compensable` is true.
        inputs: a batch of its inputs, channels last.

    Returns:
        A 2-D array; a convolution's columns are its kernel taps, channels fastest.

    Example:

    >>> conv = keras.layers.Conv2D(4, 3)
    >>> patches(conv, np.zeros((2, 5, 5, 3), np.float32)).shape
    (18, 27)
    """
    if isinstance(layer, keras.layers.Dense):
        return inputs.reshape(-1, inputs.shape[-1])
    kernel = layer.kernel_size
    strides, dilation = layer.strides, layer.dilation_rate
    images = inputs[:, None] if len(kernel) == 1 else inputs  # Conv1D as a 1-pixel-high image
    if len(kernel) == 1:
        kernel, strides, dilation = (1, *kernel), (1, *strides), (1, *dilation)
    rows = keras.ops.image.extract_patches(
        images,
        kernel,
        strides=strides,
        dilation_rate=dilation,
        padding=layer.padding,
        data_format="channels_last",
    )
    return keras.ops.convert_to_numpy(rows).reshape(-1, int(np.prod(kernel)) * inputs.shape[-1])


def compensable(layer) -> bool:
    """Whether least-squares compensation (and `patches`) can handle `layer`.

    Dense, Conv1D and Conv2D layers with one group and `valid` or `same` padding can;
    transposed and separable convolutions cannot.

    Args:
        layer: a Keras layer.

    Returns:
        True if compensable.

    Example:

    >>> compensable(keras.layers.Conv2D(4, 3)), compensable(keras.layers.Conv2DTranspose(4, 3))
    (True, False)
    """
    excluded = (
        keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose,
        keras.layers.SeparableConv1D,
        keras.layers.SeparableConv2D,
    )
    return (
        isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D))
        and not isinstance(layer, excluded)
        and getattr(layer, "groups", 1) == 1
        and getattr(layer, "padding", "valid") in ("valid", "same")
    )


def greedy_channel_order(
    rows: np.ndarray, kernel_2d: np.ndarray, channels: int, ridge: float = 1e-6
) -> list:
    """PwC's compensation-aware ranking: input channels in the order greedy selection keeps them.

    Each step adds the channel that most reduces the output error left after least-squares
    compensation from the channels kept so far, using the block Schur complement: with
    `M = S_cc - S_cK S_KK^-1 S_Kc` and `D = (S W)_c - S_cK S_KK^-1 (S W)_K`, the gain of
    channel `c` is `trace(D^T M^-1 D)`.

    Args:
        rows: input patch rows `(n, taps * channels)`, channels fastest.
        kernel_2d: the layer's weights `(taps * channels, outputs)`.
        channels: number of input channels.
        ridge: relative Tikhonov term for stable solves. Defaults to 1e-6.

    Returns:
        Channel indices, most important first.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=(200, 3))
    >>> rows[:, 2] = rows[:, 0]  # channel 2 repeats 0: compensation rebuilds one from the other
    >>> greedy_channel_order(rows, np.array([[1.0], [0.1], [1.0]]), channels=3)[-1] in (0, 2)
    True
    """
    x = rows.astype(np.float64) - rows.mean(axis=0)
    covariance = x.T @ x / len(x)
    covariance += ridge * (np.trace(covariance) / len(covariance) + 1e-12) * np.eye(len(covariance))
    explained = covariance @ kernel_2d.astype(np.float64)
    taps = rows.shape[1] // channels
    columns = [np.arange(taps) * channels + c for c in range(channels)]
    order = []
    for _ in range(channels):
        kept = np.concatenate([columns[c] for c in order]) if order else np.zeros(0, np.int64)
        if kept.size:
            s_kk = covariance[np.ix_(kept, kept)]
            solved_s = np.linalg.solve(s_kk, covariance[kept])  # S_KK^-1 S_K,:
            solved_b = np.linalg.solve(s_kk, explained[kept])  # S_KK^-1 (S W)_K
        best, best_gain = None, -np.inf
        for c in range(channels):
            if c in order:
                continue
            cols = columns[c]
            m = covariance[np.ix_(cols, cols)]
            d = explained[cols]
            if kept.size:
                cross = covariance[np.ix_(cols, kept)]
                m = m - cross @ solved_s[:, cols]
                d = d - cross @ solved_b
            gain = float(np.trace(d.T @ np.linalg.solve(m, d)))
            if gain > best_gain:
                best, best_gain = c, gain
        order.append(best)
    return order


@keras.saving.register_keras_serializable(package="tfprune")
class PwCRanking(ContextCriterion):
    """PwC's compensation-aware ranking of a layer's filters: the layer that reads them
    (the first dense or Conv1D/Conv2D reader of the same channels) keeps, greedily, the
    input channels whose loss least-squares compensation cannot make up for; filters rank
    by that order. Needs calibration data (`PruningCallback(data=...)`). Filter granularity.

    Example:

    ```python
    pruned = tfprune.prune(model, criterion="pwc")
    pruned.fit(x, y, callbacks=[tfprune.PruningCallback(data=(x[:512], y[:512]))])
    ```
    """

    granularities = ("filter",)

    def __call__(self, weight, layer, context):
        if context.data is None:
            raise ValueError(
                "The pwc criterion needs calibration data: pass PruningCallback(data=(x, y))."
            )
        graph = context.graph
        out = context.call_of(layer).outputs[0]
        channel_of = {graph.root(out, c): c for c in range(out.shape[-1])}
        for call in graph.calls():
            reader = weights_owner(call.layer)
            spec = call.rule
            if not isinstance(spec, LayerSpec) or spec.coupled or not compensable(reader):
                continue
            tensor = call.inputs[0]
            mapping = {i: channel_of.get(graph.root(tensor, i)) for i in range(tensor.shape[-1])}
            if not any(c is not None for c in mapping.values()):
                continue
            inputs = np.asarray(context.data[0])[:512]
            activations = keras.Model(functional_of(context.model).inputs, tensor).predict(
                inputs, verbose=0
            )
            rows = patches(reader, activations)
            kernel = keras.ops.convert_to_numpy(named_variable(reader, spec.weight))
            order = greedy_channel_order(
                rows[:20000], kernel.reshape(-1, kernel.shape[-1]), tensor.shape[-1]
            )
            scores = np.zeros(out.shape[-1])
            for position, i in enumerate(order):
                if mapping[i] is not None:
                    scores[mapping[i]] = max(scores[mapping[i]], len(order) - position)
            return spread_over_filters(layer, weight, scores)
        raise ValueError(
            f"criterion 'pwc': no dense or convolution layer reads the filters of '{layer.name}'."
        )
