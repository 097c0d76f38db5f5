"""tfprune: structured pruning for Keras 3, from `model.fit` to a faster LiteRT file.

The data path, and the subpackage that owns each step:

    prune (masking) -> fit (callbacks) -> strip (masking) -> shrink (shrinking) -> export (export)

- `core`: argument checks, model walking, and the one module of Keras internals;
- `layers`: the per-layer-type registry, and the layers tfprune adds;
- `graph`: the channel dependency graph, constant channels, FLOPs, the latency table;
- `criteria`: importance scores, one criterion per module;
- `masking`: granularities, schedules, wrappers, channel groups, ranking, `prune`, `strip`;
- `callbacks`: `PruningCallback` and the adversarial-aware schedule;
- `shrinking`: `shrink`, physical removal;
- `export`: the LiteRT converter, sparse storage, the interpreter, reading `.tflite` files;
- `inspection`: `summary` and `explain`;
- `robustness`: attacks (APGD included), robust accuracy and adversarial training (usable
  without pruning);
- `methods`: procedures from the literature (IMP, presets, rebuilds, layer-wise rates,
  compensation, DSP, LEAP, distillation), and measuring latency tables.

Each subpackage imports only the ones above it in this list (`robustness` only `core`);
`docs/architecture.md` draws the diagram, and `tests/test_architecture.py` holds the rule.
Everything a user needs is importable from `tfprune` itself.

Example (examples in docstrings assume `import keras, numpy as np, tfprune`):

>>> inputs = keras.Input((8, 8, 1))
>>> x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
>>> x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
>>> x = keras.layers.GlobalAveragePooling2D()(x)
>>> model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
>>> pruned = tfprune.prune(model, schedule=tfprune.OneShot(0.5))
>>> pruned.compile("adam", "sparse_categorical_crossentropy")
>>> x, y = np.random.rand(16, 8, 8, 1).astype("float32"), np.arange(16) % 3
>>> _ = pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfprune.PruningCallback()])
>>> small = tfprune.shrink(tfprune.strip(pruned))
>>> small.get_layer("conv2").filters
8
"""

import importlib
import sys

from tfprune.callbacks.adversarial_aware import AdversarialAwarePruning
from tfprune.callbacks.chief import ChiefOnly
from tfprune.callbacks.pruning import PruningCallback
from tfprune.core.distribution import is_chief
from tfprune.criteria.magnitude import l1, l2
from tfprune.export.converter import export_tflite, plan_sparse_storage
from tfprune.export.interpreter import (
    Latency,
    benchmark_tflite,
    compare_latency,
    load_interpreter,
    run_tflite,
    verify_tflite,
)
from tfprune.export.keras_file import save_model
from tfprune.export.sparse_storage import StorageChoice, StorageReport, XnnpackSparsePath
from tfprune.export.tflite_file import TFLiteFileError, TFLiteNotFoundError, inspect_tflite
from tfprune.graph.flops import count_flops
from tfprune.graph.latency import LatencyTable
from tfprune.graph.reference import reference_size, set_reference_size
from tfprune.inspection.explain import explain
from tfprune.inspection.summary import Summary, summary
from tfprune.layers.attention_mask import SelfAttentionMask
from tfprune.layers.bidirectional import UnevenBidirectional
from tfprune.layers.grouped_conv import GroupedConv2D
from tfprune.layers.normalization import ShrunkLayerNormalization, ShrunkRMSNormalization
from tfprune.layers.registry import (
    ChannelRule,
    LayerSpec,
    register_channel_rule,
    register_layer,
    register_unfolding,
)
from tfprune.layers.split_depthwise import SplitDepthwiseConv2D, SplitGroupedConv2D
from tfprune.masking.granularity import NM, Block, Filter, Granularity, Unstructured
from tfprune.masking.prune import prune
from tfprune.masking.ranking import PruningPlan, apply_target, pruning_plans
from tfprune.masking.recalibration import recalibrate_batchnorm
from tfprune.masking.schedules import (
    ConstantSparsity,
    Iterative,
    OneShot,
    PolynomialDecay,
    PruningSchedule,
)
from tfprune.masking.strip import strip
from tfprune.masking.unfold import unfold
from tfprune.masking.wrappers import ChannelMaskWrapper, PruneWrapper, wrappers_of
from tfprune.methods.compensation import compensate
from tfprune.methods.distillation import Distillation
from tfprune.methods.dsp import DSP, GroupPlan, deploy_groups
from tfprune.methods.imp import IterativePruning, mask_similarity
from tfprune.methods.latency_table import measure_latency_table
from tfprune.methods.layerwise import LayerwiseRates, compensated_rates, layerwise_rates
from tfprune.methods.leap import LEAP
from tfprune.methods.presets import iplt, pfwt
from tfprune.methods.rebuild import RebuildResult, fit_with_rebuilds
from tfprune.robustness.accuracy import robust_accuracy, robust_correct
from tfprune.robustness.apgd import APGD
from tfprune.robustness.attacks import FGSM, PGD, CutoffScale, DeepFool, cutoff_scale
from tfprune.robustness.base import Attack
from tfprune.robustness.training import AdversarialTraining
from tfprune.shrinking.heads import shrink_heads
from tfprune.shrinking.shrink import shrink

