"""natpool's optional extras (``natpool[metrics]``, ``natpool[plot]``): imported only when a feature needs them."""

from __future__ import annotations

import importlib.util

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """A feature's optional dependency is not installed."""


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingExtra` unless ``module`` (of the extra ``natpool[extra]``) can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"needs {module}: pip install 'natpool[{extra}]'")
