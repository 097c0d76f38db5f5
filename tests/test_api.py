"""The public API: every name in tfprune.__all__ exists, and the result types are what
the functions return."""

import numpy as np
import pytest
from helpers import small_cnn

import tfprune


def test_every_public_name_exists():
    for name in tfprune.__all__:
        assert hasattr(tfprune, name), name


def test_result_and_base_types(tmp_path):
    model = small_cnn()
    pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
    assert isinstance(tfprune.apply_target(pruned, 0.5), tfprune.masking.PruningPlan)
    assert isinstance(tfprune.summary(pruned), tfprune.inspection.Summary)
    assert isinstance(tfprune.OneShot(0.5), tfprune.masking.PruningSchedule)
    assert isinstance(tfprune.granularity.get("2:4"), tfprune.masking.Granularity)
    assert isinstance(tfprune.PGD(0.1), tfprune.robustness.Attack) and isinstance(
        tfprune.robustness.CutoffScale(), tfprune.robustness.Attack
    )
    path = tfprune.export_tflite(tfprune.strip(pruned), tmp_path / "m.tflite")
    assert isinstance(tfprune.benchmark_tflite(path, runs=3, warmup=1), tfprune.export.Latency)
    with pytest.raises(tfprune.export.TFLiteNotFoundError):
        tfprune.export.load_interpreter(tmp_path / "nope.tflite")
    x = np.random.default_rng(0).random((32, 12, 12, 1), dtype=np.float32)
    found = tfprune.methods.layerwise_rates(
        model, (x, np.arange(32) % 4), target_flops=0.3, verbose=False
    )
    assert isinstance(found, tfprune.methods.LayerwiseRates) and set(found.rates) == {
        "conv1",
        "conv2",
        "conv3",
    }


def test_the_top_level_holds_the_data_path_in_at_most_40_names():
    assert len(tfprune.__all__) <= 40
    for name in ("prune", "PruningCallback", "strip", "shrink", "export_tflite", "summary"):
        assert name in tfprune.__all__


# The names of 0.1.0's top level that moved into a namespace (the compatibility promise).
MOVED = {
    "callbacks": ["ChiefOnly", "is_chief"],
    "criteria": ["l1", "l2"],
    "export": ["Latency", "StorageChoice", "StorageReport", "TFLiteFileError",
               "TFLiteNotFoundError", "XnnpackSparsePath", "load_interpreter",
               "plan_sparse_storage", "run_tflite"],
    "inspection": ["Summary"],
    "layers": ["ChannelRule", "GroupedConv2D", "LayerSpec", "SelfAttentionMask",
               "ShrunkLayerNormalization", "ShrunkRMSNormalization", "SplitDepthwiseConv2D",
               "SplitGroupedConv2D", "UnevenBidirectional", "register_channel_rule",
               "register_unfolding"],
    "masking": ["Block", "ChannelMaskWrapper", "Filter", "Granularity", "NM", "PruneWrapper",
                "PruningPlan", "PruningSchedule", "Unstructured"],
    "methods": ["DSP", "Distillation", "GroupPlan", "IterativePruning", "LEAP", "LayerwiseRates",
                "RebuildResult", "compensate", "compensated_rates", "deploy_groups",
                "fit_with_rebuilds", "iplt", "layerwise_rates", "mask_similarity", "pfwt"],
    "robustness": ["Attack", "CutoffScale", "DeepFool", "cutoff_scale", "robust_correct"],
    "shrinking": ["shrink_heads"],
}  # fmt: skip


@pytest.mark.parametrize(
    "namespace, name", [(ns, name) for ns, names in MOVED.items() for name in names]
)
def test_a_moved_name_lives_in_its_namespace_and_warns_at_the_top_level(namespace, name):
    import importlib

    module = importlib.import_module(f"tfprune.{namespace}")
    assert name in module.__all__ and name not in tfprune.__all__
    with pytest.warns(DeprecationWarning, match=f"tfprune.{name} moved to tfprune.{namespace}"):
        old = getattr(tfprune, name)
    assert old is getattr(module, name)


def test_every_namespace_name_resolves():
    import importlib

    for package in ("callbacks", "export", "graph", "inspection", "layers", "masking"):
        namespace = importlib.import_module(f"tfprune.{package}")
        for name in namespace.__all__:
            assert getattr(namespace, name) is not None, (package, name)
    for package in ("methods", "robustness", "shrinking", "criteria"):
        namespace = importlib.import_module(f"tfprune.{package}")
        assert all(getattr(namespace, name) is not None for name in namespace.__all__)


def test_the_version_is_set_once():
    import importlib.metadata
    import pathlib

    # pyproject.toml reads it from tfprune/__init__.py; the installed metadata agrees.
    pyproject = (pathlib.Path(tfprune.__file__).parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    assert importlib.metadata.version("tfprune") == tfprune.__version__
    # The changelog's newest release is this version.
    changelog = (pathlib.Path(tfprune.__file__).parents[1] / "CHANGELOG.md").read_text()
    releases = [line for line in changelog.splitlines() if line.startswith("## [0")]
    assert releases[0].startswith(f"## [{tfprune.__version__}] - ")


def test_the_names_static_tools_read_are_the_ones_loaded_at_run_time():
    """`tfprune/__init__.py` imports its top level under TYPE_CHECKING (for IDEs and the API
    reference) and loads it from `_TOP_LEVEL` at run time: the two agree, name by name."""
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(tfprune.__file__).read_text())
    static = {
        alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
        for node in block.body
        for alias in node.names
    }
    assert sorted(static) == sorted(tfprune.__all__)
    assert all(getattr(tfprune, name).__module__ == static[name] for name in static)
