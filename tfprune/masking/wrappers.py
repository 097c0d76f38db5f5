"""The pruning wrapper: a layer plus its mask and the policy that updates it.

On TensorFlow and PyTorch the mask is applied through the variable's constraint, which
Keras' optimizers apply right after every update. The forward pass therefore calls the
wrapped layer unchanged (no extra op per step), and the stored weights are exactly zero
wherever the mask is, so every checkpoint is as sparse as the mask. `assign_mask` zeroes the
weights at the moment the mask changes.

On JAX the optimizer runs inside the jitted step without the mask (a non-trainable
variable), so a constraint cannot read it. There the forward pass multiplies the covered
variables by the mask, which the step carries as state: their gradient is exactly zero where
the mask is, and once the weights and the optimizer's slots are zeroed there
(`mask_optimizer_state`, which `PruningCallback` calls at every mask update), no optimizer
step moves them. The weights stay exactly zero, as on the other backends.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from tfprune.core import keras_internals
from tfprune.core.modelwalk import layers_of_type
from tfprune.core.stateless import call_with_values
from tfprune.criteria import lookup as criteria
from tfprune.layers import registry
from tfprune.layers.mask_layout import (
    mask_layout,
    named_variable,
    pruned_array,
    pruned_shape,
    pruned_variables,
)
from tfprune.masking.policies import POLICY_SETTINGS, Policy


class _MaskConstraint:
    """Multiplies a variable by its mask after each optimizer step, then applies the
    layer's own constraint, if it had one. Never serialized: `build` re-attaches it.

    A mask may cover several variables (a recurrent layer's kernel and recurrent kernel):
    `share` picks this variable's part of it (`MaskLayout.share`)."""

    def __init__(self, mask, inner=None, share=None):
        self.mask = mask
        self.inner = inner
        self.share = share

    def __call__(self, value):
        mask = self.mask.value if self.share is None else self.share(self.mask.value)
        # The backend's own tensors and operator: on PyTorch, where this runs eagerly after
        # every step, each Keras op adds its dispatch (about a third of pruning's cost there).
        raw = value.value if isinstance(value, keras.Variable) else value
        if mask.dtype != raw.dtype:
            mask = keras.ops.cast(mask, raw.dtype)
        value = raw * mask
        return self.inner(value) if self.inner is not None else value


def _masked_value(variable, part):
    """`variable`'s value times its part of a mask, in the variable's dtype."""
    return keras.ops.multiply(variable.value, keras.ops.cast(part, variable.dtype))


def _zero_masked(variable, part) -> None:
    """Zero `variable` where its part of a mask is 0, where the variable lives (no copy
    through NumPy)."""
    variable.assign(_masked_value(variable, part))


class _MaskingWrapper(keras.layers.Wrapper):
    """How a wrapper's masks reach the wrapped layer's variables, on every backend."""

    def _masked_parts(self) -> list:
        """`(variable, its part of the mask)` for every variable a mask of this wrapper covers."""
        raise NotImplementedError

    # A Keras mask (an Embedding's padding) reaches the wrapped layer's own call with the
    # inputs: the wrapper carries it as that layer would, and warns only where it would.
    @property
    def supports_masking(self):
        return self.layer.supports_masking

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def _constrain(self, variable, mask, share=None) -> None:
        """Zero `variable` where `mask` is after every optimizer step, where constraints can
        read the mask (see the module docstring)."""
        if keras_internals.constraints_read_state():
            variable.constraint = _MaskConstraint(mask, variable.constraint, share)

    def _masked_call(self, *args, **kwargs):
        """The wrapped layer's call; on JAX with the covered variables times their masks."""
        if keras_internals.constraints_read_state():
            if len(args) == 1:
                # Without the layer's own __call__ where this wrapper's did its work (on
                # PyTorch's eager steps 0.1 ms a call, most of what the wrappers cost).
                return keras_internals.call_inside(self, self.layer, *args, **kwargs)
            return self.layer(*args, **kwargs)
        values = {id(v): _masked_value(v, part) for v, part in self._masked_parts()}
        kwargs = keras_internals.call_arguments(self.layer, kwargs)
        return call_with_values(self.layer, values, *args, **kwargs)

    def mask_optimizer_state(self, optimizer) -> None:
        """Zero the optimizer's slots (momentums, velocities, averages) where the masks are.

        Where the forward pass applies the mask (JAX), a masked weight's gradient is zero,
        and with zero slots no optimizer step moves it off zero; a slot left over from before
        the mask would (momentum). Elsewhere the constraint zeroes the weights anyway.

        Args:
            optimizer: the model's optimizer (`None` or unbuilt: nothing to zero).

        Example:

        >>> model = tfprune.prune(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
        ...                                         keras.layers.Dense(2, name="head")]))
        >>> model.compile("adam", "mse")
        >>> _ = model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0)
        >>> (wrapper,) = tfprune.wrappers_of(model)
        >>> wrapper.assign_mask(np.tile([1.0, 0.0], (4, 4)))
        >>> wrapper.mask_optimizer_state(model.optimizer)
        >>> slots = keras_internals.optimizer_slots(model.optimizer, wrapper.pruned_variable)
        >>> [float(np.abs(keras.ops.convert_to_numpy(s))[:, 1::2].max()) for s in slots]
        [0.0, 0.0]
        """
        for variable, part in self._masked_parts():
            for slot in keras_internals.optimizer_slots(optimizer, variable):
                _zero_masked(slot, part)


#: The entries of `PruneWrapper.schedule_state`, by name. One vector variable holds them, so
#: that checkpoints and `.keras` files of 0.1.0 load unchanged: `paced` (1 once a callback that
#: paces the schedule, `AdversarialAwarePruning`, has written its state), `accepted_target`
#: and `reference` (its state) and `steps_seen` (training steps under the schedule, so that a
#: fresh optimizer does not restart it).
SCHEDULE_STATE = ("paced", "accepted_target", "reference", "steps_seen")


@keras.saving.register_keras_serializable(package="tfprune")
class PruneWrapper(_MaskingWrapper):
    """Wraps a prunable layer, holding its mask and the pruning policy.

    Normally created by `tfprune.prune`, not by hand. The policy is stored in the wrapper's
    config, so a `.keras` file restores masks, policy and (through the optimizer's iteration
    count) the schedule's position.

    Args:
        layer: a layer whose type is in the registry (`tfprune.register_layer`).
        policy: the pruning policy, a `tfprune.masking.policies.Policy` (or its config
            dict): granularity, criterion, schedule, ranking, target, group reduction,
            latency table and reference size, shared by the wrappers pruned together.
            Defaults to `None`: `Policy.from_settings({})`, filters by L1 norm to 0.5 at the
            current reference size.
        min_filters: the fewest filters a filter mask keeps. Defaults to 1.
        round_to: filter masks keep a multiple of this many filters, or `"auto"` (see
            `tfprune.prune`). Defaults to `"auto"`.
        rate: this layer's own final sparsity (from `tfprune.methods.layerwise_rates`), reached as
            the schedule reaches its final target; `None` follows the schedule. Defaults
            to `None`.
        **kwargs: base `Layer` arguments (e.g. `name`).

    The policy's settings given one by one (`granularity=`, `schedule=`...), as tfprune 0.1.0
    took them, still work until 0.3, with a `DeprecationWarning`.

    Raises:
        TypeError: if `layer` is not a registered prunable layer.
        ValueError: for settings of the policy that do not go together (see `Policy`).

    Example:

    >>> from tfprune.masking.policies import POLICY_SETTINGS, Policy
    >>> policy = Policy.from_settings({"granularity": "unstructured", "schedule": 0.5})
    >>> wrapper = PruneWrapper(keras.layers.Dense(8), policy=policy)
    >>> wrapper.build((None, 4))
    >>> wrapper.assign_mask(np.tile([1.0, 0.0], (4, 4)))
    >>> wrapper.sparsity()
    0.5
    """

    def __init__(self, layer, policy=None, min_filters=1, round_to="auto", rate=None, **kwargs):
        self.spec = registry.spec_for(layer)
        if self.spec is None:
            raise TypeError(
                f"Layer '{layer.name}' ({type(layer).__name__}) cannot be pruned. Prunable types: "
                f"{', '.join(registry.supported_types())}."
            )
        settings = {name: kwargs.pop(name) for name in POLICY_SETTINGS if name in kwargs}
        if settings:
            warnings.warn(
                f"PruneWrapper({', '.join(f'{k}=' for k in settings)}...): the policy's settings "
                "one by one are deprecated and go in tfprune 0.3; pass policy=tfprune.masking."
                "policies.Policy.from_settings({...}).",
                DeprecationWarning,
                stacklevel=2,
            )
        kwargs.setdefault("name", f"prune_{layer.name}")
        super().__init__(layer, **kwargs)
        if isinstance(policy, dict):
            policy = Policy.from_config(policy)
        self.policy = policy or Policy.from_settings(settings)
        self.min_filters = min_filters
        self.round_to = round_to
        self.rate = rate
        self.mask = None
        self.bias_mask = None

    # The policy's settings, read as the wrapper's own (every plan and criterion does).
    granularity = property(lambda self: self.policy.granularity)
    criterion = property(lambda self: self.policy.criterion)
    schedule = property(lambda self: self.policy.schedule)
    ranking = property(lambda self: self.policy.ranking)
    target = property(lambda self: self.policy.target)
    group_reduction = property(lambda self: self.policy.group_reduction)
    latency_table = property(lambda self: self.policy.latency_table)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        # Built, a grouped Conv2D shows whether it is a depthwise convolution in disguise.
        self.spec = registry.spec_for(self.layer)
        layout = mask_layout(self.layer, self.spec)
        self.granularity.check(self.layer.name, layout.shape, self.spec)
        dtype = layout.kernels[0][0].dtype
        self.mask = self.add_weight(
            name="mask", shape=layout.shape, initializer="ones", trainable=False, dtype=dtype
        )
        for kernel, share in self._shares(layout, self.mask):
            self._constrain(kernel, self.mask, share)
        # The schedule's state (`SCHEDULE_STATE`), carried by checkpoints and .keras files
        # with the masks.
        self.schedule_state = self.add_weight(
            name="schedule_state",
            shape=(len(SCHEDULE_STATE),),
            initializer="zeros",
            trainable=False,
            dtype="float32",
        )
        if self.granularity.structured and layout.biases:
            self.bias_mask = self.add_weight(
                name="bias_mask",
                shape=layout.bias_shape,
                initializer="ones",
                trainable=False,
                dtype=layout.biases[0][0].dtype,
            )
            for bias, share in self._shares(layout, self.bias_mask, bias=True):
                self._constrain(bias, self.bias_mask, share)
        self.built = True

    @staticmethod
    def _shares(layout, mask, bias=False) -> list:
        """`(variable, share)` per variable the mask covers; `share(mask)` is its part of the
        mask, `None` where the variable is the whole mask."""
        parts = [(v, (), c) for v, c in layout.biases] if bias else layout.kernels
        if len(parts) == 1 and parts[0][2] is None:
            return [(parts[0][0], None)]
        return [
            (v, lambda m, rows=rows, columns=columns: layout.share(m, rows, columns))
            for v, rows, columns in parts
        ]

    def mask_parts(self, bias=False, mask=None) -> list:
        """`(variable, its part of a mask)` for every variable a mask covers.

        Args:
            bias: the biases' mask (structured granularities only) instead of the kernels'.
                Defaults to `False`.
            mask: a tensor of the mask's shape to split instead of the current mask, such as
                a differentiable one (HYDRA's learned scores). Defaults to `None`.

        Returns:
            A list of `(variable, part)`, each part shaped as its variable; empty for biases
            without a mask.

        Example:

        >>> layers = [keras.Input((5, 2)), keras.layers.LSTM(4), keras.layers.Dense(2)]
        >>> lstm = tfprune.prune(keras.Sequential(layers)).layers[0]
        >>> [tuple(part.shape) for _, part in lstm.mask_parts()]
        [(2, 16), (4, 16)]
        """
        if bias and self.bias_mask is None:
            return []
        layout = mask_layout(self.layer, self.spec)
        own = self.bias_mask if bias else self.mask
        mask = own.value if mask is None else mask
        return [
            (v, mask if share is None else share(mask))
            for v, share in self._shares(layout, own, bias)
        ]

    def call(self, inputs, *args, training=None, **kwargs):
        # `training` as Keras resolves it for this wrapper, passed on as the layer's own
        # __call__ would have resolved it: only when set.
        if training is not None:
            kwargs["training"] = training
        return self._masked_call(inputs, *args, **kwargs)

    def _masked_parts(self) -> list:
        return self.mask_parts() + self.mask_parts(bias=True)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_output_spec(self, *args, **kwargs):
        """The wrapped layer's output spec, from all its inputs.

        Args:
            *args: the call's inputs (attention's query and value, not the first alone).
            **kwargs: the call's keyword arguments.

        Returns:
            What the wrapped layer's `compute_output_spec` returns.
        """
        return self.layer.compute_output_spec(*args, **kwargs)

    @property
    def pruned_variable(self):
        """The wrapped layer's prunable variable (its kernel; for a recurrent layer, whose mask
        also covers the recurrent kernel, the input kernel)."""
        return pruned_variables(self.layer, self.spec)[0]

    @property
    def pruned_shape(self) -> tuple:
        """The shape of the mask: the prunable weight's, with joined weights appended (an
        LSTM's kernel and recurrent kernel, `pruned_array`)."""
        return pruned_shape(self.layer, self.spec)

    def mask_array(self) -> np.ndarray:
        """The current mask as a NumPy array (1 = kept)."""
        return keras.ops.convert_to_numpy(self.mask)

    def weight_array(self) -> np.ndarray:
        """The current prunable weight (joined weights appended) as a NumPy array."""
        return pruned_array(self.layer, self.spec)

    def assign_mask(self, mask: np.ndarray) -> None:
        """Install `mask` and zero the weights it prunes, right away.

        Args:
            mask: an array of the pruned weight's shape, 1 = kept, 0 = pruned.

        Raises:
            ValueError: if the shape does not match.
        """
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != self.pruned_shape:
            raise ValueError(
                f"Mask for '{self.layer.name}' must have shape {self.pruned_shape}, got "
                f"{mask.shape}."
            )
        self.mask.assign(mask)
        for kernel, share in self.mask_parts():
            _zero_masked(kernel, share)
        if self.bias_mask is not None:
            kept = ~self.granularity.pruned_units(mask, self.spec)
            self.bias_mask.assign(self.spec.bias_mask(kept, tuple(self.bias_mask.shape)))
            for bias, share in self.mask_parts(bias=True):
                _zero_masked(bias, share)

    def masked_weights(self) -> list:
        """The wrapped layer's weights (as `get_weights()`), with the masks applied."""
        masked = {
            id(v): keras.ops.convert_to_numpy(share)
            for v, share in self.mask_parts() + self.mask_parts(bias=True)
        }
        return [
            keras.ops.convert_to_numpy(v) * masked[id(v)]
            if id(v) in masked
            else keras.ops.convert_to_numpy(v)
            for v in self.layer.weights
        ]

    def sparsity(self) -> float:
        """Fraction of the prunable weight that the mask zeroes."""
        return float(1.0 - self.mask_array().mean())

    def schedule_values(self) -> dict:
        """The schedule's state, by name (`SCHEDULE_STATE`).

        Returns:
            `{name: float}`.
        """
        state = keras.ops.convert_to_numpy(self.schedule_state)
        return {name: float(value) for name, value in zip(SCHEDULE_STATE, state)}

    def set_schedule_values(self, values: dict) -> None:
        """Write some entries of the schedule's state, keeping the others.

        Args:
            values: `{name: value}`, names from `SCHEDULE_STATE`.

        Raises:
            KeyError: for a name that is not an entry.
        """
        unknown = sorted(set(values) - set(SCHEDULE_STATE))
        if unknown:
            raise KeyError(f"schedule state has no entries {unknown}; it has {SCHEDULE_STATE}.")
        state = {**self.schedule_values(), **values}
        self.schedule_state.assign(np.array([state[name] for name in SCHEDULE_STATE], np.float32))

    def steps_seen(self) -> int:
        """Training steps this model has trained under its schedule (0 if never recorded).

        Stored as a float32, exact up to 2**24 (16.7 million) steps.

        Returns:
            The count `PruningCallback` last recorded.
        """
        return int(round(self.schedule_values()["steps_seen"]))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "policy": self.policy.get_config(),
                "min_filters": self.min_filters,
                "round_to": self.round_to,
                "rate": self.rate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "policy" not in config:  # written by tfprune 0.1.0: the settings one by one
            settings = {k: config.pop(k) for k in POLICY_SETTINGS if k in config}
            settings["criterion"] = criteria.from_name(settings["criterion"])
            settings["schedule"] = keras.saving.deserialize_keras_object(settings["schedule"])
            config["policy"] = Policy.from_settings(settings)
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="tfprune")
class ChannelMaskWrapper(_MaskingWrapper):
    """Wraps a per-channel layer (BatchNormalization, LayerNormalization) after pruned filters.

    Filter pruning zeroes a filter's output, but BN then adds `beta - gamma * mean / std`,
    a constant that zero padding downstream turns into a border pattern, so the channel
    could not be removed exactly. Masking the channel's `gamma` and `beta` (the registry's
    `ChannelRule.masked`) makes it exactly zero. A LayerNormalization over channels would
    otherwise give a zeroed input channel the output `beta - gamma * mean / std`, which
    varies with the other channels. Created by `tfprune.prune` for filter
    pruning; its mask is set by the callback for the channel groups it prunes.

    Args:
        layer: a layer whose channel rule lists `masked` weights.
        **kwargs: base `Layer` arguments.

    Raises:
        TypeError: if the layer type has no maskable per-channel weights.

    Example:

    >>> follower = ChannelMaskWrapper(keras.layers.BatchNormalization())
    >>> follower.build((None, 4))
    >>> follower.assign_channel_mask([1, 0, 1, 1])
    >>> keras.ops.convert_to_numpy(follower.layer.gamma).tolist()
    [1.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, layer, **kwargs):
        masked = registry.masked_weights(layer)
        if not masked:
            raise TypeError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has no per-channel weights to mask."
            )
        kwargs.setdefault("name", f"prune_{layer.name}")
        super().__init__(layer, **kwargs)
        self.masked_names = masked
        self.channel_mask = None

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        # A LayerNormalization built with center=False has a gamma but no beta.
        present = [
            v
            for v in (named_variable(self.layer, name) for name in self.masked_names)
            if v is not None
        ]
        self.channel_mask = self.add_weight(
            name="channel_mask",
            shape=present[0].shape,
            initializer="ones",
            trainable=False,
            dtype=present[0].dtype,
        )
        for variable in present:
            self._constrain(variable, self.channel_mask)
        self.built = True

    def call(self, inputs, training=None, **kwargs):
        # The graph may record extra call arguments of the inner layer (BN's `mask`).
        return self._masked_call(inputs, training=training, **kwargs)

    def _masked_parts(self) -> list:
        present = (named_variable(self.layer, name) for name in self.masked_names)
        return [(v, self.channel_mask.value) for v in present if v is not None]

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def assign_channel_mask(self, mask: np.ndarray) -> None:
        """Install a per-channel mask (1 = kept) and zero the masked weights now."""
        self.channel_mask.assign(np.asarray(mask, np.float32))
        for variable, part in self._masked_parts():
            _zero_masked(variable, part)

    def mask_array(self) -> np.ndarray:
        """The channel mask as a NumPy array."""
        return keras.ops.convert_to_numpy(self.channel_mask)

    def masked_weights(self) -> list:
        """The wrapped layer's weights with the channel mask applied (for `strip`)."""
        mask = self.mask_array()
        return [
            keras.ops.convert_to_numpy(v) * (mask if v.name in self.masked_names else 1)
            for v in self.layer.weights
        ]


