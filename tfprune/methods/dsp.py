"""Dynamic Structure Pruning, first-order version.

From "Dynamic Structure Pruning for Compressing CNNs" (Park et al., arXiv 2303.09736).

Intra-channel pruning: each convolution's filters are split into G groups, and each group
keeps its own subset of input channels.

1. Group learning (`DSP`, a model wrapper you `compile` and `fit`): learnable group logits
   `theta` of shape `(G, filters)` per convolution; a soft assignment
   `a = gumbel_softmax(theta / 0.5)` over the groups; the group-lasso regulariser
   `R = sum_g (sum_f sqrt(a_gf))^2 * sum_c || a_g * W[..., c, :] ||_2` added to the loss with a
   coefficient ramping linearly from 0 to `lam` over `ramp_steps`. This is the documented
   first-order simplification: no second-order lookahead step; `theta` trains with its own
   Adam (1e-3) on the same loss.
2. Pruning (`DSP.prune`): each filter goes to its group `argmax_g theta`; input channel `c`
   of group `g` has importance `sum_{f in g} ||W[..., c, f]||^2`, normalised within the group;
   channels are dropped in ascending order while their cumulative share stays below `beta`,
   and a bisection on `beta` meets a FLOPs target.
3. Deployment (`deploy_groups`): every pruned convolution becomes a `GroupedConv2D`: G
   convolutions, each reading its own channel subset, concatenated back into filter order.
   It computes exactly what the masked convolution computed, with fewer FLOPs, and exports
   to LiteRT (GATHER, CONV_2D, CONCATENATION).

The grouped form does not pay in LiteRT: each group's channel subset is a GATHER, which
XNNPACK does not run, and on the digits CNN the grouped model at half the FLOPs measured 1.7-2.5x
the dense model's latency. Subsets of different groups overlap, so no ordering of the channels
makes them contiguous slices for a native grouped convolution. `DSP.prune(form="auto")`
therefore also builds the *filter* form, the regulariser's result read at the level of whole
channels: a channel goes when the convolutions that read it read it least
(`sum_g ||a_g * W[..., c, :]||` is what the group lasso shrinks), and removing it removes its
producer's filter (tfprune's channel groups and `shrink`); then it times both forms in
LiteRT and keeps the faster.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from tfprune.core import checks
from tfprune.core.latest_value import LatestValue
from tfprune.core.own_variables import TrainsOwnVariables
from tfprune.criteria.base import ContextCriterion, spread_over_filters
from tfprune.criteria.lap import neighbour_norms
from tfprune.export.interpreter import interleaved_latencies
from tfprune.graph.flops import count_flops, layer_flops
from tfprune.layers import registry
from tfprune.layers.grouped_conv import GroupedConv2D
from tfprune.masking.prune import prune
from tfprune.masking.ranking import apply_target
from tfprune.masking.schedules import OneShot
from tfprune.masking.strip import strip
from tfprune.shrinking.shrink import shrink

FORMS = ("grouped", "filters", "auto")


def _eligible(model, layers):
    convs = [
        layer
        for layer in model.layers
        if type(layer) is keras.layers.Conv2D
        and layer.groups == 1
        and layer.data_format == "channels_last"
    ]
    if layers is None:
        # Not the first convolution (it reads the image), as in the paper.
        return convs[1:]
    names = {layer.name: layer for layer in convs}
    unknown = sorted(set(layers) - set(names))
    if unknown:
        raise ValueError(
            f"DSP: {unknown} are not plain channels_last Conv2D layers of the model (top level, "
            "groups=1)."
        )
    return [names[name] for name in layers]


@dataclasses.dataclass
class GroupPlan:
    """`DSP.prune`'s result: the masked model and how to deploy it.

    Attributes:
        masked: a plain copy of the model whose pruned kernel entries (grouped form) or
            filters (filter form) are zero.
        groups: `{layer name: [[input channels], [filters]] per group}` (grouped form; `{}`
            for the filter form).
        beta: the cumulative-share threshold the bisection chose (grouped form; `None` for
            the filter form).
        flops_removed: fraction of the model's FLOPs the deployed model removes.
        form: `"grouped"` (deployed as `GroupedConv2D` layers) or `"filters"` (whole
            channels removed by `tfprune.shrink`).
        latency: with `form="auto"`, the measured LiteRT seconds of one invoke of each
            form's deployment, `{"grouped": s, "filters": s}`; else `{}`.

    Example:

    ```python
    plan = dsp.prune(flops_target=0.5)
    print(plan.form, plan.flops_removed, plan.latency)  # filters 0.5 {'grouped': ..., ...}
    ```
    """

    masked: keras.Model
    groups: dict
    beta: float | None
    flops_removed: float
    form: str = "grouped"
    latency: dict = dataclasses.field(default_factory=dict)


class _ChannelReads(ContextCriterion):
    """Scores each filter by how much the layers reading its output channel use it: the
    squared norm of their input slices over that channel (`sum_g sum_f W[..., c, f]^2` for a
    DSP convolution, the quantity its group lasso drives to zero for a channel no group
    needs). A channel nothing registered reads scores by its own filter's squared norm."""

    granularities = ("filter",)

    def __call__(self, weight, layer, context):
        _, consumers, _ = context.cached(
            (_ChannelReads, "norms"), lambda: neighbour_norms(context.graph)
        )
        spec = registry.spec_for(layer)
        out = context.call_of(layer).outputs[0]
        own = (spec.to_canonical(weight.astype(np.float64)) ** 2).reshape(
            spec.filter_count(weight.shape), -1
        )
        scores = [consumers.get(context.graph.root(out, f), own[f].sum()) for f in range(len(own))]
        return spread_over_filters(layer, weight, scores)


