"""Input checks shared by the public functions: is this a Keras 3 graph model?"""

from __future__ import annotations

import keras
from keras.src.models.functional import Functional


def check_model(model, function: str) -> None:
    """Raise a clear error unless `model` is a built Keras 3 functional or Sequential model.

    Args:
        model: what the user passed.
        function: the public function's name, for the message.

    Raises:
        TypeError: for tf_keras (Keras 2) models, subclassed models and non-models.
        ValueError: for a model that is not built yet.
    """
    module = type(model).__module__
    if module.startswith(("tf_keras", "tensorflow.python.keras", "keras.api._v2")) or (
        hasattr(model, "layers") and not isinstance(model, keras.Model) and "keras" in module
    ):
        raise TypeError(
            f"{function}: got a tf_keras (Keras 2) model, {type(model).__name__} from '{module}'. "
            "tfprune works on Keras 3 models: build the model with `import keras` (keras>=3) and "
            "without TF_USE_LEGACY_KERAS=1."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"{function}: expected a keras.Model, got {type(model).__name__}.")
    if type(model) not in (Functional, keras.Sequential):
        raise TypeError(
            f"{function}: '{model.name}' is a subclassed model ({type(model).__name__}); tfprune needs the "
            "graph of layers that only functional and Sequential models expose. Rebuild it with "
            "keras.Input(...) and layer calls, or as keras.Sequential([...])."
        )
    if not model.built or not model.inputs:
        raise ValueError(
            f"{function}: model '{model.name}' is not built. Give it a keras.Input(shape=...) "
            "(for Sequential, as the first layer) so tfprune can trace shapes."
        )

