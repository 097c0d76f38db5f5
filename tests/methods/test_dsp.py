"""Dynamic Structure Pruning: the regulariser by hand, the FLOPs bisection, the grouped and
filter deployments computing the masked model's function (also in LiteRT), and the choice
between them."""

import keras
import numpy as np
import pytest
from helpers import small_cnn

import tfprune

# One worker runs this module, so its module-scoped fixture runs once (make test's
# --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_dsp")


@pytest.fixture(scope="module")
def trained(data_module):
    x, y = data_module
    keras.utils.set_random_seed(0)
    dsp = tfprune.methods.DSP(small_cnn(), groups=2, lam=1e-4, ramp_steps=8)
    dsp.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    history = dsp.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    return dsp, history


@pytest.fixture(scope="module")
def data_module():
    rng = np.random.default_rng(0)
    return rng.random((64, 12, 12, 1), dtype=np.float32), rng.integers(0, 4, 64)


def test_regulariser_equals_the_hand_computed_value():
    inputs = keras.Input((4, 4, 2))
    first = keras.layers.Conv2D(2, 1, name="first")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, use_bias=False, name="c")(first))
    # Kernel (1, 1, in=2, filters=2): W[c, f].
    model.get_layer("c").set_weights([np.array([[[[3.0, 0.0], [4.0, 1.0]]]], np.float32)])
    dsp = tfprune.methods.DSP(model, groups=2, layers=["c"])
    # Logits so large that the softmax is one-hot: filter 0 -> group 0, filter 1 -> group 1.
    dsp.logits[0].assign(np.array([[100.0, -100.0], [-100.0, 100.0]], np.float32))
    # Group 0 = filter 0: norms over c are |3| and |4| -> 7, size (sqrt 1 + sqrt 0)^2 = 1.
    # Group 1 = filter 1: norms |0| and |1| -> 1, size 1. R = 7 + 1.
    assert float(dsp.regulariser(sample=False)) == pytest.approx(8.0, rel=1e-4)


def test_group_learning_logs_and_ramps(trained):
    _, history = trained
    assert history["dsp_lambda"][0] < history["dsp_lambda"][-1] == pytest.approx(1e-4)
    assert all(np.isfinite(history["group_lasso"]))


def test_flops_target_and_grouped_deployment_match_the_masked_model(trained, data_module, tmp_path):
    dsp, _ = trained
    x, _ = data_module
    plan = dsp.prune(flops_target=0.3, form="grouped")
    assert plan.form == "grouped" and plan.latency == {}
    assert abs(plan.flops_removed - 0.3) <= 0.02
    assert 1 - tfprune.count_flops(plan.masked, effective=True) / tfprune.count_flops(
        dsp.inner_model
    ) == pytest.approx(plan.flops_removed)
    for layer_groups in plan.groups.values():
        assert all(inputs for inputs, _ in layer_groups)
    deployed = tfprune.methods.deploy_groups(plan)
    assert any(isinstance(layer, tfprune.layers.GroupedConv2D) for layer in deployed.layers)
    assert np.abs(deployed.predict(x, verbose=0) - plan.masked.predict(x, verbose=0)).max() <= 1e-5
    path = tfprune.export_tflite(deployed, tmp_path / "grouped.tflite")
    assert tfprune.verify_tflite(path, deployed, x[:16]) <= 1e-4
    assert "GATHER" in tfprune.inspect_tflite(path)["operators"]
    deployed.save(tmp_path / "grouped.keras")
    loaded = keras.saving.load_model(tmp_path / "grouped.keras")
    assert np.abs(loaded.predict(x[:8], verbose=0) - deployed.predict(x[:8], verbose=0)).max() == 0


def test_filter_form_removes_whole_channels_and_shrinks_to_the_masked_function(
    trained, data_module, tmp_path
):
    dsp, _ = trained
    x, _ = data_module
    plan = dsp.prune(flops_target=0.3, form="filters")
    assert plan.form == "filters" and plan.groups == {} and plan.beta is None
    deployed = tfprune.methods.deploy_groups(plan)
    removed = 1 - tfprune.count_flops(deployed) / tfprune.count_flops(dsp.inner_model)
    assert removed == pytest.approx(plan.flops_removed) and abs(removed - 0.3) <= 0.02
    assert not any(isinstance(layer, tfprune.layers.GroupedConv2D) for layer in deployed.layers)
    assert deployed.get_layer("conv2").filters < 16  # whole filters went
    assert np.abs(deployed.predict(x, verbose=0) - plan.masked.predict(x, verbose=0)).max() <= 1e-5
    path = tfprune.export_tflite(deployed, tmp_path / "filters.tflite")
    assert tfprune.verify_tflite(path, deployed, x[:16]) <= 1e-4
    assert "GATHER" not in tfprune.inspect_tflite(path)["operators"]


def test_filter_form_removes_the_channels_the_readers_dropped():
    # conv2 reads nothing from conv1's channels 1 and 5 (the group lasso's end point for a
    # channel no group needs): those are the filters the filter form removes first.
    def model(width):
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(width, 3, padding="same", name="conv1")(inputs)
        x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))

    keras.utils.set_random_seed(0)
    dense = model(8)
    kernel = dense.get_layer("conv2").get_weights()
    kernel[0][:, :, [1, 5], :] = 0.0
    dense.get_layer("conv2").set_weights(kernel)
    target = 1 - tfprune.count_flops(model(6)) / tfprune.count_flops(dense)
    plan = tfprune.methods.DSP(dense, groups=2).prune(flops_target=target, form="filters")
    conv1 = plan.masked.get_layer("conv1").get_weights()[0]
    zeroed = np.flatnonzero(np.abs(conv1).reshape(-1, 8).sum(axis=0) == 0)
    assert zeroed.tolist() == [1, 5]
    assert tfprune.methods.deploy_groups(plan).get_layer("conv1").filters == 6


def test_auto_keeps_the_form_that_measured_faster(trained):
    dsp, _ = trained
    plan = dsp.prune(flops_target=0.3)  # form="auto"
    assert set(plan.latency) == {"grouped", "filters"}
    assert all(seconds > 0 for seconds in plan.latency.values())
    assert plan.form == min(plan.latency, key=plan.latency.get)
    assert abs(plan.flops_removed - 0.3) <= 0.02


def test_dsp_bad_input(cnn):
    with pytest.raises(ValueError, match="groups"):
        tfprune.methods.DSP(cnn, groups=1)
    with pytest.raises(ValueError, match="nope"):
        tfprune.methods.DSP(cnn, layers=["nope"])
    with pytest.raises(ValueError, match="flops_target"):
        tfprune.methods.DSP(cnn).prune(flops_target=1.5)
    with pytest.raises(ValueError, match="form"):
        tfprune.methods.DSP(cnn).prune(flops_target=0.3, form="fastest")
    with pytest.raises(ValueError, match="cover"):
        tfprune.layers.GroupedConv2D(4, 3, groups=[[[0], [0, 1]]])


def test_a_saved_dsp_loads_compiled_with_both_optimizers_state(trained, data_module, tmp_path):
    dsp, _ = trained
    dsp.save(tmp_path / "dsp.keras")
    loaded = keras.saving.load_model(tmp_path / "dsp.keras")
    assert type(loaded.optimizer).__name__ == "PairedOptimizer"
    assert int(loaded.optimizer.iterations) == int(dsp.optimizer.iterations) > 0
    for saved, restored in zip(dsp.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(restored)
        )
    x, y = data_module
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0).history  # resumes
    assert history["dsp_lambda"] == [pytest.approx(1e-4)]
