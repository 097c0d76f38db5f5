"""`Configurable`: objects described by their constructor arguments (schedules, criteria,
attacks), so they serialize with Keras and compare and print by value."""

from __future__ import annotations


class Configurable:
    """Base for value objects whose `get_config()` returns their constructor arguments.

    Example:

    >>> class Scale(Configurable):
    ...     def __init__(self, factor=2.0):
    ...         self.factor = factor
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    >>> Scale(3.0) == Scale.from_config({"factor": 3.0})
    True
    >>> Scale(3.0)
    Scale(factor=3.0)
    """

    def get_config(self) -> dict:
        """The constructor arguments, for Keras serialization."""
        return {}

    @classmethod
    def from_config(cls, config):
        """Rebuild the object from `get_config()`."""
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
