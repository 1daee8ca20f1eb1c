"""What the proxy knows about one client connection (a lease's ``data``) and its running counts."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from natpool.apps.options import endpoint_text

__all__ = ["ClientConnection", "Counters"]

_ids = itertools.count(1)


@dataclass(eq=False)
class ClientConnection:
    """The record of one client connection, stored as its lease's ``data``.

    ``lookup(ip, port)`` on the pool returns the lease of a NAT address and so this record: which client holds
    the address, relayed to which backend, in which state.
    """

    client: tuple[str, int]
    id: int = field(default_factory=lambda: next(_ids))
    opened: float = field(default_factory=time.time)
    backend: str | None = None
    nat: tuple[str, int] | None = None
    state: str = "connecting"
    """``connecting``, ``open``, ``closed``."""
    bytes_up: int = 0
    """Bytes relayed from the client to the backend."""
    bytes_down: int = 0
    """Bytes relayed from the backend to the client."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client": endpoint_text(self.client),
            "backend": self.backend,
            "nat": None if self.nat is None else endpoint_text(self.nat),
            "state": self.state,
            "opened": self.opened,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }


@dataclass
class Counters:
    """The proxy's event counts since it started (the metrics endpoint exports them)."""

    accepted: int = 0
    relayed: int = 0
    """Client connections whose upstream connected and were relayed."""
    allocations: int = 0
    """Successful ``allocate()`` calls (bind retries take one each)."""
    leased: int = 0
    """Leases owned by client connections now: every live lease of the pool."""
    exhausted: int = 0
    """Client connections closed at once because the pool was exhausted."""
    quota_refused: int = 0
    """Client connections closed at once because their client IP had ``--max-per-client`` leases."""
    block_events: int = 0
    """Port blocks assigned or released (``--client-block``), as drained from the pool's ``events()``."""
    bind_retries: int = 0
    """Addresses that could not be bound or connected from and were quarantined, another lease taken."""
    bind_failures: int = 0
    """Client connections lost because every attempt failed to bind (``--bind-attempts``)."""
    backend_failures: int = 0
    """Client connections lost because the backend's connect failed."""
    no_backend: int = 0
    """Client connections refused because every backend was down."""
    idle_timeouts: int = 0
    """Connections closed because no byte went either way for ``--idle-timeout`` seconds."""
    resource_failures: int = 0
    """Client connections lost because an upstream socket could not be created (out of descriptors or buffers)."""
    store_failures: int = 0
    """Client connections closed because a subpool was needed and the cluster store failed (``--store``)."""
    errors: int = 0
    """Client connections lost to an unexpected error (logged, with a traceback the first time)."""
    state_writes: int = 0
    """Snapshots of the pool written to ``--state``."""
    state_write_failures: int = 0
    """Snapshots of the pool that could not be written to ``--state`` (logged)."""
