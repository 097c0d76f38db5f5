"""LSTM, GRU and SimpleRNN: hidden units are filters (every gate's column of the kernel and
the recurrent kernel, and the bias), the other granularities cover both kernels, and `shrink`
slices every gate."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tfprune
from tfprune.layers import registry
from tfprune.masking.ranking import apply_target

STEPS, FEATURES = 6, 5
RECURRENT = {
    "lstm": lambda **kw: keras.layers.LSTM(6, **kw),
    "gru": lambda **kw: keras.layers.GRU(6, **kw),
    "gru_reset_before": lambda **kw: keras.layers.GRU(6, reset_after=False, **kw),
    "simple_rnn": lambda **kw: keras.layers.SimpleRNN(6, **kw),
    "rnn_of_lstm_cell": lambda **kw: keras.layers.RNN(keras.layers.LSTMCell(6), **kw),
}
GATES = {"lstm": 4, "gru": 3, "gru_reset_before": 3, "simple_rnn": 1, "rnn_of_lstm_cell": 4}


def sequence_model(kind, **kw):
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    x = RECURRENT[kind](name="recurrent", return_sequences=True, **kw)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def randomized(model, seed=0):
    """Every weight random, biases included, so that a dead unit is dead by its mask alone."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    return model


def sequences(n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, STEPS, FEATURES)).astype(np.float32)


def units_of(layer):
    return layer.cell.units


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_a_dead_unit_outputs_zero_at_every_step_and_shrink_slices_every_gate(kind):
    model = randomized(sequence_model(kind))
    layer = model.get_layer("recurrent")
    gates, dead = GATES[kind], [1, 4]
    columns = [g * 6 + j for g in range(gates) for j in dead]
    kernel, recurrent_kernel, bias = layer.get_weights()
    kernel[:, columns] = recurrent_kernel[:, columns] = 0.0
    bias[..., columns] = 0.0
    layer.set_weights([kernel, recurrent_kernel, bias])
    hidden = keras.Model(model.input, layer.output)(sequences())
    assert np.all(np.asarray(hidden)[..., dead] == 0.0)

    small = tfprune.shrink(model)
    shrunk = small.get_layer("recurrent")
    assert units_of(shrunk) == 4
    kept = [j for j in range(6) if j not in dead]
    kept_columns = [g * 6 + j for g in range(gates) for j in kept]
    expected = [kernel[:, kept_columns], recurrent_kernel[kept][:, kept_columns]]
    expected.append(bias[..., kept_columns])
    for got, want in zip(shrunk.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
    x = sequences(seed=1)
    assert np.abs(small(x) - model(x)).max() <= 1e-5


def test_a_unit_with_a_bias_left_is_kept():
    model = randomized(sequence_model("lstm"))
    layer = model.get_layer("recurrent")
    kernel, recurrent_kernel, bias = layer.get_weights()
    columns = [g * 6 + 2 for g in range(4)]
    kernel[:, columns] = recurrent_kernel[:, columns] = 0.0
    layer.set_weights([kernel, recurrent_kernel, bias])  # its gates still see their biases
    assert units_of(tfprune.shrink(model).get_layer("recurrent")) == 6


def test_stacked_layers_of_every_kind_train_shrink_export_and_save(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(6, return_sequences=True, go_backwards=True, name="gru")(x)
    x = keras.layers.SimpleRNN(6, name="simple_rnn")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    recurrent = ("lstm", "gru", "simple_rnn")
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    assert {w.layer.name for w in tfprune.wrappers_of(pruned)} == {"embed", *recurrent}
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = sequences(32), np.arange(32) % 3
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.PruningCallback()])
    for wrapper in tfprune.wrappers_of(pruned):
        if wrapper.layer.name not in recurrent:
            continue
        dead = wrapper.granularity.pruned_units(wrapper.mask_array(), wrapper.spec)
        assert dead.sum() == 3
        # Trained with the mask: every gate's column of a dead unit stays zero in both kernels.
        for weight in wrapper.layer.get_weights()[:2]:
            gated = weight.reshape(weight.shape[0], -1, 6)
            assert np.all(gated[..., dead] == 0.0)

    tfprune.save_model(pruned, tmp_path / "pruned.keras")
    restored = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(restored(x), pruned(x), atol=1e-6)
    small = tfprune.shrink(pruned)
    assert [units_of(small.get_layer(name)) for name in recurrent] == [3, 3, 3]
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    assert tfprune.count_flops(small) < 0.6 * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def test_flops_count_the_input_and_recurrent_kernels_at_every_step():
    model = sequence_model("lstm")
    embed, head = 2 * STEPS * FEATURES * 8, 2 * 6 * 3
    assert tfprune.count_flops(model) == embed + head + 2 * STEPS * (8 + 6) * 4 * 6


