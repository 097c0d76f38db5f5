"""`recalibrate_batchnorm`: BatchNormalization statistics that describe the model as it is.

A BatchNormalization layer normalizes, in inference, with the moving mean and variance it
averaged during training. Once masks remove filters, the channels it reads carry other
values and those statistics describe a network that no longer exists: a trained digits CNN
with 30 % of its filters masked in one shot falls from 99 % to about 30 % accuracy, most of
which exact statistics bring back (issue 31). NNCF calls this batch-norm adaptation and runs
it by forward passes in training mode; here the statistics are exact: each layer's moving
mean and variance become the mean and (biased, as Keras computes it) variance of its input
over the data, in inference mode, with the layers before it already recalibrated.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.core import checks, keras_internals, modelwalk


def _is_batchnorm(layer) -> bool:
    return isinstance(modelwalk.weights_owner(layer), keras.layers.BatchNormalization)


def _batchnorms(model) -> list:
    """The BatchNormalization layers of `model` in the order its graph first calls them
    (nested models included; a wrapper stands for the layer it wraps)."""
    found, seen = [], set()

    def walk(functional):
        for call in keras_internals.node_calls(modelwalk.functional_of(functional)):
            if isinstance(call.operation, keras.Model):
                walk(call.operation)
            elif _is_batchnorm(call.operation):
                layer = modelwalk.weights_owner(call.operation)
                if id(layer) not in seen:
                    seen.add(id(layer))
                    found.append(layer)

    walk(model)
    return found


class _Stop(Exception):
    """Raised once the layer being recalibrated has seen its inputs for this batch."""


class _Moments:
    """Sums of one BatchNormalization layer's inputs, per channel, in float64."""

    def __init__(self, layer):
        self.layer = layer
        self.count = 0
        self.total = 0.0
        self.squares = 0.0

    def add(self, inputs):
        values = np.asarray(keras.ops.convert_to_numpy(inputs), np.float64)
        axis = self.layer.axis
        axes = tuple(a for a in range(values.ndim) if a != axis % values.ndim)
        self.count += int(np.prod([values.shape[a] for a in axes]))
        self.total = self.total + values.sum(axis=axes)
        self.squares = self.squares + (values**2).sum(axis=axes)

    def assign(self):
        mean = self.total / self.count
        variance = np.maximum(self.squares / self.count - mean**2, 0.0)
        dtype = self.layer.moving_mean.dtype
        self.layer.moving_mean.assign(mean.astype(dtype))
        self.layer.moving_variance.assign(variance.astype(dtype))


def _batches(data, batch_size, steps):
    """Input batches from arrays (split into `batch_size`) or from an iterable of batches
    (a `tf.data.Dataset` or a generator), of `x` or `(x, y, ...)`."""
    if isinstance(data, (np.ndarray, list, tuple, dict)) or keras.ops.is_tensor(data):
        first = keras.tree.flatten(data)[0]
        count = len(first)
        for start in range(0, count, batch_size):
            yield keras.tree.map_structure(lambda a, s=start: a[s : s + batch_size], data)
        return
    for step, batch in enumerate(data):
        if steps is not None and step >= steps:
            return
        yield batch[0] if isinstance(batch, tuple) else batch


def recalibrate_batchnorm(model, data, batch_size: int = 64, steps=None, verbose="auto") -> dict:
    """Set every BatchNormalization layer's moving statistics to those of its input over
    `data`, exactly, in the model as it is now (masked, stripped or shrunk).

    Layers are taken in the order the model calls them: each one's input is computed in
    inference mode with the layers before it already recalibrated, so that the statistics
    are those the model will see. Nested models, wrapped layers (`tfprune.prune`'s
    `ChannelMaskWrapper`) and synchronized BatchNormalization are included. Only the
    `moving_mean` and `moving_variance` variables change, in place.

    The cost is one pass over the data up to each layer: for `n` BatchNormalization layers,
    about `n / 2` forward passes. A few hundred examples are enough (NNCF uses 2,000); pass
    `steps` to bound a dataset.

    Args:
        model: a built Keras functional or Sequential model.
        data: inputs as the model takes them (an array, a list or dict of arrays) or an
            iterable of batches (`tf.data.Dataset`, a generator) of inputs or `(x, y)`.
        batch_size: batch size for array inputs. Defaults to 64.
        steps: for an iterable, how many batches to use (`None`: all). Defaults to `None`.
        verbose: `"auto"` shows a progress bar when there are more than 20 layers; `True`
            or `False` always or never. Defaults to `"auto"`.

    Returns:
        `{layer name: number of values its statistics were computed from, per channel}`.

    Raises:
        TypeError: for a model tfprune cannot read (see `tfprune.prune`).
        ValueError: for data that yields no batch.

    Example:

    >>> inputs = keras.Input((3,))
    >>> norm = keras.layers.BatchNormalization(name="bn")
    >>> model = keras.Model(inputs, norm(keras.layers.Dense(2, name="fc")(inputs)))
    >>> x = np.random.default_rng(0).random((100, 3)).astype("float32")
    >>> tfprune.recalibrate_batchnorm(model, x, batch_size=32)
    {'bn': 100}
    >>> features = keras.ops.convert_to_numpy(model.get_layer("fc")(x))
    >>> bool(np.allclose(keras.ops.convert_to_numpy(norm.moving_mean), features.mean(0), atol=1e-5))
    True
    """
    checks.check_model(model, "recalibrate_batchnorm")
    layers = _batchnorms(model)
    batches = list(_batches(data, batch_size, steps))
    if not batches:
        raise ValueError("recalibrate_batchnorm: data yields no batch.")
    show = len(layers) > 20 if verbose == "auto" else bool(verbose)
    progress = keras.utils.Progbar(len(layers), unit_name="layer") if show else None
    counts = {}
    for index, layer in enumerate(layers):
        moments = _Moments(layer)
        for batch in batches:
            _run_until(model, batch, layer, moments)
        moments.assign()
        counts[layer.name] = moments.count
        if progress is not None:
            progress.update(index + 1)
    return counts


def _run_until(model, batch, layer, moments) -> None:
    """Run `model` on `batch` in inference mode until `layer` has seen its inputs, adding
    them to `moments`."""

    def handler(called, args, kwargs):
        if modelwalk.weights_owner(called) is layer:
            moments.add(args[0])
            raise _Stop
        return NotImplemented

    with keras_internals.intercepted_layer_calls(handler):
        try:
            model(batch, training=False)
        except _Stop:
            pass
