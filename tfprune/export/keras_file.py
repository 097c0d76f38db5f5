"""Saving a `.keras` file so that a crash mid-save never leaves half of one."""

from __future__ import annotations

import pathlib

import keras

from tfprune.core import checks
from tfprune.core.files import replacing


def save_model(model, path) -> pathlib.Path:
    """`model.save(path)`, written to a temporary file and renamed into place.

    Keras writes a `.keras` archive straight to its path, so a process killed mid-save
    leaves a truncated file where the last good one was. This writes it beside `path` and
    renames it only once complete: `path` is the old file or the new one, never half of
    either, with the permissions the user's umask gives a new file. A pruned model (with
    wrappers, mid-schedule) is saved as it is and loads with `keras.saving.load_model`.

    Args:
        model: a Keras 3 model.
        path: the `.keras` file to write; its directory must exist.

    Returns:
        The path written, as a `pathlib.Path`.

    Raises:
        TypeError: for a model that is not a Keras 3 model, or a path that is not a `str`
            or `os.PathLike`.
        ValueError: for a name that does not end in `.keras`, or a directory that does not
            exist.

    Example:

    >>> import pathlib, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> path = save_model(model, pathlib.Path(tempfile.mkdtemp()) / "model.keras")
    >>> keras.saving.load_model(path).output_shape
    (None, 2)
    """
    path = checks.check_path(path)
    if not isinstance(model, keras.Model):
        raise TypeError(f"save_model: model must be a Keras 3 model, got {type(model).__name__}.")
    if path.suffix != ".keras":
        raise ValueError(f"save_model: '{path}' must end in .keras (Keras' archive format).")
    if not path.parent.is_dir():
        raise ValueError(f"save_model: directory '{path.parent}' does not exist; create it first.")
    with replacing(path, suffix=".part.keras") as temporary:
        model.save(temporary, overwrite=True)
    return path
