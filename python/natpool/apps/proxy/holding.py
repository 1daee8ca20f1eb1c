"""Leases kept out of use for a while: addresses that could not be bound, and 4-tuples in TIME_WAIT.

The pool has no "exclude this address" call, and needs none: a lease that stays allocated is out of use. A
held lease keeps its connection record (state ``quarantined`` or ``time-wait``, visible through ``lookup``)
and is freed by a timer. Because the pool's free lists are LIFO, freeing an address at once would hand the
very same address to the next connection; holding it makes the next allocation take another.
"""

from __future__ import annotations

import asyncio

import natpool
from natpool.apps.proxy.record import ClientConnection, Counters

__all__ = ["Holding"]


class Holding:
    """Held leases of one pool, each freed when its time is up (or by :meth:`release_all`)."""

    def __init__(self, pool: natpool.Pool, counters: Counters) -> None:
        self._pool = pool
        self._counters = counters
        self._timers: dict[natpool.Lease, asyncio.TimerHandle] = {}
        self.closed = False
        """Set on shutdown: from then on a lease handed to :meth:`hold` is freed at once."""

    def __len__(self) -> int:
        return len(self._timers)

    def hold(self, lease: natpool.Lease, seconds: float, state: str) -> None:
        """Keep ``lease`` allocated for ``seconds``, its record marked ``state``; 0 frees it now."""
        record = lease.data
        if isinstance(record, ClientConnection):
            record.state = state
        if seconds <= 0 or self.closed:
            self._pool.free(lease)
            return
        self._timers[lease] = asyncio.get_running_loop().call_later(seconds, self._release, lease)
        self._counters.held = len(self._timers)

    def _release(self, lease: natpool.Lease) -> None:
        del self._timers[lease]
        self._counters.held = len(self._timers)
        self._pool.free(lease)

    def release_all(self) -> int:
        """Free every held lease now (shutdown); returns how many."""
        self.closed = True
        timers, self._timers = self._timers, {}
        for lease, timer in timers.items():
            timer.cancel()
            self._pool.free(lease)
        self._counters.held = 0
        return len(timers)
