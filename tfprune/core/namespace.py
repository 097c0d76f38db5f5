"""Public names of a subpackage, loaded from their modules on first use.

A namespace such as `tfprune.robustness` lists what users reach for (`tfprune.robustness.FGSM`)
without importing every module at once: the attacks and the converter load TensorFlow, and
the core path (`prune`, the callbacks, `shrink`) must not.
"""

from __future__ import annotations

import importlib


def lazy_exports(package: str, modules: dict) -> tuple:
    """A package's module-level `__getattr__`, `__dir__` and `__all__` for names defined in
    its modules.

    Args:
        package: the package's `__name__`, e.g. `"tfprune.robustness"`.
        modules: `{module within the package: [the public names it defines]}`.

    Returns:
        `(__getattr__, __dir__, __all__)`, to assign at the package's module level.

    Example:

    >>> getattr_, dir_, all_ = lazy_exports("tfprune.masking", {"schedules": ["OneShot"]})
    >>> getattr_("OneShot").__name__, all_
    ('OneShot', ['OneShot'])
    """
    names = {name: module for module, defined in modules.items() for name in defined}

    def __getattr__(name):
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