@keras.saving.register_keras_serializable(package="tfprune")
class DSP(TrainsOwnVariables, keras.Model):
    """Group learning for Dynamic Structure Pruning; `compile` and `fit` it like the model.

    Args:
        model: a Keras 3 functional model with Conv2D layers (channels_last).
        groups: G, the number of filter groups per convolution. Defaults to 4.
        lam: the regulariser's final coefficient (the paper used 2e-3 for ResNet20 and 5e-4
            for ResNet56). Defaults to 5e-4.
        ramp_steps: training steps over which the coefficient rises linearly from 0 to `lam`.
            Defaults to 1000.
        layers: names of the Conv2D layers to prune, or `None` for all but the first.
            Defaults to `None`.
        temperature: Gumbel-softmax temperature. Defaults to 0.5.
        logit_learning_rate: Adam learning rate of the group logits. Defaults to 1e-3.

    Training a `DSP` trains `model` itself (as `fit` on the model would): copy the model
    first to keep the dense one.

    Raises:
        TypeError: for a model that is not a Keras 3 functional/Sequential model.
        ValueError: for groups < 2, a negative `lam`, `ramp_steps` < 1, or unknown layers.

    Example:

    ```python
    dsp = tfprune.methods.DSP(model, groups=4, lam=5e-4, ramp_steps=500)
    dsp.compile("adam", "sparse_categorical_crossentropy")
    dsp.fit(x, y, epochs=10)
    plan = dsp.prune(flops_target=0.5)  # grouped or filter form, whichever runs faster
    fast = tfprune.methods.deploy_groups(plan)
    ```
    """

    def __init__(
        self,
        model,
        groups=4,
        lam=5e-4,
        ramp_steps=1000,
        layers=None,
        temperature=0.5,
        logit_learning_rate=1e-3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, dict):
            model = keras.saving.deserialize_keras_object(model)
        checks.check_model(model, "DSP")
        checks.check_integer("DSP: groups", groups, minimum=2)
        checks.check_number("DSP: lam", lam, low=0)
        checks.check_integer("DSP: ramp_steps", ramp_steps, minimum=1)
        self.convs = _eligible(model, layers)
        if not self.convs:
            raise ValueError(
                "DSP: the model has no Conv2D layer to prune (the first convolution is left alone)."
            )
        self.model = model
        self.n_groups, self.lam, self.ramp_steps = groups, float(lam), ramp_steps
        self.temperature, self.logit_learning_rate = float(temperature), float(logit_learning_rate)
        self.layer_names = [layer.name for layer in self.convs]
        # Small random logits, so that filters start spread over the groups. Trainable, so
        # that each backend's train step differentiates them; `compile` gives them their
        # own Adam.
        self.logits = [
            self.add_weight(
                shape=(groups, layer.filters),
                initializer=keras.initializers.RandomNormal(stddev=0.01),
                trainable=True,
                name=f"logits_{i}",
            )
            for i, layer in enumerate(self.convs)
        ]
        self.step = self.add_weight(shape=(), initializer="zeros", trainable=False, name="dsp_step")
        self.gumbel_seed = keras.random.SeedGenerator()
        self.lasso_tracker = LatestValue(name="group_lasso")
        self.lambda_tracker = LatestValue(name="dsp_lambda")
        self.built = True

    def own_training(self) -> tuple:
        """`(Adam learning rate, variables)` of the group logits (see `TrainsOwnVariables`)."""
        return self.logit_learning_rate, self.logits

    @property
    def inner_model(self):
        """The model being trained (what `prune` masks and deploys)."""
        return self.model

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def regulariser(self, sample=True):
        """The group-lasso term R summed over the pruned convolutions (a scalar tensor).

        Args:
            sample: draw the soft assignment with Gumbel noise, as in training; `False`
                for the noiseless softmax. Defaults to `True`.

        Returns:
            A scalar backend tensor.
        """
        total = 0.0
        for layer, logits in zip(self.convs, self.logits):
            scaled = logits.value / self.temperature
            if sample:
                uniform = keras.random.uniform(
                    tuple(logits.shape), 1e-6, 1 - 1e-6, seed=self.gumbel_seed
                )
                scaled = scaled - ops.log(-ops.log(uniform))
            groups, filters = logits.shape
            assignment = ops.softmax(scaled, axis=0)  # (G, filters)
            # (G, kh, kw, in, filters): each group's share of the kernel.
            group_kernels = ops.expand_dims(layer.kernel.value, 0) * ops.reshape(
                assignment, (groups, 1, 1, 1, filters)
            )
            norms = ops.sqrt(ops.sum(ops.square(group_kernels), axis=(1, 2, 4)) + 1e-12)  # (G, in)
            sizes = ops.square(ops.sum(ops.sqrt(assignment + 1e-12), axis=1))  # (G,)
            total += ops.sum(sizes * ops.sum(norms, axis=1))
        return total

    def penalty(self):
        """The group lasso times its ramped coefficient, for this training step (see
        `TrainsOwnVariables`); the ramp's step counter advances, and `group_lasso` and
        `dsp_lambda` are logged.

        Returns:
            A scalar backend tensor.
        """
        coefficient = self.lam * ops.minimum(1.0, self.step.value / float(self.ramp_steps))
        lasso = self.regulariser()
        self.step.assign_add(1.0)
        self.lasso_tracker.update_state(lasso)
        self.lambda_tracker.update_state(coefficient)
        return coefficient * lasso

    def assignments(self) -> dict:
        """`{layer name: group index per filter}` (the argmax of the logits)."""
        return {
            layer.name: np.argmax(keras.ops.convert_to_numpy(logits), axis=0)
            for layer, logits in zip(self.convs, self.logits)
        }

    def _channel_shares(self):
        """Per layer, `(filters, input channels in rising share, cumulative share)` for each
        non-empty group: what `_groups_at` thresholds, computed once per `prune`."""
        result = {}
        for layer, (name, assignment) in zip(self.convs, self.assignments().items()):
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            groups = []
            for g in range(self.n_groups):
                filters = np.flatnonzero(assignment == g)
                if not filters.size:
                    continue
                importance = np.sum(np.square(kernel[..., filters]), axis=(0, 1, 3))
                share = importance / max(importance.sum(), 1e-30)
                order = np.argsort(share, kind="stable")
                groups.append((filters, order, np.cumsum(share[order])))
            result[name] = (kernel.shape[2], groups)
        return result

    @staticmethod
    def _groups_at(beta, shares):
        """Per layer, the kept input channels of each group at threshold `beta`."""
        result = {}
        for name, (channels, groups) in shares.items():
            # Drop the least important channels while their cumulative share stays below beta.
            result[name] = [
                [
                    np.setdiff1d(np.arange(channels), order[cumulative < beta]).tolist(),
                    filters.tolist(),
                ]
                for filters, order, cumulative in groups
            ]
        return result

    def _masked(self, groups):
        masked = keras.models.clone_model(self.model)
        masked.set_weights(self.model.get_weights())
        for name, layer_groups in groups.items():
            layer = masked.get_layer(name)
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            mask = np.zeros_like(kernel)
            for inputs, filters in layer_groups:
                mask[:, :, np.asarray(inputs, int)[:, None], np.asarray(filters, int)[None, :]] = 1
            layer.kernel.assign(kernel * mask)
        return masked

    def prune(self, flops_target=0.5, tolerance=0.02, form="auto", threads=1) -> GroupPlan:
        """Prune the trained model to a FLOPs target, in the form that runs faster.

        The grouped form chooses each group's input channels, bisecting `beta` to meet the
        target. The filter form removes whole channels, ranked by how much the layers reading
        them use them (after group learning, the channels every group dropped score lowest),
        with tfprune's filter pruning (`prune` defaults, global ranking, FLOPs target).

        Args:
            flops_target: fraction of the model's FLOPs to remove, in (0, 1). Defaults to 0.5.
            tolerance: accepted distance to the target (grouped form). Defaults to 0.02.
            form: `"grouped"`, `"filters"`, or `"auto"`: build both, time their deployments
                in LiteRT (`threads` threads, in turns) and keep the faster. Defaults to
                `"auto"`.
            threads: LiteRT threads for `form="auto"`'s timing. Defaults to 1.

        Returns:
            A `GroupPlan` (the trained model itself is unchanged).

        Raises:
            ValueError: for a target outside (0, 1), an unknown `form`, or a target the
                pruned layers cannot reach in the asked form.
        """
        checks.check_number(
            "DSP.prune: flops_target", flops_target, 0, 1, include_low=False, include_high=False
        )
        checks.check_choice("DSP.prune: form", form, FORMS)
        checks.check_integer("DSP.prune: threads", threads, minimum=1)
        if form == "filters":
            return self._filter_plan(flops_target)
        if form == "grouped":
            return self._grouped_plan(flops_target, tolerance)
        filters = self._filter_plan(flops_target)
        try:
            grouped = self._grouped_plan(flops_target, tolerance)
        except ValueError:  # whole channels reach further than channels within groups
            return filters
        # The converter loads TensorFlow: only this choice needs it.
        from tfprune.export.converter import convert

        seconds = interleaved_latencies(
            [convert(deploy_groups(plan)) for plan in (grouped, filters)], threads, rounds=5
        )
        chosen = grouped if seconds[0] < seconds[1] else filters
        chosen.latency = dict(zip(("grouped", "filters"), seconds))
        return chosen

    def _filter_plan(self, flops_target) -> GroupPlan:
        """The filter form: whole channels removed to `flops_target` of the FLOPs."""
        pruned = prune(
            self.model,
            criterion=_ChannelReads(),
            target="flops",
            ranking="global",
            schedule=OneShot(flops_target),
        )
        apply_target(pruned, flops_target)
        masked = strip(pruned)
        removed = 1 - count_flops(shrink(masked)) / count_flops(self.model)
        return GroupPlan(masked, {}, None, removed, form="filters")

    def _grouped_plan(self, flops_target, tolerance) -> GroupPlan:
        """The grouped form: each group's input channels, `beta` bisected to the target."""
        dense_flops = count_flops(self.model)
        # FLOPs per kernel weight of each pruned convolution: the bisection counts zeroed
        # weights instead of building and counting a masked model at every step.
        per_weight = {
            layer.name: layer_flops(layer) / int(np.prod(layer.kernel.shape))
            for layer in self.convs
        }
        taps = {layer.name: int(np.prod(layer.kernel_size)) for layer in self.convs}
        channels = {layer.name: int(layer.kernel.shape[2]) for layer in self.convs}

        def removed_by(groups):
            zeroed = {
                name: sum(
                    len(filters) * (channels[name] - len(inputs)) * taps[name]
                    for inputs, filters in layer_groups
                )
                for name, layer_groups in groups.items()
            }
            return sum(zeroed[name] * per_weight[name] for name in zeroed) / dense_flops

        shares = self._channel_shares()
        low, high, best = 0.0, 1.0, None
        for _ in range(30):
            beta = (low + high) / 2
            groups = self._groups_at(beta, shares)
            removed = removed_by(groups)
            best = min(
                best or (np.inf, None),
                (abs(removed - flops_target), (beta, groups, removed)),
                key=lambda item: item[0],
            )
            if abs(removed - flops_target) <= tolerance / 4:
                break
            low, high = (beta, high) if removed < flops_target else (low, beta)
        distance, (beta, groups, removed) = best
        if distance > tolerance:
            raise ValueError(
                f"DSP.prune: the pruned convolutions can remove at most about {removed:.1%} of the "
                f"FLOPs here, not {flops_target:.0%}; lower the target or prune more layers."
            )
        masked = self._masked(groups)
        return GroupPlan(masked, groups, beta, removed)

    def get_config(self):
        return {
            "model": keras.saving.serialize_keras_object(self.model),
            "groups": self.n_groups,
            "lam": self.lam,
            "ramp_steps": self.ramp_steps,
            "layers": self.layer_names,
            "temperature": self.temperature,
            "logit_learning_rate": self.logit_learning_rate,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def deploy_groups(plan: GroupPlan) -> keras.Model:
    """The model a `DSP` plan deploys: grouped form, the masked model with every pruned
    convolution replaced by a `GroupedConv2D`; filter form, `tfprune.shrink(plan.masked)`.

    Args:
        plan: from `DSP.prune`.

    Returns:
        A new model computing the same function as `plan.masked` with fewer FLOPs; it saves
        to `.keras` and exports to LiteRT.

    Example:

    ```python
    fast = tfprune.methods.deploy_groups(dsp.prune(flops_target=0.5))
    tfprune.export_tflite(fast, "dsp.tflite")
    ```
    """
    if plan.form == "filters":
        return shrink(plan.masked)

    def clone(layer):
        if layer.name not in plan.groups:
            return layer.__class__.from_config(layer.get_config())
        config = layer.get_config()
        return GroupedConv2D(
            config["filters"],
            config["kernel_size"],
            plan.groups[layer.name],
            strides=config["strides"],
            padding=config["padding"],
            dilation_rate=config["dilation_rate"],
            activation=config["activation"],
            use_bias=config["use_bias"],
            name=layer.name,
        )

    deployed = keras.models.clone_model(plan.masked, clone_function=clone)
    for source in plan.masked.layers:
        target = deployed.get_layer(source.name)
        if source.name not in plan.groups:
            target.set_weights(source.get_weights())
            continue
        kernel = keras.ops.convert_to_numpy(source.kernel)
        for (inputs, filters), variable in zip(plan.groups[source.name], target.kernels):
            variable.assign(
                kernel[
                    :, :, np.asarray(inputs or [0], int)[:, None], np.asarray(filters, int)[None, :]
                ]
            )
        if source.use_bias:
            target.bias.assign(keras.ops.convert_to_numpy(source.bias))
    return deployed
