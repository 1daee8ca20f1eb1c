"""Leases kept out of use for a while: addresses that could not be bound, and 4-tuples in TIME_WAIT.

The pool has no "exclude this address" call, and needs none: a lease that stays allocated is out of use. A
held lease keeps its connection record (state ``quarantined`` or ``time-wait``, visible through ``lookup``)
and is freed by a timer. Freed at once, an address would soon be handed out again (at once in LIFO order, after
the subpool's other free blocks in FIFO order); holding it makes the next allocations take others.
"""

from __future__ import annotations

import asyncio

import natpool
from natpool.apps.proxy.journal import LeaseJournal
from natpool.apps.proxy.record import ClientConnection, Counters

__all__ = ["Holding"]


class Holding:
    """Held leases of one pool, each freed when its time is up (or by :meth:`release_all`).

    Every lease the proxy frees is freed here (and noted in ``journal``, if there is one).
    """

    def __init__(self, pool: natpool.Pool, counters: Counters, journal: LeaseJournal | None = None) -> None:
        self._pool = pool
        self._counters = counters
        self.journal = journal
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
            self._free(lease)
            return
        self._timers[lease] = asyncio.get_running_loop().call_later(seconds, self._release, lease)
        self._counters.held = len(self._timers)

    def _release(self, lease: natpool.Lease) -> None:
        del self._timers[lease]
        self._counters.held = len(self._timers)
        self._free(lease)

    def _free(self, lease: natpool.Lease) -> None:
        self._pool.free(lease)
        if self.journal is not None:
            self.journal.closed(lease)

    def release_all(self) -> int:
        """Free every held lease now (shutdown); returns how many."""
        self.closed = True
        timers, self._timers = self._timers, {}
        for lease, timer in timers.items():
            timer.cancel()
            self._free(lease)
        self._counters.held = 0
        return len(timers)
