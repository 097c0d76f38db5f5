"""Run by test_backends.py under one Keras backend (KERAS_BACKEND is set by the caller):

    python backend_worker.py OUT_DIR {import,fit,export}

- `import`: imports tfprune and reports whether TensorFlow was loaded.
- `fit`: the data path on a small CNN with BatchNormalization, a residual Add and a Dense
  layer (prune -> fit -> strip -> shrink -> summary -> explain -> save and load `.keras`),
  with mask updates in the middle of epochs; after every optimizer step a callback reads the
  weights back and records the largest masked weight.

- `export`: `export_tflite` of a pruned and a shrunk CNN (float, sparse "auto" and int8), each
  file verified against this backend's outputs, and an export with wrong input shapes.

Each writes `OUT_DIR/result.json`, with the backend and the tfprune modules loaded.
"""

import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def report(out, result):
    result["backend"] = __import__("keras").backend.backend()
    result["tensorflow_loaded"] = "tensorflow" in sys.modules
    result["tfprune_modules"] = sorted(m for m in sys.modules if m.startswith("tfprune"))
    (out / "result.json").write_text(json.dumps(result))


def imported(out):
    import tfprune

    _ = (tfprune.prune, tfprune.PruningCallback, tfprune.strip, tfprune.shrink)
    report(out, {})


def network():
    import keras

    # Seeded initializers: keras.utils.set_random_seed would load TensorFlow where it is
    # installed, whatever the backend.
    seeded = {"kernel_initializer": keras.initializers.GlorotUniform(seed=0)}
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1", **seeded)(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2", **seeded)(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc", **seeded)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head", **seeded)(x))


def largest_masked(model) -> float:
    """The largest weight of `model` where a mask is 0."""
    import keras
    import numpy as np

    import tfprune

    largest = 0.0
    for wrapper in tfprune.wrappers_of(model):
        for variable, part in wrapper.mask_parts() + wrapper.mask_parts(bias=True):
            kept = keras.ops.convert_to_numpy(part)
            value = keras.ops.convert_to_numpy(variable)
            largest = max(largest, float(np.abs(value * (1 - kept)).max()))
    return largest


def fitted(out):
    import keras
    import numpy as np

    import tfprune
    from tfprune.core import keras_internals
    from tfprune.masking.wrappers import model_sparsity

    class MaskedWeights(keras.callbacks.Callback):
        """After every step: the largest masked weight, and the model's sparsity."""

        def __init__(self):
            super().__init__()
            self.largest, self.sparsity = [], []

        def on_train_batch_end(self, batch, logs=None):
            keras_internals.sync_training_state(self.model)
            self.largest.append(largest_masked(self.model))
            self.sparsity.append(model_sparsity(tfprune.wrappers_of(self.model)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 64)
    model = network()
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=10, frequency=3)
    pruned = tfprune.prune(model, schedule=schedule, round_to=1)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.run_eagerly = os.environ.get("TFPRUNE_RUN_EAGERLY") == "1"
    watch = MaskedWeights()
    checkpoint = out / "epoch.weights.h5"
    callbacks = [
        tfprune.PruningCallback(),
        watch,
        keras.callbacks.ModelCheckpoint(str(checkpoint), save_weights_only=True),
    ]
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=callbacks)
    stripped = tfprune.strip(pruned)
    small = tfprune.shrink(stripped)
    masked_out = keras.ops.convert_to_numpy(pruned(x[:16]))
    stripped_out = keras.ops.convert_to_numpy(stripped(x[:16]))
    small_out = keras.ops.convert_to_numpy(small(x[:16]))
    tfprune.save_model(small, out / "small.keras")
    reloaded = keras.saving.load_model(out / "small.keras")
    # The checkpoint written at the last epoch's end is as sparse as the masks.
    restored = tfprune.prune(network(), schedule=schedule, round_to=1)
    restored.load_weights(checkpoint)
    report(
        out,
        {
            "largest_masked_per_step": watch.largest,
            "sparsity_per_step": watch.sparsity,
            "checkpoint_largest_masked": largest_masked(restored),
            "checkpoint_sparsity": model_sparsity(tfprune.wrappers_of(restored)),
            "stripped_vs_masked": float(np.abs(stripped_out - masked_out).max()),
            "shrunk_vs_stripped": float(np.abs(small_out - stripped_out).max()),
            "reloaded_vs_shrunk": float(
                np.abs(keras.ops.convert_to_numpy(reloaded(x[:16])) - small_out).max()
            ),
            "filters": {
                layer.name: layer.filters for layer in small.layers if "conv" in layer.name
            },
            "summary_rows": len(tfprune.summary(pruned).rows),
            "explained": len(tfprune.explain(pruned)),
            "flops_ratio": tfprune.count_flops(small) / tfprune.count_flops(model),
        },
    )


def exported(out):
    import numpy as np

    import tfprune

    x = np.random.default_rng(1).normal(size=(16, 8, 8, 3)).astype("float32")
    pruned = tfprune.prune(network(), schedule=tfprune.OneShot(0.5), round_to=1)
    tfprune.apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    paths = {
        "pruned": tfprune.export_tflite(pruned, out / "pruned.tflite", verbose=False),
        "small": tfprune.export_tflite(small, out / "small.tflite", sparse="auto", verbose=False),
        "int8": tfprune.export_tflite(
            small, out / "int8.tflite", quantize="int8", representative_data=x, verbose=False
        ),
    }
    try:
        tfprune.export_tflite(small, out / "bad.tflite", input_shapes=[(8, 8, 3), (4,)])
        error = None
    except ValueError as raised:
        error = str(raised)
    report(
        out,
        {
            "pruned_vs_keras": tfprune.verify_tflite(paths["pruned"], pruned, x),
            "small_vs_keras": tfprune.verify_tflite(paths["small"], small, x),
            "int8_vs_keras": tfprune.verify_tflite(paths["int8"], small, x),
            "magic": [p.read_bytes()[4:8].decode() for p in paths.values()],
            "error": error,
            "bad_written": (out / "bad.tflite").exists(),
        },
    )


SCENARIOS = {"import": imported, "fit": fitted, "export": exported}

if __name__ == "__main__":
    SCENARIOS[sys.argv[2]](pathlib.Path(sys.argv[1]))
