"""What every attack is: an object called `attack(model, x, y)` that returns adversarial inputs.

The attacks themselves (`tfprune.robustness.attacks`) need gradients, so TensorFlow; this
base class does not, so code that only holds or checks attacks (the adversarial-aware
schedule, `robust_accuracy`) imports no TensorFlow.

Attacks need the model's class scores:

- `output="probabilities"`: the model ends in a softmax (rows sum to 1);
- `output="logits"`: unnormalised scores;
- `output="auto"` (default): probabilities if the last layer's activation is softmax,
  logits otherwise.

A model whose output is not one score per class (shape `(batch, classes)`, classes >= 2)
is rejected with a clear error.
"""

from __future__ import annotations

import keras

from tfprune.core import checks
from tfprune.core.classifier import OUTPUT_KINDS, output_kind
from tfprune.core.configurable import Configurable


def check_clip(clip):
    """The valid input range `(min, max)` as floats, or `None` for no clipping.

    Args:
        clip: `(min, max)` with `min < max`, or `None`.

    Returns:
        `(float(min), float(max))` or `None`.

    Raises:
        ValueError: for an empty range.

    Example:

    >>> check_clip((0, 1))
    (0.0, 1.0)
    """
    if clip is None:
        return None
    low, high = clip
    if not low < high:
        raise ValueError(f"clip must be (min, max) with min < max, got {clip!r}.")
    return float(low), float(high)


def check_attack(attack, name: str = "attack", allow_none: bool = False):
    """`attack`, if it is a `tfprune.robustness.Attack` (or `None`, where that is allowed).

    Args:
        attack: what the caller passed.
        name: the argument's name, for the message. Defaults to "attack".
        allow_none: whether `None` (no attack: clean accuracy) is allowed. Defaults to `False`.

    Returns:
        `attack`.

    Raises:
        TypeError: for anything else.

    Example:

    >>> check_attack(None, allow_none=True) is None
    True
    """
    if (attack is None and allow_none) or isinstance(attack, Attack):
        return attack
    alternative = " or None" if allow_none else ""
    raise TypeError(
        f"{name} must be a tfprune attack (FGSM, PGD, DeepFool, CutoffScale, e.g. "
        f"tfprune.PGD(eps=0.1)){alternative}, got {attack!r}."
    )


class Attack(Configurable):
    """Base class of attacks: `attack(model, x, y) -> x_adv` (a backend tensor).

    Subclasses implement `generate` and extend `get_config`.

    Args:
        clip: `(min, max)` of valid inputs, or `None` for no clipping. Defaults to `(0.0, 1.0)`.
        output: `"auto"`, `"probabilities"` or `"logits"` (see the module docstring).
            Defaults to `"auto"`.

    Raises:
        ValueError: for an empty clip range or an unknown `output`.

    Example:

    ```python
    class Noise(tfprune.robustness.Attack):
        def generate(self, model, x, y, kind):
            return self.project(x + keras.random.uniform(keras.ops.shape(x), -0.1, 0.1))
    ```
    """

    def __init__(self, clip=(0.0, 1.0), output="auto"):
        self.clip = check_clip(clip)
        self.output = checks.check_choice("output", output, OUTPUT_KINDS)

    def project(self, x_adv):
        """`x_adv` clipped to the valid input range (unchanged without one)."""
        return x_adv if self.clip is None else keras.ops.clip(x_adv, *self.clip)

    def __call__(self, model, x, y):
        kind = output_kind(model, self.output)
        x = keras.ops.convert_to_tensor(x, "float32")
        y = keras.ops.cast(keras.ops.reshape(y, [-1]), "int32")
        return self.generate(model, x, y, kind)

    def generate(self, model, x, y, kind):
        """The attack itself, on tensors.

        Args:
            model: the classifier.
            x: float32 inputs.
            y: int32 labels, one per input.
            kind: `"probabilities"` or `"logits"`, resolved from `output`.

        Returns:
            The adversarial inputs.
        """
        raise NotImplementedError

    def get_config(self):
        return {"clip": self.clip, "output": self.output}