# Registered with Keras for `.keras` files that use it (`tfprune.criteria` loads it lazily).
from tfprune.criteria import taylor as _taylor  # noqa: E402, F401  isort: skip

# --- Compatibility: the module paths of tfprune 0.1.0 (one flat folder) ------------------
# `from tfprune import granularity`, `tfprune.sparse_storage.BREAK_EVEN`, `import
# tfprune.litert` keep working; new code imports the modules where they live now.
_MOVED_MODULES = {
    "adversarial": "robustness.attacks",
    "adversarial_training": "robustness.training",
    "checks": "core.checks",
    "compensation": "methods.compensation",
    "configurable": "core.configurable",
    "dsp": "methods.dsp",
    "flops": "graph.flops",
    "granularity": "masking.granularity",
    "grouping": "masking.grouping",
    "imp": "methods.imp",
    "layerwise": "methods.layerwise",
    "leap": "methods.leap",
    "litert": "export.interpreter",
    "metrics": "inspection.summary",
    "modelwalk": "core.modelwalk",
    "normalization": "layers.normalization",
    "presets": "methods.presets",
    "ranking": "masking.ranking",
    "rebuild": "methods.rebuild",
    "registry": "layers.registry",
    "schedules": "masking.schedules",
    "sparse_storage": "export.sparse_storage",
    "tflite_file": "export.tflite_file",
    "trainstep": "core.train_step",
    "wrappers": "masking.wrappers",
}
for _old, _new in _MOVED_MODULES.items():
    globals()[_old] = sys.modules.setdefault(
        f"{__name__}.{_old}", importlib.import_module(f"{__name__}.{_new}")
    )
del _old, _new
# ------------------------------------------------------------------------------------------

__version__ = "0.1.0"

__all__ = [
    "AdversarialAwarePruning",
    "APGD",
    "AdversarialTraining",
    "Distillation",
    "Attack",
    "CutoffScale",
    "DSP",
    "DeepFool",
    "FGSM",
    "PGD",
    "cutoff_scale",
    "robust_accuracy",
    "robust_correct",
    "Block",
    "ChannelMaskWrapper",
    "ChannelRule",
    "ChiefOnly",
    "ConstantSparsity",
    "Filter",
    "Granularity",
    "GroupPlan",
    "GroupedConv2D",
    "Iterative",
    "IterativePruning",
    "LEAP",
    "LayerSpec",
    "Latency",
    "LatencyTable",
    "LayerwiseRates",
    "NM",
    "OneShot",
    "PolynomialDecay",
    "PruneWrapper",
    "PruningPlan",
    "PruningCallback",
    "PruningSchedule",
    "RebuildResult",
    "SelfAttentionMask",
    "SplitDepthwiseConv2D",
    "SplitGroupedConv2D",
    "ShrunkLayerNormalization",
    "ShrunkRMSNormalization",
    "StorageChoice",
    "StorageReport",
    "XnnpackSparsePath",
    "Summary",
    "TFLiteFileError",
    "TFLiteNotFoundError",
    "UnevenBidirectional",
    "Unstructured",
    "apply_target",
    "pruning_plans",
    "benchmark_tflite",
    "compare_latency",
    "compensate",
    "compensated_rates",
    "count_flops",
    "reference_size",
    "set_reference_size",
    "deploy_groups",
    "explain",
    "export_tflite",
    "fit_with_rebuilds",
    "inspect_tflite",
    "is_chief",
    "iplt",
    "l1",
    "layerwise_rates",
    "measure_latency_table",
    "l2",
    "load_interpreter",
    "mask_similarity",
    "pfwt",
    "plan_sparse_storage",
    "prune",
    "register_channel_rule",
    "register_layer",
    "register_unfolding",
    "save_model",
    "run_tflite",
    "shrink",
    "shrink_heads",
    "strip",
    "summary",
    "unfold",
    "recalibrate_batchnorm",
    "verify_tflite",
    "wrappers_of",
]
