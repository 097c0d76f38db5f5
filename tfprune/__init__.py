"""tfprune: structured pruning for Keras 3, from `model.fit` to a faster LiteRT file.

The data path, one module per step:

    prune (wrappers) -> fit (PruningCallback) -> strip -> shrink -> export_tflite / verify / benchmark

Example:

>>> import keras, tfprune
>>> pruned = tfprune.prune(model, granularity="filter", criterion="l1",
...     schedule=tfprune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=300, frequency=25))
>>> pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
>>> pruned.fit(x, y, epochs=5, callbacks=[tfprune.PruningCallback()])
>>> plain = tfprune.strip(pruned)
>>> tfprune.export_tflite(plain, "model.tflite")
>>> print(tfprune.summary(plain))
"""

from tfprune.adversarial import FGSM, PGD, Attack, CutoffScale, DeepFool, cutoff_scale, robust_accuracy
from tfprune.adversarial_training import AdversarialTraining
from tfprune.callbacks import AdversarialAwarePruning, PruningCallback
from tfprune.criteria import l1, l2
from tfprune.dsp import DSP, GroupedConv2D, GroupPlan, deploy_groups
from tfprune.export import export_tflite, plan_sparse_storage
from tfprune.litert import Latency, benchmark_tflite, load_interpreter, run_tflite, verify_tflite
from tfprune.sparse_storage import StorageChoice, StorageReport, XnnpackSparsePath
from tfprune.tflite_file import TFLiteFileError, TFLiteNotFoundError, inspect_tflite
from tfprune.compensation import compensate
from tfprune.flops import count_flops
from tfprune.graph import explain
from tfprune.imp import IterativePruning, mask_similarity
from tfprune.granularity import NM, Block, Filter, Granularity, Unstructured
from tfprune.leap import LEAP, shrink_heads
from tfprune.layerwise import LayerwiseRates, compensated_rates, layerwise_rates
from tfprune.metrics import Summary, summary
from tfprune.normalization import ShrunkLayerNormalization, ShrunkRMSNormalization
from tfprune.presets import iplt, pfwt
from tfprune.prune import prune
from tfprune.ranking import PruningPlan, apply_target
from tfprune.rebuild import RebuildResult, fit_with_rebuilds
from tfprune.registry import ChannelRule, LayerSpec, register_channel_rule, register_layer
from tfprune.schedules import ConstantSparsity, Iterative, OneShot, PolynomialDecay, PruningSchedule
from tfprune.shrink import shrink
from tfprune.strip import strip
from tfprune.wrappers import ChannelMaskWrapper, PruneWrapper, wrappers_of

__version__ = "0.1.0"

__all__ = [
    "AdversarialAwarePruning",
    "AdversarialTraining",
    "Attack",
    "CutoffScale",
    "DSP",
    "DeepFool",
    "FGSM",
    "PGD",
    "cutoff_scale",
    "robust_accuracy",
    "Block",
    "ChannelMaskWrapper",
    "ChannelRule",
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
    "LayerwiseRates",
    "NM",
    "OneShot",
    "PolynomialDecay",
    "PruneWrapper",
    "PruningPlan",
    "PruningCallback",
    "PruningSchedule",
    "RebuildResult",
    "ShrunkLayerNormalization",
    "ShrunkRMSNormalization",
    "StorageChoice",
    "StorageReport",
    "XnnpackSparsePath",
    "Summary",
    "TFLiteFileError",
    "TFLiteNotFoundError",
    "Unstructured",
    "apply_target",
    "benchmark_tflite",
    "compensate",
    "compensated_rates",
    "count_flops",
    "deploy_groups",
    "explain",
    "export_tflite",
    "fit_with_rebuilds",
    "inspect_tflite",
    "iplt",
    "l1",
    "layerwise_rates",
    "l2",
    "load_interpreter",
    "mask_similarity",
    "pfwt",
    "plan_sparse_storage",
    "prune",
    "register_channel_rule",
    "register_layer",
    "run_tflite",
    "shrink",
    "shrink_heads",
    "strip",
    "summary",
    "verify_tflite",
    "wrappers_of",
]
