"""tfprune under Keras' JAX and PyTorch backends, each run in a subprocess (this process runs
TensorFlow):
`import tfprune` loads no TensorFlow, masks hold exactly after every optimizer step (compiled
and eager, with mask updates in the middle of epochs), checkpoints stay sparse, and the data
path (prune -> fit -> strip -> shrink -> summary -> explain -> save and load) keeps its
numerical contract, and `export_tflite` called on JAX writes files that match JAX's outputs.
LEAP and DSP learn their masks in each backend's own train step, as TensorFlow does. The
worker is `backend_worker.py`.

JAX (CPU) is in the test extra, and its tests run in `make test`. PyTorch's PyPI wheel is a
CUDA build of about 8.5 GB, so its tests are `slow`: `make test-all` installs the `torch`
extra and runs them."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import backend_worker
import numpy as np
import pytest
from test_architecture import TENSORFLOW_MODULES

pytestmark = pytest.mark.backend
NO_JAX = "jax is not installed: it comes with the test extra (pip install -e '.[test]')"
BACKENDS = [
    pytest.param(
        "jax", marks=pytest.mark.skipif(not importlib.util.find_spec("jax"), reason=NO_JAX)
    ),
    pytest.param(
        "torch",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(
                not importlib.util.find_spec("torch"),
                reason="torch is not installed: make test-all installs the torch extra",
            ),
        ],
    ),
]
WORKER = pathlib.Path(__file__).with_name("backend_worker.py")


def run(tmp_path, scenario, backend, **env):
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    done = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), scenario],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["backend"] == backend
    return result


def run_here(path, scenario):
    """`scenario` in this process, which runs TensorFlow: TensorFlow's side of a comparison
    without the cost of another process."""
    backend_worker.SCENARIOS[scenario](path)
    return json.loads((path / "result.json").read_text())


def run_and_load(path, scenario, backend, arrays, **env):
    """`run` in a new directory `path`, and the arrays the scenario saved to `arrays`; for
    `"tensorflow"`, in this process (which runs TensorFlow), without starting another."""
    path.mkdir()
    if backend == "tensorflow":
        assert not env, "a scenario run here reads this process's environment"
        result = run_here(path, scenario)
    else:
        result = run(path, scenario, backend, **env)
    with np.load(path / arrays) as saved:
        return result, {name: saved[name] for name in saved.files}


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_tfprune_loads_no_tensorflow(tmp_path, backend):
    result = run(tmp_path, "import", backend)
    assert not result["tensorflow_loaded"]
    assert {"methods", "robustness", "export", "criteria"} <= set(result["namespaces"])


# Eager on JAX and the families' fits are `slow` (make test-all): in `make test` the compiled
# step covers the same masking, and the masks test covers the families on JAX.
@pytest.mark.parametrize(
    "eager", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["compiled", "eager"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_hold_after_every_step_and_the_data_path_keeps_its_contract(tmp_path, backend, eager):
    result = run(tmp_path, "fit", backend, TFPRUNE_RUN_EAGERLY="1" if eager else "0")
    # Every optimizer step leaves every masked weight exactly zero.
    assert result["largest_masked_per_step"] == [0.0] * 16
    # Updates in the middle of the first epoch (8 steps) take effect at once.
    sparsity = result["sparsity_per_step"]
    assert 0 < sparsity[4] < sparsity[7] < sparsity[10] == pytest.approx(0.5, abs=0.02)
    assert result["checkpoint_largest_masked"] == 0.0
    assert result["checkpoint_sparsity"] == pytest.approx(sparsity[-1])
    assert result["stripped_vs_masked"] <= 1e-5
    assert result["stripped_vs_masked_training"] <= 1e-5
    assert result["shrunk_vs_stripped"] <= 1e-5
    assert result["reloaded_vs_shrunk"] <= 1e-6
    assert result["filters"] == {"conv1": 4, "conv2": 4}
    assert result["flops_ratio"] < 0.6
    assert result["summary_rows"] > 0 and result["explained"] > 0
    # Nothing on the data path loaded tfprune's TensorFlow modules (Keras' own
    # serialization loads TensorFlow where it is installed).
    assert not set(result["tfprune_modules"]) & TENSORFLOW_MODULES
    # The shrunk model saved here loads under TensorFlow (no other backend's compile state).
    assert run_here(tmp_path, "load")["vs_saving_backend"] <= 1e-5


# Each file costs a TensorFlow process: in `make test` JAX exports the shrunk model; int8 and
# the pruned (unstripped) model are `slow`.
@pytest.mark.parametrize(
    "every_kind", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["float", "all"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_export_writes_a_litert_file_that_matches_the_backends_outputs(
    tmp_path, backend, every_kind
):
    result = run(tmp_path, "export", backend, TFPRUNE_EXPORT_ALL=str(int(every_kind)))
    assert result["magic"] == ["TFL3"] * (3 if every_kind else 1)
    # The TensorFlow process converts the weights JAX trained; LiteRT agrees with JAX.
    assert result["small_vs_keras"] <= 1e-4
    if every_kind:
        assert result["pruned_vs_keras"] <= 1e-4
        assert result["int8_vs_keras"] <= 0.05  # the quantization step
    # A wrong argument is refused in one line before any conversion, and writes nothing;
    # an error the TensorFlow process raises reaches the caller as itself.
    errors = result["error"].split("\n")
    assert errors[0].startswith("export_tflite: input_shapes has 2 shapes")
    assert len(errors) == (2 if every_kind else 1) and not result["bad_written"]
    if every_kind:
        assert "representative_data" in errors[1], errors[1]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_depthwise_attention_recurrent_and_keras_hub_prune_during_fit(tmp_path, backend):
    families = run(tmp_path, "families", backend)["families"]
    assert sorted(families) == ["attention", "depthwise", "keras_hub_bert", "recurrent"]
    for name, result in families.items():
        assert result["largest_masked"] == 0.0, name
        assert result["sparsity"] > 0.1 and result["flops_removed"] >= 0.38, name
        assert result["stripped_vs_masked"] <= 1e-5, name
        assert result["shrunk_vs_stripped"] <= 1e-5, name


# `slow` with the adversarial and distillation fits below (make test-all): in `make test`
# the data path, the attacks (gradients), LEAP and DSP (training wrappers), export and data
# parallelism stand for every item on JAX, within the 8 minutes.
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["masks", "taylor"], ids=["magnitude", "gradients"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_masks_are_tensorflows_from_the_same_weights(tmp_path, backend, scenario):
    chosen = {}
    for name in (backend, "tensorflow"):
        chosen[name] = run_and_load(tmp_path / name, scenario, name, "masks.npz")[1]
    assert sorted(chosen[backend]) == sorted(chosen["tensorflow"])
    # Heads, FFN units, depthwise, LSTM and GRU units; the taylor criteria's convolutions.
    assert len(chosen[backend]) >= (10 if scenario == "masks" else 4)
    for layer, mask in chosen[backend].items():
        assert 0 < mask.mean() < 1, layer
        np.testing.assert_array_equal(mask, chosen["tensorflow"][layer], err_msg=layer)
    if scenario == "taylor":  # HYDRA learned: its masks left the L2 norms' it started from
        learned = [name for name in chosen[backend] if name.startswith("hydra/")]
        assert any(
            (chosen[backend][name] != chosen[backend]["l2/" + name[6:]]).any() for name in learned
        )


@pytest.mark.skipif(not importlib.util.find_spec("jax"), reason=NO_JAX)
def test_data_parallel_pruning_on_two_devices_matches_one_device(tmp_path):
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result, masks = run_and_load(
        tmp_path / "run", "data_parallel", "jax", "masks_two.npz", **two_devices
    )
    with np.load(tmp_path / "run" / "masks_one.npz") as saved:
        one_device = {name: saved[name] for name in saved.files}
    assert result["devices"] == 2
    assert result["largest_masked"] == 0.0
    # Every device holds the whole mask, the same one.
    shards = result["shards_equal_to_mask"]
    assert all(all(equal) and len(equal) == 2 for equal in shards.values())
    assert sorted(masks) == sorted(one_device)
    for layer, mask in masks.items():
        assert 0 < mask.mean() < 1, layer
        np.testing.assert_array_equal(mask, one_device[layer], err_msg=layer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attacks_and_robust_accuracy_agree_with_tensorflow(tmp_path, backend):
    adversarial, results = {}, {}
    for name in (backend, "tensorflow"):
        results[name], adversarial[name] = run_and_load(
            tmp_path / name, "attacks", name, "adversarial.npz"
        )
    accuracy = {name: result["accuracy"] for name, result in results.items()}
    x = adversarial[backend].pop("x")
    for attack, inputs in adversarial[backend].items():
        reference = adversarial["tensorflow"][attack]
        assert np.abs(inputs - x).max() > 0.01, attack  # the attack moved the inputs
        # The same perturbation, but for gradient signs flipped by rounding near zero.
        assert np.isclose(inputs, reference, atol=1e-4).mean() >= 0.99, attack
        assert abs(accuracy[backend][attack] - accuracy["tensorflow"][attack]) <= 1 / 16
        assert accuracy[backend][attack] <= accuracy[backend]["clean"], attack
    for loss, result in results[backend]["apgd"].items():
        assert 0.01 < result["moved"] <= 0.03 + 1e-6, loss  # inside the L-inf ball
        assert result["accuracy"] <= accuracy["tensorflow"]["fgsm"] + 1 / 16, loss


@pytest.mark.parametrize("aware", [False, True], ids=["unpaced", "aware"])
@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_adversarial_training_prunes_during_fit(tmp_path, backend, aware):
    result = run(tmp_path, "adversarial", backend, TFPRUNE_AWARE="1" if aware else "0")
    assert result["sparsity"][-1] == pytest.approx(0.5, abs=0.02)
    assert result["largest_masked"] == 0.0
    assert all(0 < loss < 10 for loss in result["loss"])
    assert result["loss"][-1] < result["loss"][0]
    assert 0 <= result["robust"] <= 1
    if aware:  # the schedule probed and advanced (a tolerance of 50 points never holds)
        assert result["decisions"] and all(d == "advance" for d in result["decisions"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_distillation_prunes_during_fit_and_trains_only_the_student(tmp_path, backend):
    result = run(tmp_path, "distill", backend)
    assert result["sparsity"][-1] == pytest.approx(0.5, abs=0.02)
    assert result["largest_masked"] == 0.0
    # alpha 1: the loss is the distillation term alone, and it falls as the student learns.
    assert result["loss"] == pytest.approx(result["distillation_loss"], rel=1e-5)
    assert result["distillation_loss"][-1] < result["distillation_loss"][0]
    assert result["teacher_unchanged"]


# The deployment half (shrink, deploy_groups, save and load) is `slow` on JAX: in `make test`
# the masks' contract after shrink and save is covered by the data path test above.
@pytest.mark.parametrize(
    "deploy", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["fit", "deploy"]
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_leap_and_dsp_learn_their_masks_in_the_backends_own_train_step(tmp_path, backend, deploy):
    result, learned = run_and_load(
        tmp_path / backend, "learned", backend, "learned.npz", TFPRUNE_DEPLOY=str(int(deploy))
    )
    reference, saved = run_and_load(tmp_path / "tensorflow", "learned", "tensorflow", "learned.npz")
    assert sorted(saved) == sorted(learned)
    for name, value in saved.items():  # LEAP's scores, thresholds and the weights
        np.testing.assert_allclose(learned[name], value, atol=1e-3, err_msg=name)
    for logged in ("density", "leap_lambda", "loss"):
        assert result["leap"][logged] == pytest.approx(reference["leap"][logged], rel=1e-4)
    assert result["leap"]["density"][-1] < result["leap"]["density"][0]  # the thresholds fell
    # DSP: the ramp, one step counted per optimizer step, and the logits trained by their
    # own Adam at 1e-3 (the model's Adam at 1e-2 would move them about 0.1 in 12 steps).
    assert result["dsp"]["dsp_lambda"] == pytest.approx([7.5e-4, 1e-3, 1e-3])
    assert result["dsp_step"] == result["dsp_iterations"] == 12
    assert 0 < result["logits_moved"] < 0.03
    assert all(np.isfinite(result["dsp"]["group_lasso"]))
    if deploy:
        assert result["leap_masked"] <= 1e-6
        assert result["leap_shrunk"] <= 1e-5
        assert result["leap_loaded"] <= 1e-6
        assert max(result["dsp_deployed"]) <= 1e-5
        assert result["flops_removed"] == pytest.approx([0.2, 0.2], abs=0.05)
