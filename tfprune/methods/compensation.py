"""Pruning with Compensation: after channels are removed, rebuild the layers that read them
by least squares on input statistics, with no backpropagation.

From "Pruning with Compensation: Efficient Channel Pruning for Deep Convolutional Neural
Networks" (Xie et al., arXiv 2108.13728).

For a layer with input patches `x` (a convolution's `kh*kw*C` patch, or a dense layer's
features) collected from the *unpruned* model on a calibration set, with mean `mu` and
covariance `S`, and kept inputs `K`, the weights that best reproduce the old output from
the kept inputs are `W_new = S[K,K]^-1 S[K,:] W_old`, and the bias keeps the mean:
`b_new = b_old + W_old^T mu - W_new^T mu_K` (folded into the next BatchNormalization's
moving mean when the layer has no bias; dropped if there is neither). Optionally each output
is then rescaled to its old variance. Layers inside nested models are not refitted.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks
from tfprune.core.modelwalk import weights_owner
from tfprune.criteria.pwc import compensable, patches
from tfprune.graph.channel_graph import ChannelGraph
from tfprune.graph.constants import constant_channels
from tfprune.layers.spec import LayerSpec
from tfprune.masking.strip import strip
from tfprune.masking.wrappers import wrappers_of


def least_squares_weights(x, kernel_2d, bias, kept, rescale=True, ridge=1e-6):
    """Solve PwC's compensation for one layer.

    Args:
        x: input rows `(n, d)` from the unpruned model.
        kernel_2d: old weights `(d, outputs)`.
        bias: old bias `(outputs,)`.
        kept: boolean `(d,)`: inputs that remain.
        rescale: restore each output's variance afterwards. Defaults to `True`.
        ridge: relative Tikhonov term for a stable solve. Defaults to 1e-6.

    Returns:
        `(new kernel (d, outputs) with removed rows zero, new bias)`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(200, 1))
    >>> x = np.hstack([a, 2 * a])  # input 1 is twice input 0
    >>> kernel, bias = least_squares_weights(x, np.array([[1.0], [1.0]]), np.zeros(1),
    ...                                      np.array([True, False]), rescale=False)
    >>> np.round(kernel, 3).tolist()  # input 0 takes over input 1's share: 1 + 2 * 1
    [[3.0], [0.0]]
    """
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    centred = x - mu
    covariance = centred.T @ centred / len(x)
    k = np.flatnonzero(kept)
    s_kk = covariance[np.ix_(k, k)]
    s_kk = s_kk + ridge * (np.trace(s_kk) / max(len(k), 1) + 1e-12) * np.eye(len(k))
    w_old = kernel_2d.astype(np.float64)
    w_k = np.linalg.solve(s_kk, covariance[k] @ w_old)
    b_new = bias + mu @ w_old - mu[k] @ w_k
    if rescale:
        old_std = (centred @ w_old).std(axis=0)
        new_std = (centred[:, k] @ w_k).std(axis=0)
        ratio = np.where(new_std > 1e-12, old_std / np.maximum(new_std, 1e-12), 1.0)
        w_k *= ratio
        b_new = bias + mu @ w_old - mu[k] @ w_k  # keep each output's mean
    w_new = np.zeros_like(w_old)
    w_new[k] = w_k
    return w_new, b_new


def compensate(original, pruned, data, rescale=True, max_rows=20000, seed=0):
    """Rebuild the layers that read removed channels, so the pruned model tracks the original.

    `pruned` is `original` with filters zeroed (a model from `tfprune.prune` after masks were
    applied, or its `strip`ped copy). Every dense, Conv1D or Conv2D layer reading channels
    that are now exactly zero is refitted, by least squares on its input patches collected
    from `original` on `data`, to reproduce its old output from the kept inputs. Filters
    pruned from the refitted layer itself stay zero. Run `shrink` afterwards to remove the
    channels physically.

    Args:
        original: the model before pruning (same architecture and layer names).
        pruned: the pruned model.
        data: calibration inputs (an array; ~20 % of the training set in the paper).
        rescale: restore each refitted output's variance (PwC's last step). Defaults to
            `True`.
        max_rows: at most this many patch rows per layer (randomly sampled). Defaults to
            20000.
        seed: seed of that sampling. Defaults to 0.

    Returns:
        A new, plain model (stripped) with compensated weights.

    Raises:
        TypeError, ValueError: for models `tfprune.strip` refuses or that differ in layers.

    Example:

    ```python
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    tfprune.apply_target(pruned, 0.5)
    better = tfprune.shrink(tfprune.methods.compensate(model, pruned, x_train[:400]))
    ```
    """
    checks.check_model(original, "compensate")
    checks.check_model(pruned, "compensate")
    plain = strip(pruned) if wrappers_of(pruned) else keras.models.clone_model(pruned)
    if not wrappers_of(pruned):
        plain.set_weights(pruned.get_weights())
    data = np.asarray(data, np.float32)
    if len(data) == 0:
        raise ValueError("compensate needs calibration data: at least one input.")
    graph = ChannelGraph(plain)
    values = constant_channels(graph)
    rng = np.random.default_rng(seed)
    for call in graph.calls():
        layer = weights_owner(call.layer)
        spec = call.rule
        if not isinstance(spec, LayerSpec) or spec.coupled or not compensable(layer):
            continue
        tensor = call.inputs[0]
        zero = values.get(id(tensor), np.full(tensor.shape[-1], np.nan)) == 0
        if not zero.any():
            continue
        try:
            source = original.get_layer(layer.name)
        except ValueError as error:
            raise ValueError(
                f"compensate: the original model has no layer '{layer.name}'; pass the model that "
                "was pruned."
            ) from error
        reader = keras.Model(original.inputs, source.input)
        rows = patches(source, keras.ops.convert_to_numpy(reader.predict(data, verbose=0)))
        if len(rows) > max_rows:
            rows = rows[rng.choice(len(rows), max_rows, replace=False)]
        kernel = keras.ops.convert_to_numpy(source.kernel)
        outputs = kernel.shape[-1]
        bias = keras.ops.convert_to_numpy(source.bias) if source.use_bias else np.zeros(outputs)
        taps = rows.shape[1] // tensor.shape[-1]
        kept_rows = np.tile(~zero, taps)  # patch columns are (taps..., channels), channels fastest
        new_kernel, new_bias = least_squares_weights(
            rows, kernel.reshape(-1, outputs), bias, kept_rows, rescale
        )
        filter_kept = (
            np.abs(keras.ops.convert_to_numpy(layer.kernel)).reshape(-1, outputs).max(axis=0) > 0
        )
        if layer.use_bias:
            filter_kept |= keras.ops.convert_to_numpy(layer.bias) != 0
        new_kernel *= filter_kept
        new_bias *= filter_kept
        if layer.use_bias:
            layer.set_weights(
                [new_kernel.reshape(kernel.shape).astype(np.float32), new_bias.astype(np.float32)]
            )
        else:
            layer.set_weights([new_kernel.reshape(kernel.shape).astype(np.float32)])
            _fold_into_next_bn(graph, call, new_bias)
    return plain


def _fold_into_next_bn(graph, call, shift):
    """A layer without bias passes its mean correction to the BatchNormalization after it:
    BN(z + d) with moving mean m equals BN(z) with moving mean m - d."""
    for other in graph.calls():
        bn = weights_owner(other.layer)
        if isinstance(bn, keras.layers.BatchNormalization) and other.inputs[0] is call.outputs[0]:
            gamma, beta, mean, variance = bn.get_weights()
            bn.set_weights([gamma, beta, (mean - shift).astype(np.float32), variance])
            return
