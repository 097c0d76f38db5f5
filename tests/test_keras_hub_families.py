"""KerasHub families whose blocks are custom layers, through the whole data path: prune
(their blocks traced) -> fit -> strip -> shrink -> LiteRT at a fixed length -> verify.

Models are built from constructor arguments: presets download weights at run time."""

import keras
import numpy as np
import pytest

import tfprune
from keras_hub_zoo import FAMILIES

# Sequence lengths and image sides fixed for the LiteRT file.
LENGTH = 8
# DeBERTa's heads stay (its relative positions are broadcast to the head count inside the
# block): only its feed-forward units prune, a small share of a model this small.
TARGETS = {"deberta": 0.05}


def classifier(backbone, classes=3):
    """The backbone with a pooled linear head, so that `fit` has a loss."""
    features = backbone(backbone.input)
    if isinstance(features, dict):
        features = features.get("sequence_output", features.get("decoder_sequence_output"))
    if len(features.shape) == 4:  # images
        features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    else:
        features = keras.layers.GlobalAveragePooling1D(name="pool")(features)
    return keras.Model(backbone.input, keras.layers.Dense(classes, name="head")(features))


def fixed_shapes(x):
    """The sizes of the examples `x`, for the LiteRT file."""
    return (
        {name: array.shape[1:] for name, array in x.items()} if isinstance(x, dict) else x.shape[1:]
    )


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_keras_hub_family_prunes_inside_its_blocks_shrinks_and_exports(family, tmp_path):
    build, inputs = FAMILIES[family]
    keras.utils.set_random_seed(0)
    model = classifier(build())
    x, y = inputs(4, LENGTH), np.array([0, 1, 2, 0])
    target = TARGETS.get(family, 0.3)
    schedule = tfprune.PolynomialDecay(0.0, target, begin_step=0, end_step=2, frequency=1)
    pruned = tfprune.prune(model, schedule=schedule, target="flops", ranking="global")
    inside = [w.layer.name for w in tfprune.wrappers_of(pruned) if w.layer.name not in ("head",)]
    assert inside, "nothing inside the blocks prunes"
    pruned.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=2, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(pruned)
    assert np.abs(outputs(small, x) - outputs(tfprune.strip(pruned), x)).max() <= 1e-5
    assert small.count_params() < model.count_params()
    assert tfprune.count_flops(small) < (1 - 0.5 * target) * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite", input_shapes=fixed_shapes(x))
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
