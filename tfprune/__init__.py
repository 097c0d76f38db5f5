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
The top level holds the data path and what most users need; everything else lives in the
namespace that says what it is (`tfprune.robustness.CutoffScale`, `tfprune.methods.DSP`).

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
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING

import keras

from tfprune.core.namespace import lazy_exports

if TYPE_CHECKING:  # What IDEs and the API reference read; at run time, `_TOP_LEVEL` below.
    from tfprune.callbacks.adversarial_aware import AdversarialAwarePruning
    from tfprune.callbacks.pruning import PruningCallback
    from tfprune.export.converter import export_tflite
    from tfprune.export.interpreter import benchmark_tflite, compare_latency, verify_tflite
    from tfprune.export.keras_file import save_model
    from tfprune.export.tflite_file import inspect_tflite
    from tfprune.graph.flops import count_flops
    from tfprune.graph.latency import LatencyTable
    from tfprune.graph.reference import reference_size, set_reference_size
    from tfprune.inspection.explain import explain
    from tfprune.inspection.summary import summary
    from tfprune.layers.registry import register_layer
    from tfprune.masking.prune import prune
    from tfprune.masking.ranking import apply_target, pruning_plans
    from tfprune.masking.recalibration import recalibrate_batchnorm
    from tfprune.masking.schedules import ConstantSparsity, Iterative, OneShot, PolynomialDecay
    from tfprune.masking.strip import strip
    from tfprune.masking.unfold import unfold
    from tfprune.masking.wrappers import wrappers_of
    from tfprune.methods.latency_table import measure_latency_table
    from tfprune.robustness.accuracy import robust_accuracy
    from tfprune.robustness.apgd import APGD
    from tfprune.robustness.attacks import FGSM, PGD
    from tfprune.robustness.training import AdversarialTraining
    from tfprune.shrinking.shrink import shrink

