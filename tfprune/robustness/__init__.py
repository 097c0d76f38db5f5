"""Adversarial robustness, usable with or without pruning; imports only `tfprune.core`.

- `base`: `Attack`, what every attack is (no TensorFlow);
- `attacks`: FGSM, PGD, DeepFool and BAP's cut-off-scale (TensorFlow gradients);
- `apgd`: APGD (AutoAttack's step-size-free PGD) on the cross-entropy or DLR loss;
- `accuracy`: `robust_accuracy` and per example `robust_correct`, also the worst case over
  several attacks;
- `training`: `AdversarialTraining`, adversarial examples inside `model.fit`.
"""

from tfprune.core.namespace import lazy_exports

# Loaded from their modules on first use: importing the namespace loads nothing else.
__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "base": ["Attack"],
        "attacks": ["CutoffScale", "DeepFool", "FGSM", "PGD", "cutoff_scale"],
        "apgd": ["APGD"],
        "accuracy": ["robust_accuracy", "robust_correct"],
        "training": ["AdversarialTraining"],
    },
)
