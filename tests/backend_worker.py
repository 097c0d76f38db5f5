"""Run by test_backends.py under one Keras backend (KERAS_BACKEND is set by the caller):

    python backend_worker.py OUT_DIR SCENARIO   (one of SCENARIOS below)

- `import`: imports tfprune and reports whether TensorFlow was loaded.
- `fit`: the data path on a small CNN with BatchNormalization, a residual Add and a Dense
  layer (prune -> fit -> strip -> shrink -> summary -> explain -> save and load `.keras`),
  with mask updates in the middle of epochs; after every optimizer step a callback reads the
  weights back and records the largest masked weight.

- `load`: loads the shrunk model `fit` saved (maybe on another backend) and compares its
  outputs with the saving backend's.
- `families`: depthwise convolutions, attention heads, LSTM/GRU over an Embedding and a
  KerasHub BERT backbone, each pruned to 40 % of its FLOPs during `fit`, stripped and shrunk.
- `masks`: the same families' masks for 40 % of their FLOPs from the same NumPy weights,
  before training, saved to `OUT_DIR/masks.npz`.
- `export`: `export_tflite` of a shrunk CNN (sparse "auto"; with `TFPRUNE_EXPORT_ALL=1` also
  int8, and the pruned CNN), each file verified against this backend's outputs, and an
  export with wrong input shapes.
- `attacks`: FGSM, PGD, DeepFool and CutoffScale on a small CNN with NumPy weights, and
  `robust_accuracy` under each.
- `adversarial`: the CNN pruned during `fit` inside `AdversarialTraining` with FGSM, by
  `PruningCallback`, or by the adversarial-aware schedule with `TFPRUNE_AWARE=1`.
- `taylor`: masks by the `taylor`, `robust_taylor` and `hydra` criteria from NumPy weights
  and data.
- `distill`: the CNN pruned during `fit` inside `Distillation`, taught by a dense copy.
- `learned`: LEAP's row and head masks on a small attention model and DSP's groups on the
  CNN, learned during `fit` from NumPy weights (what LEAP learned to `OUT_DIR/learned.npz`);
  with `TFPRUNE_DEPLOY=1` also shrunk, deployed, saved and loaded.
- `data_parallel` (JAX): the CNN pruned during `fit` on one device, then under
  `keras.distribution.DataParallel` over the host's CPU devices; masks to `masks_one.npz`
  and `masks_two.npz`.

Each writes `OUT_DIR/result.json`, with the backend and the tfprune modules loaded.
"""

import json
import os
import pathlib
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def report(out, result):
    result["backend"] = __import__("keras").backend.backend()
    result["tensorflow_loaded"] = "tensorflow" in sys.modules
    result["tfprune_modules"] = sorted(m for m in sys.modules if m.startswith("tfprune"))
    (out / "result.json").write_text(json.dumps(result))


def imported(out):
    import tfprune

    _ = (tfprune.prune, tfprune.PruningCallback, tfprune.strip, tfprune.shrink)
    # Namespaces load on first use; the attacks and adversarial training need no TensorFlow.
    _ = (tfprune.robustness.CutoffScale, tfprune.robustness.AdversarialTraining, tfprune.APGD)
    names = ("methods", "robustness", "export", "criteria")
    namespaces = [
        n for n in names if n in dir(tfprune) and hasattr(getattr(tfprune, n), "__path__")
    ]
    report(out, {"namespaces": namespaces})


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


def mask_watch():
    """A callback that, after every step, reads the weights back and records the largest
    masked weight and the model's sparsity (`largest`, `sparsity`)."""
    import keras

    import tfprune
    from tfprune.core import keras_internals
    from tfprune.masking.wrappers import model_sparsity

    class MaskWatch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.largest, self.sparsity = [], []

        def on_train_batch_end(self, batch, logs=None):
            keras_internals.sync_training_state(self.model)
            self.largest.append(largest_masked(self.model))
            self.sparsity.append(model_sparsity(tfprune.wrappers_of(self.model)))

    return MaskWatch()


def cnn_to_prune():
    """`network()` pruned to half its filters over 10 steps (updates every 3, mid-epoch at
    batch 8), and 64 inputs in [0, 1) with labels."""
    import numpy as np

    import tfprune

    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, 64)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=1, end_step=10, frequency=3)
    return tfprune.prune(network(), schedule=schedule, round_to=1), x, y


