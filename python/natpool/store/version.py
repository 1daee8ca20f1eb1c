"""natpool's installed version, for the store's messages and its ``created_by`` row."""

from __future__ import annotations

import importlib.metadata

__all__ = ["natpool_version"]


def natpool_version() -> str:
    """The installed distribution's version, or ``"unknown"`` when natpool runs from a source tree."""
    try:
        return importlib.metadata.version("natpool")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
