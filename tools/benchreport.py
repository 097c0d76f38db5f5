"""Shared by the benchmark scripts: write results with the date, machine and command."""

import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

from tfprune.core.files import write_atomically


def over_seeds(per_seed, variants, keys=None) -> dict:
    """Mean, spread and values of each number of each variant, over the seeds.

    Args:
        per_seed: one `{variant: {key: number}}` dict per seed.
        variants: the variants to summarise, in order.
        keys: the numbers to summarise, or `None` for every key of each variant's row.

    Returns:
        `{variant: {key: {"mean", "std", "values"}}}`.
    """
    summary = {}
    for variant in variants:
        summary[variant] = {}
        for key in keys or per_seed[0][variant]:
            values = np.array([row[variant][key] for row in per_seed])
            summary[variant][key] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "values": values.tolist(),
            }
    return summary


def write_report(path, results: dict) -> pathlib.Path:
    """Write `results` as JSON to `path`, stamped with the date, the machine and the command.

    Args:
        path: the JSON file to write (its folder is created).
        results: the script's numbers.

    Returns:
        The path written.
    """
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "command": " ".join(["python", f"tools/{pathlib.Path(sys.argv[0]).name}", *sys.argv[1:]]),
        **results,
    }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(report, indent=2))
    print(f"wrote {path}")
    return path


def fine_tune_schedule(target, steps_per_epoch, epochs):
    """The benchmarks' pruning schedule: cubic from 0 to `target` over the first 2/3 of
    `epochs`, a mask update every half epoch, the last third left to recover.

    Args:
        target: the final sparsity (or FLOPs fraction removed).
        steps_per_epoch: optimizer steps in an epoch.
        epochs: fine-tuning epochs.

    Returns:
        A `tfprune.PolynomialDecay`.
    """
    import tfprune

    return tfprune.PolynomialDecay(
        0.0,
        target,
        begin_step=0,
        end_step=steps_per_epoch * (epochs * 2 // 3),
        frequency=max(1, steps_per_epoch // 2),
    )


def compile_classifier(model):
    """Compile `model` the way the benchmarks train classifiers: Adam 2e-3, sparse
    categorical cross-entropy on probabilities, accuracy.

    Args:
        model: a Keras model (or a training wrapper such as `tfprune.methods.Distillation`).

    Returns:
        `model`, compiled.
    """
    import keras

    model.compile(
        keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def trained(model, x, y, epochs, **fit_kwargs):
    """`model` compiled (`compile_classifier`) and trained `epochs` in batches of 32, quietly.

    Args:
        model: a Keras model or training wrapper.
        x: training inputs.
        y: integer labels.
        epochs: training epochs.
        **fit_kwargs: more `fit` arguments (callbacks, ...).

    Returns:
        `model`, trained.
    """
    compile_classifier(model)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, **fit_kwargs)
    return model
