"""Helpers the tests share: tiny real Keras 3 models, random networks and pruning steps.

Tests import them by name (`from helpers import small_cnn`); the fixtures built on them live
in `conftest.py`.
"""

import keras
import numpy as np
from hypothesis import strategies as st

import tfprune
from tfprune.masking.ranking import apply_target
from tfprune.zoo import digits_cnn


def small_cnn(name="cnn", input_shape=(12, 12, 1), classes=4):
    """Conv -> Conv -> BN -> strided Conv -> GAP -> Dense: the shape of the demo CNN."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


@st.composite
def network_plans(draw):
    """Plans of random functional CNNs for `build_network`: a seed, the stem's width and
    blocks drawn from residual Adds, Concatenates, depthwise blocks, BN and
    LayerNormalization over channels. Hypothesis forbids `random` inside strategies, and
    Keras draws initializer seeds from it, so the model is built in the test from the plan."""
    kinds = ["residual", "concat", "depthwise", "plain", "pool", "layernorm"]
    blocks = draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.sampled_from([4, 6]),
                st.sampled_from([1, 2]),
                st.booleans(),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return draw(st.integers(0, 2**16)), draw(st.sampled_from([4, 8])), blocks


def build_network(plan):
    """The functional CNN a `network_plans` plan describes, with seeded weights."""
    seed, width, blocks = plan
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(width, 3, padding="same")(inputs)
    for kind, concat_width, depth_multiplier, flag in blocks:
        if kind == "residual":
            h = keras.layers.Conv2D(x.shape[-1], 3, padding="same")(x)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.ReLU()(h)
            x = keras.layers.Add()([x, h])
        elif kind == "concat":
            h = keras.layers.Conv2D(concat_width, 1)(x)
            x = keras.layers.Concatenate()([x, h])
        elif kind == "depthwise":
            x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=depth_multiplier)(
                x
            )
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.Conv2D(8, 1, activation="relu")(x)
        elif kind == "layernorm":
            x = keras.layers.LayerNormalization(center=flag)(x)
            x = keras.layers.Conv2D(8, 1, activation="relu")(x)
        elif kind == "pool":
            x = keras.layers.MaxPooling2D()(x) if x.shape[1] > 2 else x
        else:
            padding = "valid" if flag and x.shape[1] > 2 else "same"
            x = keras.layers.Conv2D(8, 3, padding=padding)(x)
            x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def randomly_pruned(model, target, seed, ranking="local"):
    """`model` filter-pruned to `target` with random criterion scores, so that the masks are
    random too (weight norms would pick the same filters every time)."""
    pruned = tfprune.prune(
        model,
        schedule=tfprune.OneShot(target),
        ranking=ranking,
        protect=None,
        criterion=tfprune.criteria.RandomScores(seed),
    )
    apply_target(pruned, target)
    return pruned


def randomize_bn(model, seed=0):
    """Trained-looking BN statistics and LayerNormalization weights, so constants after a
    pruned filter are not trivially zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_bn(layer, seed + 1)
        elif isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),
                    rng.normal(0, 0.5, c),
                    rng.normal(0, 0.5, c),
                    rng.uniform(0.5, 2, c),
                ]
            )
        elif isinstance(layer, keras.layers.LayerNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape)
                    if w.name == "gamma"
                    else rng.normal(0, 0.5, w.shape)
                    for w in layer.weights
                ]
            )


def prune_and_shrink(model, target=0.3, **kwargs):
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(target), **kwargs)
    apply_target(pruned, target)
    return pruned, tfprune.shrink(pruned)


def max_diff(a, b, x):
    return float(np.abs(np.asarray(a(x, training=False)) - np.asarray(b(x, training=False))).max())


def inputs_for(model, n=4, seed=0):
    return np.random.default_rng(seed).random((n, *model.input_shape[1:]), dtype=np.float32)


def densenet_style():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    for block in range(3):
        h = keras.layers.BatchNormalization()(x)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(8, 1, name=f"bottleneck{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(4, 3, padding="same", name=f"growth{block}")(h)
        x = keras.layers.Concatenate()([x, h])
    x = keras.layers.Conv2D(8, 1, name="transition")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="densenet_style")