def fitted(out):
    import keras
    import numpy as np

    import tfprune
    from tfprune.masking.wrappers import model_sparsity

    pruned, x, y = cnn_to_prune()
    model = network()
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.run_eagerly = os.environ.get("TFPRUNE_RUN_EAGERLY") == "1"
    watch = mask_watch()
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
    np.savez(out / "small_io.npz", x=x[:16], y=small_out)
    reloaded = keras.saving.load_model(out / "small.keras")
    # The checkpoint written at the last epoch's end is as sparse as the masks.
    restored = cnn_to_prune()[0]
    restored.load_weights(checkpoint)
    # In training mode too (batch statistics: `training` reaches the wrapped BatchNormalization).
    training_out = [
        keras.ops.convert_to_numpy(m(x[:16], training=True)) for m in (pruned, stripped)
    ]
    report(
        out,
        {
            "stripped_vs_masked_training": float(np.abs(training_out[1] - training_out[0]).max()),
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
        "small": tfprune.export_tflite(small, out / "small.tflite", sparse="auto", verbose=False)
    }
    if os.environ.get("TFPRUNE_EXPORT_ALL") == "1":  # a TensorFlow process each
        paths["pruned"] = tfprune.export_tflite(pruned, out / "pruned.tflite", verbose=False)
        paths["int8"] = tfprune.export_tflite(
            small, out / "int8.tflite", quantize="int8", representative_data=x, verbose=False
        )
    try:
        tfprune.export_tflite(small, out / "bad.tflite", input_shapes=[(8, 8, 3), (4,)])
        error = None
    except ValueError as raised:
        error = str(raised)
    checked = {"pruned": pruned, "small": small, "int8": small}
    if os.environ.get("TFPRUNE_EXPORT_ALL") == "1":
        # The TensorFlow process's own error (export_tflite refuses such data before it).
        from tfprune.export.tensorflow_process import convert_elsewhere

        try:
            convert_elsewhere(small, "int8", x[..., :2])
        except ValueError as raised:
            error = f"{error}\n{raised}"
    report(
        out,
        {
            **{
                f"{name}_vs_keras": tfprune.verify_tflite(path, checked[name], x)
                for name, path in paths.items()
            },
            "magic": [p.read_bytes()[4:8].decode() for p in paths.values()],
            "error": error,
            "bad_written": (out / "bad.tflite").exists(),
        },
    )


def family_models():
    """`{family: (model, inputs, number of classes)}`: depthwise convolutions, attention
    heads, LSTM and GRU over an Embedding, and a KerasHub backbone (BERT, unfolded)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(2)
    seeded = {"kernel_initializer": keras.initializers.GlorotUniform(seed=0)}
    models = {}

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem", **seeded)(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pw", **seeded)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    images = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    models["depthwise"] = (keras.Model(inputs, keras.layers.Dense(3, name="head")(x)), images)

    inputs = keras.Input((6, 16))
    attended = keras.layers.MultiHeadAttention(4, 4, name="attention")(inputs, inputs)
    x = keras.layers.LayerNormalization()(keras.layers.Add()([inputs, attended]))
    x = keras.layers.Dense(32, activation="relu", name="ffn", **seeded)(x)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(16, name="proj", **seeded)(x))
    sequences = rng.normal(size=(32, 6, 16)).astype("float32")
    models["attention"] = (keras.Model(inputs, keras.layers.Dense(3, name="head")(x)), sequences)

    inputs = keras.Input((7,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(inputs)
    x = keras.layers.LSTM(12, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(8, name="gru")(x)
    tokens = rng.integers(0, 50, (32, 7)).astype("int32")
    models["recurrent"] = (keras.Model(inputs, keras.layers.Dense(3, name="head")(x)), tokens)

    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = {n: keras.Input((8,), dtype="int32", name=n) for n in names}
    pooled = backbone(inputs)["pooled_output"]
    bert = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    ids = {
        "token_ids": rng.integers(1, 50, (32, 8)).astype("int32"),
        "segment_ids": np.zeros((32, 8), "int32"),
        "padding_mask": np.ones((32, 8), "int32"),
    }
    models["keras_hub_bert"] = (bert, ids)
    return models


def families(out):
    import keras
    import numpy as np

    import tfprune
    from tfprune.masking.wrappers import model_sparsity

    results = {}
    for name, (model, x) in family_models().items():
        y = np.arange(32) % 3
        schedule = tfprune.PolynomialDecay(0.0, 0.4, begin_step=0, end_step=6, frequency=2)
        pruned = tfprune.prune(model, schedule=schedule, target="flops", round_to=1)
        pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        watch = mask_watch()
        pruned.fit(
            x, y, batch_size=4, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback(), watch]
        )
        stripped = tfprune.strip(pruned)
        small = tfprune.shrink(stripped)
        batch = {k: v[:8] for k, v in x.items()} if isinstance(x, dict) else x[:8]
        outputs = [keras.ops.convert_to_numpy(m(batch)) for m in (pruned, stripped, small)]
        results[name] = {
            "largest_masked": max(watch.largest),
            "sparsity": model_sparsity(tfprune.wrappers_of(pruned)),
            "flops_removed": 1 - tfprune.count_flops(small) / tfprune.count_flops(model),
            "stripped_vs_masked": float(np.abs(outputs[1] - outputs[0]).max()),
            "shrunk_vs_stripped": float(np.abs(outputs[2] - outputs[1]).max()),
        }
    report(out, {"families": results})


def one_shot_masks(out):
    """Each family's masks for 40 % of its FLOPs from the same weights (drawn with NumPy),
    before any training: what every backend should choose alike."""
    import keras
    import numpy as np

    import tfprune

    masks = {}
    for name, (model, _) in family_models().items():
        rng = np.random.default_rng(3)
        model.set_weights(
            [
                (np.abs(rng.normal(size=w.shape)) * 0.1 + 0.01).astype(w.dtype)
                if np.issubdtype(w.dtype, np.floating)
                else w
                for w in model.get_weights()
            ]
        )
        pruned = tfprune.prune(model, schedule=0.4, target="flops", round_to=1)
        tfprune.apply_target(pruned, 0.4)
        for wrapper in tfprune.wrappers_of(pruned):
            masks[f"{name}/{wrapper.layer.name}"] = keras.ops.convert_to_numpy(wrapper.mask)
    np.savez(out / "masks.npz", **masks)
    report(out, {"masks": sorted(masks)})


def loaded(out):
    """`small.keras` as `fit` saved it on another backend, loaded and run here."""
    import keras
    import numpy as np

    model = keras.saving.load_model(out / "small.keras")
    with np.load(out / "small_io.npz") as io:
        outputs = keras.ops.convert_to_numpy(model(io["x"]))
        report(out, {"vs_saving_backend": float(np.abs(outputs - io["y"]).max())})


def data_parallel(out):
    """`fitted`'s CNN trained with pruning on one device, then under
    `keras.distribution.DataParallel` over every CPU device, same data and global batch (one
    process: JAX starts once); the masks to `masks_one.npz` and `masks_two.npz`."""
    import keras
    import numpy as np

    import tfprune

    devices = keras.distribution.list_devices("cpu")
    per_device = {}
    for name in ("one", "two"):
        if name == "two":  # the models built from here on are distributed
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        pruned, x, y = cnn_to_prune()
        pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
        masks = {}
        for wrapper in tfprune.wrappers_of(pruned):
            value = wrapper.mask.value
            masks[wrapper.layer.name] = np.asarray(value)
            per_device[wrapper.layer.name] = [
                bool(np.array_equal(np.asarray(shard.data), masks[wrapper.layer.name]))
                for shard in value.addressable_shards
            ]
        np.savez(out / f"masks_{name}.npz", **masks)
    report(
        out,
        {
            "devices": len(devices),
            "shards_equal_to_mask": per_device,
            "largest_masked": largest_masked(pruned),
        },
    )


def attacked(out):
    """FGSM, PGD (L-inf and L2, no random start), DeepFool and CutoffScale on a small CNN with
    NumPy weights, and `robust_accuracy` under each: adversarial inputs to `adversarial.npz`."""
    import keras
    import numpy as np

    import tfprune
    from tfprune.robustness.attacks import PGD, CutoffScale, DeepFool

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(4)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    x = rng.random((16, 6, 6, 1)).astype("float32")
    y = np.arange(16) % 3
    attacks = {
        "fgsm": tfprune.FGSM(eps=0.03),
        "pgd": PGD(eps=0.03, steps=5, random_start=False),
        "pgd_l2": PGD(eps=0.1, steps=5, norm="l2", random_start=False),
        "deepfool": DeepFool(),
        "cutoff_scale": CutoffScale(),
    }
    adversarial = {k: keras.ops.convert_to_numpy(a(model, x, y)) for k, a in attacks.items()}
    np.savez(out / "adversarial.npz", x=x, **adversarial)
    accuracy = {k: tfprune.robust_accuracy(model, x, y, a) for k, a in attacks.items()}
    accuracy["clean"] = tfprune.robust_accuracy(model, x, y, None)
    # APGD starts at random points, drawn by each backend's own generator: checked alone.
    apgd = {}
    for loss in ("ce", "dlr"):
        attack = tfprune.APGD(eps=0.03, steps=10, loss=loss)
        moved = np.abs(keras.ops.convert_to_numpy(attack(model, x, y)) - x).max()
        apgd[loss] = {
            "moved": float(moved),
            "accuracy": tfprune.robust_accuracy(model, x, y, attack),
        }
    report(out, {"accuracy": accuracy, "apgd": apgd})


def adversarially_trained(out):
    """The CNN pruned during `fit` inside `AdversarialTraining` with FGSM."""
    import keras

    import tfprune

    pruned, x, y = cnn_to_prune()
    trainer = tfprune.AdversarialTraining(pruned, tfprune.FGSM(eps=0.05), weight=0.5)
    trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if os.environ.get("TFPRUNE_AWARE") == "1":  # the adversarial-aware schedule decides
        probe = tfprune.PGD(eps=0.05, steps=3, output="logits")
        callback = tfprune.AdversarialAwarePruning(
            (x[:32], y[:32]), probe, tolerance=0.5, hard_limit=0.6
        )
    else:
        callback = tfprune.PruningCallback()
    history = trainer.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[callback])
    attack = tfprune.FGSM(eps=0.05, output="logits")
    report(
        out,
        {
            "loss": history.history["loss"],
            "sparsity": history.history["sparsity"],
            "largest_masked": largest_masked(pruned),
            "robust": tfprune.robust_accuracy(pruned, x, y, attack),
            "decisions": [event.get("decision") for event in getattr(callback, "events", [])],
        },
    )


def taylor_masks(out):
    """The CNN's masks at half its filters by the `taylor`, `robust_taylor` and `hydra`
    criteria, from NumPy weights and data: gradients of the loss with respect to the
    weights (HYDRA's: to its scores, which Adam trains for 5 steps)."""
    import keras
    import numpy as np

    import tfprune

    rng = np.random.default_rng(5)
    x = rng.random((32, 8, 8, 3)).astype("float32")
    y = np.arange(32) % 3
    from tfprune.criteria.taylor import RobustTaylor
    from tfprune.robustness.attacks import PGD

    # PGD's random start comes from each backend's own generator: none here.
    criteria = {
        "taylor": "taylor",
        "robust_taylor": RobustTaylor(PGD(eps=0.1, steps=5, random_start=False)),
        "hydra": tfprune.criteria.Hydra(PGD(eps=0.1, steps=3, random_start=False), steps=5),
        "l2": "l2",  # HYDRA's scores start as the filters' L2 norms
    }
    masks = {}
    for name, criterion in criteria.items():
        model = network()
        model.set_weights(
            [rng.normal(size=w.shape).astype("float32") * 0.3 for w in model.get_weights()]
        )
        model.get_layer("bn1").moving_variance.assign(np.ones(8, "float32"))
        pruned = tfprune.prune(model, criterion=criterion, schedule=0.5, round_to=1)
        tfprune.apply_target(pruned, 0.5, data=(x, y))
        for wrapper in tfprune.wrappers_of(pruned):
            mask = keras.ops.convert_to_numpy(wrapper.mask)
            masks[f"{name}/{wrapper.layer.name}"] = mask
    np.savez(out / "masks.npz", **masks)
    report(out, {"masks": sorted(masks)})


def distilled(out):
    """The CNN pruned during `fit` inside `Distillation`, taught by a dense copy (alpha 1)."""
    import keras
    import numpy as np

    import tfprune

    pruned, x, y = cnn_to_prune()
    teacher = network()
    before = [w.copy() for w in teacher.get_weights()]
    trainer = tfprune.methods.Distillation(pruned, teacher, temperature=2.0, alpha=1.0)
    trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainer.fit(
        x, y, batch_size=8, epochs=3, verbose=0, callbacks=[tfprune.PruningCallback()]
    )
    logged = history.history
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))
    report(
        out,
        {
            "loss": logged["loss"],
            "distillation_loss": logged["distillation_loss"],
            "sparsity": logged["sparsity"],
            "largest_masked": largest_masked(pruned),
            "teacher_unchanged": unchanged,
        },
    )