@pytest.mark.parametrize("granularity", ["unstructured", "2:4", "block:1x4"])
def test_the_other_granularities_cover_the_kernel_and_the_recurrent_kernel(granularity):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, 8))
    x = keras.layers.LSTM(8, name="recurrent")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, granularity=granularity, schedule=0.5, protect=["head"])
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(16, STEPS, 8)).astype(np.float32)
    pruned.fit(x, np.arange(16) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    (wrapper,) = tfprune.wrappers_of(pruned)
    assert wrapper.mask.shape == (8 + 8, 4 * 8)
    kernel, recurrent_kernel = (np.asarray(v) for v in wrapper.layer.weights[:2])
    mask = wrapper.mask_array()
    np.testing.assert_array_equal(kernel == 0, mask[:8] == 0)
    np.testing.assert_array_equal(recurrent_kernel == 0, mask[8:] == 0)
    assert 0.3 < (recurrent_kernel == 0).mean() and 0.3 < (kernel == 0).mean()


def test_return_state_and_stacked_layers_shrink_together():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES))
    sequence, state_h, state_c = keras.layers.LSTM(
        8, return_sequences=True, return_state=True, name="encoder"
    )(inputs)
    x = keras.layers.GRU(8, go_backwards=True, name="decoder")(sequence)
    x = keras.layers.Concatenate()([x, state_h, state_c])
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    assert units_of(small.get_layer("encoder")) == units_of(small.get_layer("decoder")) == 4
    x = sequences()
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5


def test_an_initial_state_ties_the_units_it_comes_from():
    inputs = keras.Input((STEPS, FEATURES))
    _, state = keras.layers.GRU(8, return_state=True, name="encoder")(inputs)
    x = keras.layers.GRU(8, name="decoder")(inputs, initial_state=state)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    apply_target(pruned, 0.5)
    masks = {w.layer.name: w for w in tfprune.wrappers_of(pruned)}
    dead = {name: w.granularity.pruned_units(w.mask_array(), w.spec) for name, w in masks.items()}
    np.testing.assert_array_equal(dead["encoder"], dead["decoder"])
    small = tfprune.shrink(pruned)
    assert units_of(small.get_layer("decoder")) == 4
    x = sequences()
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5


def test_stacked_cells_are_not_prunable_and_explain_says_why():
    cells = keras.layers.StackedRNNCells([keras.layers.GRUCell(4), keras.layers.GRUCell(4)])
    stacked = keras.layers.RNN(cells, name="stacked")
    assert not registry.is_prunable(stacked)
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(stacked(x)))
    assert "RNN 'stacked' is a barrier" in str(tfprune.explain(model))


def test_bidirectional_prunes_both_directions_in_every_merge_mode(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    modes = {"concat": keras.layers.LSTM, "sum": keras.layers.GRU, "ave": keras.layers.LSTM}
    modes["mul"] = keras.layers.GRU
    branches = []
    for mode, cell in modes.items():
        layer = keras.layers.Bidirectional(
            cell(6, return_sequences=True), merge_mode=mode, name=mode
        )
        branches.append(keras.layers.GlobalAveragePooling1D()(layer(x)))
    x = keras.layers.Concatenate()(branches)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    # Eager: tracing eight recurrent loops and their gradients would take most of the test.
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    pruned.compile("adam", loss, run_eagerly=True)
    x, y = sequences(16), np.arange(16) % 3
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.PruningCallback()])
    wrappers = {w.layer.name: w for w in tfprune.wrappers_of(pruned)}
    for mode in modes:
        wrapper = wrappers[mode]
        # Concatenated, each direction's units are filters of their own; merged into one
        # channel, unit j of both directions is one filter.
        dead = wrapper.granularity.pruned_units(wrapper.mask_array(), wrapper.spec)
        per_direction = dead.reshape(2, 6) if mode == "concat" else np.stack([dead, dead])
        assert per_direction.sum() == 6
        directions = (wrapper.layer.forward_layer, wrapper.layer.backward_layer)
        for direction, dead_units in zip(directions, per_direction):
            for weight in direction.get_weights()[:2]:
                assert np.all(weight.reshape(weight.shape[0], -1, 6)[..., dead_units] == 0)

    small = tfprune.shrink(pruned)
    for mode in modes:
        shrunk = small.get_layer(mode)
        assert shrunk.forward_layer.units + shrunk.backward_layer.units == 6
        if mode != "concat":
            assert shrunk.forward_layer.units == 3
        assert shrunk.merge_mode == mode
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    assert tfprune.count_flops(small) < 0.6 * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


