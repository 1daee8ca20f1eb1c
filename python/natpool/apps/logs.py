"""How the long-running applications log (``natpool proxy``, ``natpool demo``): one line format, on stderr."""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "start_logging"]

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def start_logging(level: int | str) -> None:
    """Log records of ``level`` and above to stderr in :data:`LOG_FORMAT` (unless logging is set up already)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
