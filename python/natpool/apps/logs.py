"""How the long-running applications log (``natpool proxy``, ``natpool demo``): one line format, on stderr."""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "start_logging"]

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def start_logging(level: int | str, tag: str | None = None) -> None:
    """Log records of ``level`` and above to stderr in :data:`LOG_FORMAT` (unless logging is set up already);
    ``tag`` follows the logger's name in each line (``natpool.proxy[worker 2]``)."""
    line = LOG_FORMAT if tag is None else LOG_FORMAT.replace("%(name)s", f"%(name)s[{tag}]")
    logging.basicConfig(level=level, format=line)