def scaled_units(layer, units, factor):
    """`layer`'s weights with the given units' columns (in every gate) scaled."""
    weights = []
    for weight in layer.get_weights():
        gated = weight.reshape(*weight.shape[:-1], -1, layer.units).copy()
        gated[..., units] *= factor
        weights.append(gated.reshape(weight.shape))
    return weights


@pytest.mark.parametrize(
    "forward_small, backward_small, widths",
    [(range(6), [], (1, 6)), (range(4), [0, 1], (2, 4))],
    ids=["a-whole-direction", "some-of-each"],
)
def test_concatenated_directions_lose_units_independently(
    forward_small, backward_small, widths, tmp_path
):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    encoder = keras.layers.Bidirectional(
        keras.layers.LSTM(6, return_sequences=True, return_state=True), name="encoder"
    )
    sequence, forward_h, _, _, backward_c = encoder(x)
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(sequence), forward_h])
    x = keras.layers.Concatenate()([x, backward_c])
    model = randomized(keras.Model(inputs, keras.layers.Dense(3, name="head")(x)))
    # The smallest units go first: six of the twelve, spread over the directions as given.
    encoder.forward_layer.set_weights(scaled_units(encoder.forward_layer, forward_small, 0.01))
    encoder.backward_layer.set_weights(scaled_units(encoder.backward_layer, backward_small, 1e-3))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), layers=["encoder"])
    apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    shrunk = small.get_layer("encoder")
    # A direction keeps one unit even when all of its units are dead (it outputs zeros).
    assert (shrunk.forward_layer.units, shrunk.backward_layer.units) == widths
    assert type(shrunk) is tfprune.layers.UnevenBidirectional
    x = sequences(8)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    assert tfprune.count_flops(small) < tfprune.count_flops(model)
    small.save(tmp_path / "small.keras")
    restored = keras.saving.load_model(tmp_path / "small.keras")
    assert type(restored.get_layer("encoder")) is tfprune.layers.UnevenBidirectional
    np.testing.assert_allclose(restored(x), small(x), atol=1e-6)
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4
    # The uneven layer prunes again: its narrower direction leaves unused mask rows.
    again = tfprune.prune(small, schedule=tfprune.OneShot(0.3), layers=["encoder"])
    apply_target(again, 0.3)
    smaller = tfprune.shrink(again)
    assert smaller.get_layer("encoder").forward_layer.units <= widths[0]
    assert np.abs(smaller(x) - again(x)).max() <= 1e-5


def test_bidirectional_flops_are_both_directions():
    inputs = keras.Input((STEPS, 8))
    one = keras.Model(inputs, keras.layers.LSTM(6)(inputs))
    both = keras.Model(inputs, keras.layers.Bidirectional(keras.layers.LSTM(6))(inputs))
    assert tfprune.count_flops(both) == 2 * tfprune.count_flops(one)


def test_embedding_into_a_bidirectional_lstm_with_states_prunes_saves_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((10,), dtype="int32")
    x = keras.layers.Embedding(40, 16, name="embedding")(tokens)
    bidirectional = keras.layers.Bidirectional(
        keras.layers.LSTM(8, return_sequences=True, return_state=True), name="encoder"
    )
    sequence, forward_h, _, _, backward_c = bidirectional(x)
    x = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(8, 3, name="conv")(sequence))
    x = keras.layers.Concatenate()([x, forward_h, backward_c])
    model = keras.Model(tokens, keras.layers.Dense(3, name="head")(x))
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    assert {w.layer.name for w in tfprune.wrappers_of(pruned)} == {"embedding", "encoder", "conv"}
    apply_target(pruned, 0.5)
    tfprune.save_model(pruned, tmp_path / "pruned.keras")
    ids = np.random.default_rng(0).integers(0, 40, (8, 10))
    restored = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(restored(ids), pruned(ids), atol=1e-6)
    small = tfprune.shrink(pruned)
    assert small.get_layer("encoder").forward_layer.units == 4
    assert small.get_layer("embedding").output_dim == 8
    assert np.abs(small(ids) - pruned(ids)).max() <= 1e-5
    for quantize in (None, "int8"):
        path = tfprune.export_tflite(
            small,
            tmp_path / f"text_{quantize}.tflite",
            quantize=quantize,
            representative_data=ids.astype(np.float32) if quantize else None,
        )
        assert tfprune.verify_tflite(path, small, ids) <= (1e-4 if quantize is None else 0.1)


def test_bidirectional_without_a_merged_output_is_a_barrier_with_its_reason():
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8, name="embed")(inputs)
    forward, backward = keras.layers.Bidirectional(
        keras.layers.GRU(4), merge_mode=None, name="apart"
    )(x)
    x = keras.layers.Concatenate()([forward, backward])
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    assert "merge_mode other than None" in str(tfprune.explain(model))


