"""Backend selection (round-robin or least connections) and down-marking of backends that fail a connect."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from natpool.apps.options import endpoint_text

__all__ = ["BackendState", "Balancer"]

log = logging.getLogger("natpool.proxy")


@dataclass(eq=False)
class BackendState:
    """What the proxy knows of one real server behind it: its address, its connections, whether it is down."""

    host: str
    port: int
    active: int = 0
    """Connections being connected or relayed to it now (what least-connections compares)."""
    connections: int = 0
    """Connections relayed to it in all."""
    failures: int = 0
    """Connects that failed (refused, unreachable, timed out)."""
    down_until: float = 0.0

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __str__(self) -> str:
        return endpoint_text(self.address)


class Balancer:
    """The backends (their :class:`BackendState`) and the policy that picks one for each client connection.

    A backend whose connect failed is down for ``down_time`` seconds: the policy skips it until then. When
    every backend is down, :meth:`choose` returns ``None`` and the client connection is refused.
    """

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        balance: str = "round-robin",
        down_time: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.all = [BackendState(host, port) for host, port in addresses]
        self.balance = balance
        self.down_time = down_time
        self._clock = clock
        self._turn = itertools.count()

    def up(self) -> list[BackendState]:
        now = self._clock()
        return [b for b in self.all if b.down_until <= now]

    def choose(self) -> BackendState | None:
        """The backend for the next connection, or ``None`` when all are down."""
        up = self.up()
        if not up:
            return None
        if self.balance == "least-connections":
            return min(up, key=lambda b: b.active)
        return up[next(self._turn) % len(up)]

    def mark_down(self, backend: BackendState, reason: str) -> None:
        """Leave ``backend`` out of the rotation for ``down_time`` seconds; logged once per outage."""
        backend.failures += 1
        now = self._clock()
        if backend.down_until <= now:
            log.warning("backend %s is down for %gs: %s", backend, self.down_time, reason)
        backend.down_until = now + self.down_time