# The top level, by the module each name lives in. Loaded on first use: on JAX and PyTorch
# `import tfprune` loads no TensorFlow, which only export and the attacks need.
_TOP_LEVEL = {
    "masking.prune": ["prune"],
    "callbacks.pruning": ["PruningCallback"],
    "callbacks.adversarial_aware": ["AdversarialAwarePruning"],
    "masking.strip": ["strip"],
    "shrinking.shrink": ["shrink"],
    "masking.unfold": ["unfold"],
    "masking.schedules": ["ConstantSparsity", "PolynomialDecay", "Iterative", "OneShot"],
    "masking.ranking": ["apply_target", "pruning_plans"],
    "masking.wrappers": ["wrappers_of"],
    "masking.recalibration": ["recalibrate_batchnorm"],
    "export.converter": ["export_tflite"],
    "export.interpreter": ["verify_tflite", "benchmark_tflite", "compare_latency"],
    "export.tflite_file": ["inspect_tflite"],
    "export.keras_file": ["save_model"],
    "inspection.summary": ["summary"],
    "inspection.explain": ["explain"],
    "graph.flops": ["count_flops"],
    "graph.reference": ["set_reference_size", "reference_size"],
    "methods.latency_table": ["measure_latency_table"],
    "graph.latency": ["LatencyTable"],
    "layers.registry": ["register_layer"],
    "robustness.training": ["AdversarialTraining"],
    "robustness.attacks": ["FGSM", "PGD"],
    "robustness.apgd": ["APGD"],
    "robustness.accuracy": ["robust_accuracy"],
}
# Modules that hold what a `.keras` file may name (wrappers, schedules, criteria, layers),
# imported now so that Keras finds them when it loads one; on TensorFlow every module is.
_REGISTERING = (
    "masking.wrappers",
    "masking.schedules",
    "masking.prune",
    "callbacks.pruning",
    "shrinking.shrink",
    "graph.latency",
    "criteria",
    "criteria.taylor",
    "layers",
)
_lazy_getattr, _lazy_dir, _ = lazy_exports(__name__, _TOP_LEVEL)

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
    "wrappers": "masking.wrappers",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import tfprune.<0.1.0 module>` gives the module where it lives now, loaded then."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == __name__ and old in _MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        # The import system returns whatever sys.modules holds once this returns.
        new = f"{__name__}.{_MOVED_MODULES[module.__name__.rpartition('.')[2]]}"
        sys.modules[module.__name__] = importlib.import_module(new)


sys.meta_path.append(_MovedModules())
# ------------------------------------------------------------------------------------------

__version__ = "0.2.0"

__all__ = [
    "prune",
    "PruningCallback",
    "AdversarialAwarePruning",
    "strip",
    "shrink",
    "unfold",
    "ConstantSparsity",
    "PolynomialDecay",
    "Iterative",
    "OneShot",
    "apply_target",
    "pruning_plans",
    "wrappers_of",
    "recalibrate_batchnorm",
    "export_tflite",
    "verify_tflite",
    "benchmark_tflite",
    "compare_latency",
    "inspect_tflite",
    "save_model",
    "summary",
    "explain",
    "count_flops",
    "set_reference_size",
    "reference_size",
    "measure_latency_table",
    "LatencyTable",
    "register_layer",
    "AdversarialTraining",
    "FGSM",
    "PGD",
    "APGD",
    "robust_accuracy",
]

# Names of tfprune 0.1.0's top level that now live in a namespace: they work through 0.2.x,
# with a DeprecationWarning that names the new place.
_MOVED_NAMES = {
    "ChiefOnly": "callbacks",
    "is_chief": "callbacks",
    "l1": "criteria",
    "l2": "criteria",
    "Latency": "export",
    "load_interpreter": "export",
    "plan_sparse_storage": "export",
    "run_tflite": "export",
    "StorageChoice": "export",
    "StorageReport": "export",
    "TFLiteFileError": "export",
    "TFLiteNotFoundError": "export",
    "XnnpackSparsePath": "export",
    "Summary": "inspection",
    "ChannelRule": "layers",
    "GroupedConv2D": "layers",
    "LayerSpec": "layers",
    "register_channel_rule": "layers",
    "register_unfolding": "layers",
    "SelfAttentionMask": "layers",
    "ShrunkLayerNormalization": "layers",
    "ShrunkRMSNormalization": "layers",
    "SplitDepthwiseConv2D": "layers",
    "SplitGroupedConv2D": "layers",
    "UnevenBidirectional": "layers",
    "Block": "masking",
    "ChannelMaskWrapper": "masking",
    "Filter": "masking",
    "Granularity": "masking",
    "NM": "masking",
    "PruneWrapper": "masking",
    "PruningPlan": "masking",
    "PruningSchedule": "masking",
    "Unstructured": "masking",
    "compensate": "methods",
    "compensated_rates": "methods",
    "deploy_groups": "methods",
    "Distillation": "methods",
    "DSP": "methods",
    "fit_with_rebuilds": "methods",
    "GroupPlan": "methods",
    "iplt": "methods",
    "IterativePruning": "methods",
    "layerwise_rates": "methods",
    "LayerwiseRates": "methods",
    "LEAP": "methods",
    "mask_similarity": "methods",
    "pfwt": "methods",
    "RebuildResult": "methods",
    "Attack": "robustness",
    "cutoff_scale": "robustness",
    "CutoffScale": "robustness",
    "DeepFool": "robustness",
    "robust_correct": "robustness",
    "shrink_heads": "shrinking",
}


if keras.backend.backend() == "tensorflow":
    # Keras loads TensorFlow anyway: everything that registers a class for `.keras` files
    # is imported now, the methods included.
    _EAGER = (*_TOP_LEVEL, *_MOVED_MODULES.values(), *_REGISTERING)
else:
    _EAGER = _REGISTERING
for _module in _EAGER:
    importlib.import_module(f"{__name__}.{_module}")
del _module


def __dir__():
    return sorted({*globals(), *_lazy_dir(), *_NAMESPACES})


#: The namespaces, loaded on first use off TensorFlow (`tfprune.robustness.CutoffScale`).
_NAMESPACES = (
    "callbacks",
    "core",
    "criteria",
    "export",
    "graph",
    "inspection",
    "layers",
    "masking",
    "methods",
    "robustness",
    "shrinking",
)


def __getattr__(name):
    if name in _NAMESPACES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MOVED_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MOVED_NAMES:
        namespace = f"{__name__}.{_MOVED_NAMES[name]}"
        warnings.warn(
            f"tfprune.{name} moved to {namespace}.{name}; the old name works until 0.3.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(namespace), name)
    return _lazy_getattr(name)