def efficientnet_style():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("swish")(x)
    for block in range(2):
        shortcut = x
        h = keras.layers.Conv2D(32, 1, use_bias=False, name=f"expand{block}")(x)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("swish")(h)
        h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.Activation("swish")(h)
        se = keras.layers.GlobalAveragePooling2D()(h)
        se = keras.layers.Reshape((1, 1, 32))(se)
        se = keras.layers.Conv2D(4, 1, activation="swish", name=f"se_reduce{block}")(se)
        se = keras.layers.Conv2D(32, 1, activation="sigmoid", name=f"se_expand{block}")(se)
        h = keras.layers.Multiply()([h, se])
        h = keras.layers.Conv2D(16, 1, use_bias=False, name=f"project{block}")(h)
        h = keras.layers.BatchNormalization()(h)
        x = keras.layers.Add()([shortcut, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="efficientnet_style")


def convnext_style():
    """ConvNeXt blocks: depthwise 7x7, LayerNormalization over channels, an inverted Dense
    bottleneck and a residual Add, with LayerNormalization before each downsampling."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 4, strides=4, name="stem")(inputs)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="stem_norm")(x)
    for stage, width in enumerate((16, 32)):
        if stage:
            x = keras.layers.LayerNormalization(epsilon=1e-6, name=f"down_norm{stage}")(x)
            x = keras.layers.Conv2D(width, 2, strides=2, name=f"down{stage}")(x)
        shortcut = x
        h = keras.layers.DepthwiseConv2D(7, padding="same", name=f"dw{stage}")(x)
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"norm{stage}")(h)
        h = keras.layers.Dense(4 * width, activation="gelu", name=f"expand{stage}")(h)
        h = keras.layers.Dense(width, name=f"project{stage}")(h)
        x = keras.layers.Add()([shortcut, h])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="head_norm")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x), name="convnext_style")


def conv_with_filters(filters):
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(filters.shape[-1], 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(4, 1, name="reader")(x)
    x = keras.layers.Conv2D(2, 1, name="head")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    model.get_layer("conv").set_weights([filters, np.zeros(filters.shape[-1], np.float32)])
    return model


def pruned_filters(model, criterion, n=1):
    pruned = tfprune.prune(
        model, criterion=criterion, layers=["conv"], schedule=tfprune.OneShot(n / 8)
    )
    tfprune.apply_target(pruned, n / 8)
    mask = pruned.get_layer("prune_conv").mask_array()
    return set(np.flatnonzero(mask.reshape(-1, 8).max(axis=0) == 0))


def pruned_in_adversarial_training(criterion, x, y):
    """A digits CNN pruned by `criterion` to half its filters at step 2 of one epoch of FGSM
    adversarial training on `(x, y)`, which are also the criterion's calibration data."""
    pruned = tfprune.prune(digits_cnn(), criterion=criterion, schedule=tfprune.OneShot(0.5, step=2))
    trainer = tfprune.AdversarialTraining(pruned, tfprune.FGSM(eps=0.1))
    trainer.compile("adam", "sparse_categorical_crossentropy")
    callback = tfprune.PruningCallback(data=(x, y))
    trainer.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    return pruned


def wrapped_names(model):
    return [w.layer.name for w in tfprune.wrappers_of(model)]


def conv_model():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)  # 8x8 output
    x = keras.layers.Conv2DTranspose(2, 3, strides=2, name="tconv")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="fc")(x)
    return keras.Model(inputs, outputs)


def keras_hub_text_backbone(kind, **overrides):
    """A small KerasHub `BertBackbone` or `GPT2Backbone` (2 blocks of width 16, 2 heads,
    feed-forward 32, vocabulary 50, 8 tokens), built from constructor arguments (presets
    download weights at run time); `overrides` change any of them."""
    import keras_hub

    backbone = {"bert": keras_hub.models.BertBackbone, "gpt2": keras_hub.models.GPT2Backbone}
    sizes = {
        "vocabulary_size": 50,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 32,
        "max_sequence_length": 8,
    }
    return backbone[kind](**{**sizes, **overrides})


def tiny_efficientnet(block_types):
    """A three-stage KerasHub `EfficientNetBackbone` on 16x16 images, its stages of the given
    block types (`"v1"`, `"fused"`, `"unfused"`), built from constructor arguments."""
    import keras_hub

    return keras_hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 1, 1],
        stackwise_input_filters=[16, 16, 24],
        stackwise_output_filters=[16, 24, 32],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.25, 0.25],
        stackwise_strides=[1, 2, 2],
        stackwise_block_types=block_types,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        input_shape=(16, 16, 3),
    )
