"""Bundled data and reference models for the demo, benchmarks and tests.

Nothing here downloads: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import keras
import numpy as np


def load_digits(size: int = 16, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 real 8x8 handwritten digits, upsampled, as train/test arrays.

    Args:
        size: output side in pixels, a multiple of 8 (each pixel is repeated). Defaults
            to 16.
        test_fraction: share of the examples held out, stratified by class. Defaults to 0.2.
        seed: seed of the split. Defaults to 0.

    Returns:
        `(x_train, y_train), (x_test, y_test)`; images are float32 in [0, 1] with shape
        `(n, size, size, 1)`, labels int64 in 0..9.

    Raises:
        ValueError: if `size` is not a positive multiple of 8.

    Example:

    >>> (x, y), (x_test, y_test) = load_digits()
    >>> x.shape
    (1437, 16, 16, 1)
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if size <= 0 or size % 8:
        raise ValueError(f"size must be a positive multiple of 8, got {size}.")
    digits = sklearn_digits()
    images = digits.images.astype(np.float32) / 16.0
    factor = size // 8
    images = np.kron(images, np.ones((factor, factor), np.float32))[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=test_fraction,
        random_state=seed,
        stratify=digits.target,
    )
    return (x_train, y_train), (x_test, y_test)


def digits_cnn(
    width: float = 1.0, size: int = 16, classes: int = 10, name: str = "digits_cnn"
) -> keras.Model:
    """The demo's 3-conv CNN with BatchNormalization (momentum 0.9, see DESIGN notes).

    Args:
        width: multiplier of every conv's filter count (0.5 = the half-width baseline).
            Defaults to 1.
        size: input side in pixels. Defaults to 16.
        classes: output classes (softmax). Defaults to 10.
        name: model name. Defaults to "digits_cnn".

    Returns:
        An uncompiled functional model.

    Example:

    >>> digits_cnn(width=0.5).count_params() < digits_cnn().count_params()
    True
    """
    filters = [max(1, int(round(f * width))) for f in (16, 32, 64)]
    inputs = keras.Input((size, size, 1), name="image")
    x = inputs
    for index, count in enumerate(filters, start=1):
        x = keras.layers.Conv2D(count, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        if index < len(filters):
            x = keras.layers.MaxPooling2D(name=f"pool{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def load_mnist1d(seed: int = 0):
    """MNIST-1D (Greydanus, 2020), generated offline by the `mnist1d` package (extra `bench`).

    4,000 training and 1,000 test sequences of length 40 in 10 classes; never downloads.

    Args:
        seed: the generator's seed. Defaults to 0.

    Returns:
        `(x_train, y_train), (x_test, y_test)`, inputs float32 of shape `(n, 40, 1)`.

    Raises:
        ImportError: if `mnist1d` is not installed (`pip install -e '.[bench]'`).

    Example:

    ```python
    (x, y), (x_test, y_test) = load_mnist1d()  # x.shape == (4000, 40, 1)
    ```
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)
    x, x_test = (np.asarray(data[k], np.float32)[..., None] for k in ("x", "x_test"))
    return (x, np.asarray(data["y"], np.int64)), (x_test, np.asarray(data["y_test"], np.int64))


