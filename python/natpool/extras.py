"""natpool's optional extras (``natpool[metrics]``, ``[plot]``, ``[postgres]``), imported when a feature needs them."""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtra", "require"]

EXTRAS = {"metrics": "prometheus_client", "plot": "matplotlib", "postgres": "psycopg"}
"""Each optional extra (pyproject.toml's ``optional-dependencies``) and the module it installs."""


class MissingExtra(ImportError):
    """A feature's optional dependency is not installed."""


def require(extra: str) -> None:
    """Raise :class:`MissingExtra` unless the module of the extra ``natpool[extra]`` can be imported."""
    module = EXTRAS[extra]
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"needs {module}: pip install 'natpool[{extra}]'")
