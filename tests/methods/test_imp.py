"""Iterative magnitude pruning with rewinding, and mask similarity."""

import keras
import numpy as np
import pytest
from helpers import small_cnn

import tfprune


def imp_run(rewind, data, rounds=2, rewind_epoch=None):
    x, y = data
    keras.utils.set_random_seed(0)
    model = small_cnn()
    imp = tfprune.methods.IterativePruning(
        rate=0.5, rounds=rounds, rewind=rewind, rewind_epoch=rewind_epoch
    )
    snapshots = []

    def fit(m, callbacks):
        snapshots.append([w.weight_array().copy() for w in tfprune.wrappers_of(m)])
        return m.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=callbacks)

    pruned = imp.run(
        model,
        compile=lambda m: m.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy"),
        fit=fit,
    )
    return imp, pruned, snapshots, model


@pytest.mark.parametrize("rewind", ["init", "epoch"])
def test_rewinding_restores_exactly_the_stored_values_for_survivors(rewind, data):
    imp, pruned, snapshots, _ = imp_run(rewind, data, rewind_epoch=1 if rewind == "epoch" else None)
    assert [h["target"] for h in imp.history] == [0.0, 0.5, 0.75]
    assert imp.history[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    stored = {
        layer.name: layer.get_weights()[0] for layer in imp.rewind_point.layers if layer.weights
    }
    for round_index in (1, 2):
        # What each later round started from: the rewind point on survivors, zeros elsewhere.
        for wrapper, start in zip(tfprune.wrappers_of(pruned), snapshots[round_index]):
            survivors = start != 0
            assert np.array_equal(start[survivors], stored[wrapper.layer.name][survivors])
            assert survivors.mean() <= 1 - imp.target(round_index) + 0.01
    if rewind == "init":
        assert all(
            np.array_equal(a, b)
            for a, b in zip(
                snapshots[0], [stored[w.layer.name] for w in tfprune.wrappers_of(pruned)]
            )
        )


@pytest.mark.slow  # 12 s, in `make test-all`; the init and epoch rewinds stay in `make test`
def test_reinit_and_keep_differ_from_the_rewind_point(data):
    _, pruned_reinit, reinit_snapshots, model = imp_run("reinit", data, rounds=1)
    _, pruned_keep, keep_snapshots, _ = imp_run("keep", data, rounds=1)
    first = tfprune.wrappers_of(pruned_reinit)[0]
    initial = model.get_layer(first.layer.name).get_weights()[0]
    survivors = reinit_snapshots[1][0] != 0
    assert not np.allclose(reinit_snapshots[1][0][survivors], initial[survivors])
    # "keep" continues from the trained values: round 2 starts where round 1 ended, masked.
    assert not np.allclose(
        keep_snapshots[1][0][keep_snapshots[1][0] != 0], initial[keep_snapshots[1][0] != 0]
    )
    similarity = tfprune.methods.mask_similarity(pruned_reinit, pruned_keep)
    assert 0 < similarity["mean"]["jaccard"] <= 1


def test_mask_similarity_on_hand_made_masks(cnn):
    a = tfprune.prune(cnn, granularity="unstructured", schedule=tfprune.OneShot(0.5))
    b = tfprune.prune(cnn, granularity="unstructured", schedule=tfprune.OneShot(0.5))
    wrapper_a, wrapper_b = (tfprune.wrappers_of(m)[0] for m in (a, b))
    shape = wrapper_a.mask_array().shape  # conv2: (3, 3, 8, 16)
    mask_a, mask_b = np.ones(shape, np.float32), np.ones(shape, np.float32)
    mask_a[..., :4] = 0  # filters 0-3 empty in a
    mask_b[..., 2:8] = 0  # filters 2-7 empty in b
    wrapper_a.assign_mask(mask_a)
    wrapper_b.assign_mask(mask_b)
    result = tfprune.methods.mask_similarity(a, b)[wrapper_a.layer.name]
    # kept: a = filters 4-15 (12), b = 0-1 and 8-15 (10); both = 8-15 (8); either = 0-1, 4-15 (14).
    assert result["jaccard"] == pytest.approx(8 / 14)
    assert result["empty_filters_a"] == pytest.approx(4 / 16) and result[
        "empty_filters_b"
    ] == pytest.approx(6 / 16)
    with pytest.raises(ValueError, match="tfprune.prune"):
        tfprune.methods.mask_similarity(cnn, b)


def test_imp_arguments_are_checked():
    for kwargs, message in (
        ({"rate": 1.5}, "rate"),
        ({"rounds": 0}, "rounds"),
        ({"rewind": "back"}, "rewind"),
        ({"rewind": "epoch"}, "rewind_epoch"),
    ):
        with pytest.raises(ValueError, match=message):
            tfprune.methods.IterativePruning(**kwargs)
