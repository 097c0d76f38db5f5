"""Bundled data and reference models for the demo, benchmarks and tests.

Nothing here downloads: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import keras
import numpy as np


def load_digits(size: int = 16, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 real 8x8 handwritten digits, upsampled, as train/test arrays.

    Args:
        size: output side in pixels, a multiple of 8 (each pixel is repeated).
        test_fraction: share of the examples held out, stratified by class.
        seed: seed of the split.

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
        images, digits.target.astype(np.int64), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (x_train, y_train), (x_test, y_test)


def digits_cnn(width: float = 1.0, size: int = 16, classes: int = 10, name: str = "digits_cnn") -> keras.Model:
    """The demo's 3-conv CNN with BatchNormalization (momentum 0.9, see DESIGN notes).

    Args:
        width: multiplier of every conv's filter count (0.5 = the half-width baseline).
        size: input side in pixels.
        classes: output classes (softmax).
        name: model name.

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
        seed: the generator's seed.

    Returns:
        `(x_train, y_train), (x_test, y_test)`, inputs float32 of shape `(n, 40, 1)`.

    Raises:
        ImportError: if `mnist1d` is not installed (`pip install -e '.[bench]'`).

    Example:

    >>> (x, y), (x_test, y_test) = load_mnist1d()
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
        width: multiplier of every conv's filter count.
        name: model name.

    Returns:
        An uncompiled functional model with a softmax over 10 classes.

    Example:

    >>> mnist1d_cnn().output_shape
    (None, 10)
    """
    inputs = keras.Input((40, 1), name="sequence")
    x = inputs
    for index, (filters, stride) in enumerate(((32, 1), (64, 2), (64, 2)), start=1):
        x = keras.layers.Conv1D(max(1, int(round(filters * width))), 5, strides=stride, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)
