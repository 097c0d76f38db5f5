"""Run by test_distributed.py in a fresh process: logical devices must be configured before
TensorFlow starts, which a pytest process that already ran other tests cannot do.

Trains the same pruned model on one device and under MirroredStrategy on two logical CPUs
(same seed, same global batch), with PruningCallback, AdversarialTraining and
AdversarialAwarePruning, and prints one JSON line per mode (plain, adversarial, aware) of
what the test checks.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from distributed_network import network  # noqa: E402

import tfprune  # noqa: E402
from tfprune.zoo import load_digits  # noqa: E402


def replica_values(variable):
    value = variable.value
    return [keras.ops.convert_to_numpy(v) for v in getattr(value, "values", [value])]


def train(strategy, mode, x, y):
    keras.utils.set_random_seed(0)
    schedule = tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=12, frequency=4)
    callbacks = []
    with strategy.scope():
        pruned = tfprune.prune(network(), schedule=schedule)
        model = pruned
        if mode != "plain":
            model = tfprune.AdversarialTraining(pruned, tfprune.FGSM(0.05), weight=0.5)
        model.compile(
            keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"]
        )
    if mode == "aware":
        callbacks.append(
            tfprune.AdversarialAwarePruning(
                (x[:64], y[:64]), tfprune.FGSM(0.05), tolerance=1.0, hard_limit=1.0
            )
        )
    else:
        callbacks.append(tfprune.PruningCallback())
    history = model.fit(
        x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, callbacks=callbacks
    ).history
    result = {
        "loss": [float(v) for v in history["loss"]],
        "masks": {},
        "replicas_equal": True,
        "zeros_follow_masks": True,
    }
    for wrapper in tfprune.wrappers_of(pruned):
        masks = replica_values(wrapper.mask)
        kernels = replica_values(wrapper.pruned_variable)
        result["masks"][wrapper.name] = masks[0].astype(int).tolist()
        result["replicas"] = len(masks)
        result["replicas_equal"] &= all(np.array_equal(m, masks[0]) for m in masks) and all(
            np.array_equal(k, kernels[0]) for k in kernels
        )
        result["zeros_follow_masks"] &= all(
            bool(np.all(k[m == 0] == 0)) for k, m in zip(kernels, masks)
        )
        result.setdefault("kernels", {})[wrapper.name] = kernels[0].tolist()
    return result


def main(mode):
    """Print one JSON line comparing one-device and mirrored training in `mode`."""
    (x, y), _ = load_digits()
    x, y = x[:256], y[:256]
    single = train(tf.distribute.get_strategy(), mode, x, y)
    mirrored = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), mode, x, y)
    kernel_diff = max(
        float(np.abs(np.array(single["kernels"][k]) - np.array(mirrored["kernels"][k])).max())
        for k in single["kernels"]
    )
    print(
        json.dumps(
            {
                "replicas": mirrored["replicas"],
                "masks_equal": single["masks"] == mirrored["masks"],
                "replicas_equal": mirrored["replicas_equal"],
                "zeros_follow_masks": mirrored["zeros_follow_masks"],
                "kernel_diff": kernel_diff,
                "loss_single": single["loss"],
                "loss_mirrored": mirrored["loss"],
                "mode": mode,
                "pruned_fraction": float(
                    np.mean([1 - np.mean(np.array(m)) for m in mirrored["masks"].values()])
                ),
            }
        )
    )


if __name__ == "__main__":
    for requested in sys.argv[1:]:
        main(requested)
