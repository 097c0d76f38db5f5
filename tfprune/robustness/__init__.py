"""Adversarial robustness, usable with or without pruning; imports only `tfprune.core`.

- `base`: `Attack`, what every attack is (no TensorFlow);
- `attacks`: FGSM, PGD, DeepFool and BAP's cut-off-scale (TensorFlow gradients);
- `accuracy`: `robust_accuracy`;
- `training`: `AdversarialTraining`, adversarial examples inside `model.fit`.
"""