def wrappers_of(model) -> list[PruneWrapper]:
    """All `PruneWrapper`s in `model`, nested models included, in layer order.

    Args:
        model: a Keras model.

    Returns:
        A list of wrappers (empty if the model was never passed through `prune`).

    Example:

    >>> layers = [keras.layers.Dense(8, name="fc"), keras.layers.Dense(2, name="head")]
    >>> model = keras.Sequential([keras.Input((4,)), *layers])
    >>> [w.layer.name for w in wrappers_of(tfprune.prune(model))]  # the head is protected
    ['fc']
    """
    return layers_of_type(model, PruneWrapper)


def followers_of(model) -> list[ChannelMaskWrapper]:
    """All `ChannelMaskWrapper`s in `model`, nested models included, in layer order.

    Args:
        model: a Keras model.

    Returns:
        A list of wrappers (the BN layers filter pruning masks along with their filters).

    Example:

    >>> inputs = keras.Input((8,))
    >>> x = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(8, name="fc")(inputs))
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    >>> [f.layer.name for f in followers_of(tfprune.prune(model))]
    ['bn']
    """
    return layers_of_type(model, ChannelMaskWrapper)


def model_sparsity(wrappers) -> float:
    """Fraction of all prunable weights (across `wrappers`) that the masks zero.

    Args:
        wrappers: `PruneWrapper`s, e.g. `wrappers_of(model)`.

    Returns:
        The fraction, 0 for no wrappers.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    >>> model_sparsity(wrappers_of(tfprune.prune(model, protect=None)))
    0.0
    """
    masks = [w.mask_array() for w in wrappers]
    total = sum(m.size for m in masks)
    return float(sum(m.size - m.sum() for m in masks) / total) if total else 0.0


def mask_optimizer_states(model, optimizer) -> None:
    """Zero the optimizer's slots where `model`'s masks are, on backends whose forward pass
    applies the masks (JAX; see the module docstring); elsewhere the constraints keep the
    weights at zero and nothing is done.

    Call it after masks change during training, as `PruningCallback` does.

    Args:
        model: a pruned model (nested models included).
        optimizer: the optimizer training it (`None` or unbuilt: nothing to zero).

    Example:

    >>> model = tfprune.prune(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
    ...                                         keras.layers.Dense(2, name="head")]))
    >>> mask_optimizer_states(model, None)  # nothing to zero before training
    """
    if keras_internals.constraints_read_state():
        return
    for wrapper in layers_of_type(model, (PruneWrapper, ChannelMaskWrapper)):
        wrapper.mask_optimizer_state(optimizer)
