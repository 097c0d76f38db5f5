"""The README's quick start, run against an installed tfprune (the release check's last step).

`make release-check` builds the wheel and the sdist, checks them with twine, installs the
wheel into a fresh virtualenv and runs this there, outside the source tree, so that it
imports the installed package: prune -> fit -> strip -> shrink -> export -> verify -> time.

    python tools/quickstart_check.py
"""

import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    y = np.arange(64) % 4

    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=8, frequency=2)
    pruned = tfprune.prune(model, granularity="filter", criterion="l1", schedule=schedule)
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pruned.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[tfprune.PruningCallback()])
    plain = tfprune.shrink(tfprune.strip(pruned))
    path = pathlib.Path(tempfile.mkdtemp()) / "model.tflite"
    tfprune.export_tflite(plain, path)
    difference = tfprune.verify_tflite(path, plain, x[:16])
    assert difference <= 1e-4, difference
    assert plain.count_params() < model.count_params()
    print(f"tfprune {tfprune.__version__} from {pathlib.Path(tfprune.__file__).parent}")
    latency = tfprune.benchmark_tflite(path)
    print(f"quick start: LiteRT matches Keras to {difference:.1e}; {latency}")
    print(tfprune.summary(plain))


if __name__ == "__main__":
    main()