def attention_network():
    """Attention over 8 tokens of 16 features, then a Dense block and a classifier: what LEAP
    prunes (heads, rows). Zeros to start: the caller sets the weights, and JAX compiles a
    random initializer for every shape."""
    import keras

    zeros = {"kernel_initializer": "zeros"}
    inputs = keras.Input((8, 16))
    x = keras.layers.MultiHeadAttention(2, 8, name="attention", **zeros)(inputs, inputs)
    x = keras.layers.Dense(32, activation="relu", name="up", **zeros)(x)
    x = keras.layers.Dense(16, name="down", **zeros)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head", **zeros)(x))


def learned(out):
    """LEAP (rows, Adam at 0.05 for the scores) and DSP (groups, Adam at 1e-3 for the
    logits) trained with `fit` from NumPy weights, beside the compiled Adam at 1e-2; with
    `TFPRUNE_DEPLOY=1`, also shrunk, deployed, saved and loaded."""
    import keras
    import numpy as np

    import tfprune

    rng = np.random.default_rng(7)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = attention_network()
    model.set_weights(
        [rng.normal(size=w.shape).astype("float32") * 0.3 for w in model.get_weights()]
    )
    tokens = rng.normal(size=(64, 8, 16)).astype("float32")
    labels = np.arange(64) % 3
    leap = tfprune.methods.LEAP(
        model, target_density=0.5, initial_threshold=1.0, score_learning_rate=0.05
    )
    leap.compile(keras.optimizers.Adam(1e-2), loss)
    leap_logs = leap.fit(tokens, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
    cnn, x, y = network(), rng.random((64, 8, 8, 3)).astype("float32"), np.arange(64) % 3
    dsp = tfprune.methods.DSP(cnn, groups=2, lam=1e-3, ramp_steps=4)
    start = [keras.ops.convert_to_numpy(logits) for logits in dsp.logits]
    dsp.compile(keras.optimizers.Adam(1e-2), loss)
    dsp_logs = dsp.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    result = {
        "leap": leap_logs.history,
        "dsp": dsp_logs.history,
        "dsp_step": float(keras.ops.convert_to_numpy(dsp.step)),
        "dsp_iterations": int(keras.ops.convert_to_numpy(dsp.optimizer.iterations)),
        "logits_moved": max(
            float(np.abs(keras.ops.convert_to_numpy(logits) - before).max())
            for logits, before in zip(dsp.logits, start)
        ),
    }
    if os.environ.get("TFPRUNE_DEPLOY") == "1":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 3 epochs do not reach the target: not the point
            masked = leap.pruned_model()
        reference = keras.ops.convert_to_numpy(leap(tokens))

        def distance(other, inputs, to):
            return float(np.abs(keras.ops.convert_to_numpy(other(inputs)) - to).max())

        leap.save(out / "leap.keras")
        grouped = dsp.prune(flops_target=0.2, form="grouped", tolerance=0.05)
        filters = dsp.prune(flops_target=0.2, form="filters")
        result |= {
            "leap_masked": distance(masked, tokens, reference),
            "leap_shrunk": distance(tfprune.shrink(masked), tokens, reference),
            "leap_loaded": distance(keras.saving.load_model(out / "leap.keras"), tokens, reference),
            "dsp_deployed": [
                distance(
                    tfprune.methods.deploy_groups(plan),
                    x,
                    keras.ops.convert_to_numpy(plan.masked(x)),
                )
                for plan in (grouped, filters)
            ],
            "flops_removed": [grouped.flops_removed, filters.flops_removed],
        }
    np.savez(
        out / "learned.npz",
        **{
            # By position: the wrapper's own name is not the same in every process.
            f"{i}:{variable.name}": keras.ops.convert_to_numpy(variable)
            for i, variable in enumerate(leap.scores + leap.thresholds + model.trainable_variables)
        },
    )
    report(out, result)


SCENARIOS = {
    "import": imported,
    "learned": learned,
    "distill": distilled,
    "taylor": taylor_masks,
    "adversarial": adversarially_trained,
    "attacks": attacked,
    "data_parallel": data_parallel,
    "load": loaded,
    "fit": fitted,
    "families": families,
    "masks": one_shot_masks,
    "export": exported,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[2]](pathlib.Path(sys.argv[1]))
