"""``--block-log FILE``: the pool's port-block events (``--client-block``), one line each, rotated by size.

The proxy drains ``pool.events()`` every :data:`INTERVAL` seconds and once more at shutdown, after every lease is
freed, so the file ends with every block released. A line is::

    2026-11-30T21:20:01.123456+00:00 assigned client=127.0.0.2 nat=127.0.100.1 ports=1024-1031

the wall-clock time of the pool's change, the kind (``assigned`` or ``released``), the client IP, the NAT IP and
the block's first and last port. Each batch is flushed when written. When the file reaches ``max_bytes`` it is
renamed to ``FILE.1`` (replacing the previous backup) and a new one started.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterable

from natpool.records import BlockEvent

__all__ = ["INTERVAL", "BlockLog", "format_event"]

INTERVAL = 1.0
"""Seconds between two drains of the pool's block events."""


def format_event(event: BlockEvent, offset: float) -> str:
    """One line for ``event`` (no newline); ``offset`` turns the pool's monotonic clock into wall-clock time."""
    when = datetime.datetime.fromtimestamp(event.time + offset, datetime.UTC).isoformat()
    nat = event.first_ip if event.first_ip == event.last_ip else f"{event.first_ip}-{event.last_ip}"
    return f"{when} {event.kind} client={event.client} nat={nat} ports={event.first_port}-{event.last_port}"


class BlockLog:
    """Appends block events to ``path``, flushed after each batch, rotated at ``max_bytes`` (one ``.1`` backup)."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._offset = time.time() - time.monotonic()
        self._file = open(path, "a", encoding="utf-8")

    def write(self, events: Iterable[BlockEvent]) -> int:
        """Append ``events``; how many were written."""
        count = 0
        for event in events:
            if self._file.tell() >= self.max_bytes:
                self._rotate()
            self._file.write(format_event(event, self._offset) + "\n")
            count += 1
        if count:
            self._file.flush()
        return count

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path + ".1")
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()
