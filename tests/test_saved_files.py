"""`.keras` files saved by tfprune 0.1.0 load unchanged: masks, policy, schedule step, outputs.

The files were written by `tests/fixtures/make_v0_1_0.py` with tfprune 0.1.0, before the
package moved into subpackages; users have such files, so every later layout must read them.
"""

import json
import pathlib

import keras
import numpy as np
import pytest

import tfprune

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "v0_1_0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["files"]
ARRAYS = np.load(FIXTURES / "expected.npz")


def load(name):
    return keras.saving.load_model(FIXTURES / f"{name}.keras")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_old_file_loads_with_the_same_layers_outputs_and_step(name):
    model = load(name)
    facts = EXPECTED[name]
    assert type(model).__name__ == facts["class"]
    assert [layer.name for layer in getattr(model, "inner_model", model).layers] == facts["layers"]
    if facts["iterations"] is not None:
        assert int(model.optimizer.iterations) == facts["iterations"]
    outputs = keras.ops.convert_to_numpy(model(ARRAYS["probe"], training=False))
    np.testing.assert_allclose(outputs, ARRAYS[f"{name}/outputs"], atol=1e-6)


@pytest.mark.parametrize("name", ["filter_mid_pruning", "adversarial_mid_pruning"])
def test_old_file_keeps_masks_policy_and_schedule_state(name):
    model = load(name)
    inner = getattr(model, "inner_model", model)
    wrappers = {w.layer.name: w for w in tfprune.wrappers_of(inner)}
    assert sorted(wrappers) == sorted(EXPECTED[name]["policy"])
    for layer_name, policy in EXPECTED[name]["policy"].items():
        wrapper = wrappers[layer_name]
        np.testing.assert_array_equal(wrapper.mask_array(), ARRAYS[f"{name}/mask/{layer_name}"])
        state = keras.ops.convert_to_numpy(wrapper.schedule_state)
        np.testing.assert_array_equal(state, ARRAYS[f"{name}/schedule_state/{layer_name}"])
        assert str(wrapper.granularity) == policy["granularity"]
        assert (getattr(wrapper.criterion, "__name__", None) or repr(wrapper.criterion)) == policy[
            "criterion"
        ]
        assert type(wrapper.schedule).__name__ == policy["schedule_class"]
        assert wrapper.schedule.get_config() == policy["schedule"]
        for key in ("ranking", "target", "min_filters", "round_to", "group_reduction", "rate"):
            assert getattr(wrapper, key) == policy[key], key
    for layer in inner.layers:
        if isinstance(layer, tfprune.masking.ChannelMaskWrapper):
            np.testing.assert_array_equal(
                layer.mask_array(), ARRAYS[f"{name}/channel_mask/{layer.layer.name}"]
            )


def test_old_mid_pruning_file_resumes_its_schedule_where_it_stopped():
    model = load("filter_mid_pruning")
    step = EXPECTED["filter_mid_pruning"]["iterations"]
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 12, 12, 3), dtype=np.float32), rng.integers(0, 4, 16)
    callback = tfprune.PruningCallback()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert [event["step"] for event in callback.events] == [step]
    schedule = tfprune.wrappers_of(model)[0].schedule
    assert callback.events[0]["target"] == pytest.approx(schedule(step))