def mnist1d_cnn(width: float = 1.0, name: str = "mnist1d_cnn") -> keras.Model:
    """A 3-layer Conv1D CNN for MNIST-1D with BatchNormalization (momentum 0.9).

    Args:
        width: multiplier of every conv's filter count. Defaults to 1.
        name: model name. Defaults to "mnist1d_cnn".

    Returns:
        An uncompiled functional model with a softmax over 10 classes.

    Example:

    >>> mnist1d_cnn().output_shape
    (None, 10)
    """
    inputs = keras.Input((40, 1), name="sequence")
    x = inputs
    for index, (filters, stride) in enumerate(((32, 1), (64, 2), (64, 2)), start=1):
        x = keras.layers.Conv1D(
            max(1, int(round(filters * width))),
            5,
            strides=stride,
            padding="same",
            use_bias=False,
            name=f"conv{index}",
        )(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def mnist1d_gru(units: int = 64, name: str = "mnist1d_gru") -> keras.Model:
    """A two-layer GRU classifier for MNIST-1D: the recurrent counterpart of `mnist1d_cnn`.

    Args:
        units: hidden units of each GRU. Defaults to 64.
        name: model name. Defaults to "mnist1d_gru".

    Returns:
        An uncompiled functional model with a softmax over 10 classes.

    Example:

    >>> mnist1d_gru(units=8).output_shape
    (None, 10)
    """
    inputs = keras.Input((40, 1), name="sequence")
    x = keras.layers.GRU(units, return_sequences=True, name="gru1")(inputs)
    x = keras.layers.GRU(units, name="gru2")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def make_counting_task(n: int, length: int = 16, vocab: int = 16, classes: int = 4, seed: int = 0):
    """A generated sequence task: which of the tokens `1..classes` occurs most often?

    Each sequence holds its class token 3-4 times, every other class token fewer times, and
    noise tokens (ids above `classes`) elsewhere, shuffled. Small enough for the tests,
    and solvable only by looking at the whole sequence.

    Args:
        n: number of sequences.
        length: tokens per sequence. Defaults to 16.
        vocab: vocabulary size (token 0 is unused padding). Defaults to 16.
        classes: number of classes (signal tokens). Defaults to 4.
        seed: generator seed. Defaults to 0.

    Returns:
        `(x, y)`: int32 tokens of shape `(n, length)` and int64 labels in `[0, classes)`.

    Example:

    >>> x, y = make_counting_task(256)
    >>> x.shape, int(y.max()) < 4
    ((256, 16), True)
    """
    rng = np.random.default_rng(seed)
    x = rng.integers(classes + 1, vocab, size=(n, length)).astype(np.int32)
    y = rng.integers(0, classes, size=n)
    for row, label in zip(x, y):
        count = int(rng.integers(3, 5))
        tokens = [label + 1] * count
        for other in range(classes):
            if other != label:
                tokens += [other + 1] * int(rng.integers(0, count))
        row[rng.permutation(length)[: len(tokens)]] = tokens
    return x, y.astype(np.int64)


def tiny_transformer(
    vocab: int = 16,
    length: int = 16,
    d_model: int = 32,
    heads: int = 4,
    ffn: int = 64,
    blocks: int = 2,
    classes: int = 4,
    name: str = "tiny_transformer",
) -> keras.Model:
    """A small Keras transformer encoder: token embedding, post-norm blocks, mean pooling.

    Each block is `LayerNorm(x + MultiHeadAttention(x, x))` then
    `LayerNorm(x + Dense(d_model)(Dense(ffn, relu)(x)))`.

    Args:
        vocab: vocabulary size. Defaults to 16.
        length: sequence length. Defaults to 16.
        d_model: embedding width. Defaults to 32.
        heads: attention heads per block (key_dim = d_model // heads). Defaults to 4.
        ffn: hidden units of each feed-forward layer. Defaults to 64.
        blocks: number of encoder blocks. Defaults to 2.
        classes: output classes (softmax). Defaults to 4.
        name: model name. Defaults to "tiny_transformer".

    Returns:
        An uncompiled functional model taking int32 tokens of shape `(batch, length)`.

    Example:

    >>> tiny_transformer().output_shape
    (None, 4)
    """
    inputs = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab, d_model, name="embedding")(inputs)
    for b in range(1, blocks + 1):
        attention = keras.layers.MultiHeadAttention(heads, d_model // heads, name=f"attention{b}")(
            x, x
        )
        x = keras.layers.LayerNormalization(name=f"norm{b}a")(
            keras.layers.Add(name=f"residual{b}a")([x, attention])
        )
        hidden = keras.layers.Dense(ffn, activation="relu", name=f"ffn{b}_up")(x)
        x = keras.layers.LayerNormalization(name=f"norm{b}b")(
            keras.layers.Add(name=f"residual{b}b")(
                [x, keras.layers.Dense(d_model, name=f"ffn{b}_down")(hidden)]
            )
        )
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(
        inputs, keras.layers.Dense(classes, activation="softmax", name="classifier")(x), name=name
    )
