"""Tiny KerasHub models built from constructor arguments (presets download weights at run
time), one per family whose blocks are custom layers, with inputs for them."""

import keras_hub
import numpy as np

MODELS = keras_hub.models


def token_inputs(batch=2, length=8, vocabulary=50, segments=False):
    """Token ids and a padding mask (the last sequence padded), as KerasHub backbones take."""
    rng = np.random.default_rng(0)
    mask = np.ones((batch, length), "int32")
    mask[-1, length // 2 :] = 0
    x = {"token_ids": rng.integers(1, vocabulary, (batch, length)).astype("int32")}
    x["padding_mask"] = mask
    if segments:
        x["segment_ids"] = np.zeros((batch, length), "int32")
    return x


def images(batch=2, side=32):
    return np.random.default_rng(0).random((batch, side, side, 3)).astype("float32")


def llama():
    return MODELS.LlamaBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
    )


def gemma():
    return MODELS.GemmaBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=8,
    )


def deit():
    return MODELS.DeiTBackbone(
        image_shape=(32, 32, 3),
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )


def deberta():
    return MODELS.DebertaV3Backbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
        bucket_size=8,
    )


def albert():
    return MODELS.AlbertBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        embedding_dim=16,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=32,
    )


def mobilenet():
    """KerasHub's MobileNetV3-shaped backbone, narrowed."""
    return MODELS.MobileNetBackbone(
        stackwise_expansion=[[32, 48], [64, 96]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=64,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=64,
        image_shape=(32, 32, 3),
    )


def whisper():
    return MODELS.WhisperBackbone(
        vocabulary_size=50,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_mels=8,
        max_encoder_sequence_length=32,
        max_decoder_sequence_length=16,
    )


def whisper_inputs(batch=2, length=8):
    x = token_inputs(batch, length)
    return {
        "encoder_features": np.random.default_rng(1).random((batch, 32, 8)).astype("float32"),
        "decoder_token_ids": x["token_ids"],
        "decoder_padding_mask": x["padding_mask"],
    }


# name -> (builder, inputs at a batch size and length)
FAMILIES = {
    "llama": (llama, lambda b, n: token_inputs(b, n)),
    "gemma": (gemma, lambda b, n: token_inputs(b, n)),
    "deit": (deit, lambda b, n: images(b)),
    "deberta": (deberta, lambda b, n: token_inputs(b, n)),
    "albert": (albert, lambda b, n: token_inputs(b, n, segments=True)),
    "mobilenet": (mobilenet, lambda b, n: images(b)),
    "whisper": (whisper, whisper_inputs),
}