def frames_into_lstm():
    frames = keras.Input((4, 8, 8, 2))
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3, activation="relu"), name="conv")(
        frames
    )
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.LSTM(8, name="recurrent")(x)
    return keras.Model(frames, keras.layers.Dense(3, name="head")(x))


def tokens_into_lstm():
    tokens = keras.Input((STEPS,), dtype="int32")
    x = keras.layers.Embedding(30, 8, name="embedding")(tokens)
    x = keras.layers.LSTM(8, name="recurrent")(x)
    return keras.Model(tokens, keras.layers.Dense(3, name="head")(x))


@pytest.mark.parametrize(
    "build, data",
    [
        (frames_into_lstm, lambda: np.random.default_rng(0).random((16, 4, 8, 8, 2), np.float32)),
        (tokens_into_lstm, lambda: np.random.default_rng(0).integers(0, 30, (16, STEPS))),
    ],
    ids=["time_distributed_conv", "embedding"],
)
def test_what_feeds_an_lstm_prunes_with_it(build, data, tmp_path):
    keras.utils.set_random_seed(0)
    model, x = build(), data()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=["head"])
    assert len(tfprune.wrappers_of(pruned)) == 2
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, np.arange(16) % 3, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
    small = tfprune.shrink(tfprune.strip(pruned))
    assert units_of(small.get_layer("recurrent")) == 4
    first = small.layers[1]
    assert (first.layer.filters if hasattr(first, "layer") else first.output_dim) == 4
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    path = tfprune.export_tflite(small, tmp_path / "small.tflite")
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


@given(
    kinds=st.lists(
        st.sampled_from(["lstm", "gru", "gru_reset_before", "simple_rnn"]), min_size=1, max_size=3
    ),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=6, deadline=None)
def test_random_recurrent_stacks_shrink_to_the_same_function(kinds, seed):
    rng = np.random.default_rng(seed)
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.Dense(8)(inputs)
    for index, kind in enumerate(kinds):
        last = index == len(kinds) - 1
        x = RECURRENT[kind](return_sequences=not last, go_backwards=bool(rng.integers(2)))(x)
    model = randomized(keras.Model(inputs, keras.layers.Dense(3)(x)), seed)
    criterion = tfprune.criteria.RandomScores(seed)
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5), protect=None, criterion=criterion)
    apply_target(pruned, 0.5)
    small = tfprune.shrink(pruned)
    assert tfprune.count_flops(small) < tfprune.count_flops(model)
    x = sequences(seed=seed % 7)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5


def next_frame_model():
    """keras.io's next-frame prediction: ConvLSTM2D layers with BatchNormalization, then a
    Conv3D over time and space, small."""
    inputs = keras.Input((None, 8, 8, 1))
    x = keras.layers.ConvLSTM2D(
        16, 5, padding="same", return_sequences=True, activation="relu", name="lstm1"
    )(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ConvLSTM2D(
        16, 3, padding="same", return_sequences=True, activation="relu", name="lstm2"
    )(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    outputs = keras.layers.Conv3D(1, 3, activation="sigmoid", padding="same", name="frame")(x)
    return keras.Model(inputs, outputs)


def test_conv_lstm_hidden_channels_prune_as_units_shrink_and_export(tmp_path):
    keras.utils.set_random_seed(0)
    model = next_frame_model()
    rows = {row["layer"]: row for row in tfprune.explain(model)}
    assert rows["lstm1"]["removable"] == rows["lstm2"]["removable"] == 16
    pruned = tfprune.prune(model, schedule=0.5)
    apply_target(pruned, 0.5)
    small = tfprune.shrink(tfprune.strip(pruned))
    assert small.get_layer("lstm1").filters == small.get_layer("lstm2").filters == 8
    # Every gate of both kernels, and the next layer's inputs, lost the same units.
    assert small.get_layer("lstm2").get_weights()[0].shape == (3, 3, 8, 32)
    assert small.get_layer("lstm2").get_weights()[1].shape == (3, 3, 8, 32)
    x = np.random.default_rng(0).random((2, 4, 8, 8, 1), dtype=np.float32)
    assert np.abs(small(x) - pruned(x)).max() <= 1e-5
    assert tfprune.count_flops(small) < 0.5 * tfprune.count_flops(model)
    path = tfprune.export_tflite(small, tmp_path / "frames.tflite", input_shapes=(4, 8, 8, 1))
    assert tfprune.verify_tflite(path, small, x) <= 1e-4


@pytest.mark.parametrize("layer", [keras.layers.ConvLSTM1D, keras.layers.ConvLSTM3D])
def test_conv_lstm_of_every_rank_is_prunable(layer):
    assert registry.spec_for(layer(4, 3)).config_key == "filters"
