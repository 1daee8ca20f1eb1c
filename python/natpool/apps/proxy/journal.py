"""A record of every lease a proxy held: which NAT address, for which client, from when to when.

``natpool demo --workers N`` asks each worker for its journal and checks, with what the backends saw, that no NAT
address was held by two workers at once (:mod:`natpool.apps.demo.ledger`). The times are ``time.monotonic()``:
on Linux ``CLOCK_MONOTONIC``, one clock for every process of the host, so spans of different processes compare.

A span covers every use of its address: it opens when ``allocate`` has returned, before the upstream socket is
bound to the address, and closes when ``free`` has returned, after the socket was closed (an address held down
after it is out of use, not in a span). A lease enters and leaves a connection only through its
:class:`~natpool.apps.proxy.lease.LeaseOwner`, the one place that writes here.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

from natpool.apps.models import LeaseLike
from natpool.apps.proxy.record import ClientConnection

__all__ = ["LeaseJournal", "LeaseSpan"]


class LeaseSpan(NamedTuple):
    """One lease: its NAT address, the client connection it was for, and when it was held."""

    ip: str
    port: int
    client: tuple[str, int]
    opened: float
    closed: float
    """``math.inf`` while the lease is live."""


class LeaseJournal:
    """The spans of a proxy's leases, in the order they closed (the live ones after :meth:`spans` closes nothing)."""

    def __init__(self) -> None:
        self._open: dict[LeaseLike, tuple[tuple[str, int], float]] = {}
        self._closed: list[LeaseSpan] = []

    def opened(self, lease: LeaseLike) -> None:
        """``lease`` was just allocated (call before using its address)."""
        record = lease.data
        client = record.client if isinstance(record, ClientConnection) else ("0.0.0.0", 0)
        self._open[lease] = (client, time.monotonic())

    def closed(self, lease: LeaseLike) -> None:
        """``lease`` was just freed."""
        entry = self._open.pop(lease, None)
        if entry is not None:
            ip, port = lease.address
            self._closed.append(LeaseSpan(ip, port, entry[0], entry[1], time.monotonic()))

    def spans(self) -> list[LeaseSpan]:
        """Every span so far; a lease still live has ``closed == math.inf``."""
        live = [
            LeaseSpan(lease.ip, lease.port, client, opened, math.inf) for lease, (client, opened) in self._open.items()
        ]
        return self._closed + live
