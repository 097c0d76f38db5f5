"""The CNN the distributed tests train (imported by the worker scripts)."""

import keras


def network():
    """Three convolutions and a softmax head over 16x16 digits.

    No BatchNormalization: under a distribution strategy it normalises each replica's share
    of the batch unless built with synchronized=True, so it would not match one device
    (README).
    """
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x))
