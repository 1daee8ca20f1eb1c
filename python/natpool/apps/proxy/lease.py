"""The one owner of a client connection's NAT lease, from its allocation to its release.

A connection holds at most one lease at a time, and the lease is its :class:`LeaseOwner`'s from the instant
``allocate`` returns it: there is no step between allocating and owning that could fail. It leaves the owner
two ways only: :meth:`LeaseOwner.quarantine` hands an address that cannot be used to the holding (and another
lease may be taken), and :meth:`LeaseOwner.release`, which the connection's ``finally`` calls on every path,
frees it or hands it to the holding for the TIME_WAIT hold-down. So every live lease has exactly one owner, a
connection or the holding: ``live leases == counters.leased + counters.held``, which the tests and the soak check.

The policies of the library plug in here: with a per-client quota (``--max-per-client``), paired pooling
(``--paired``) or port blocks (``--client-block``) the allocation is for the client's IP (``client=``); a lease
the holding keeps is still live in the pool, so it counts against its client's quota until it is freed. The
hold-down is what :class:`~.holding.Holding` does.
"""

from __future__ import annotations

import dataclasses

import natpool
from natpool.apps.proxy.holding import Holding
from natpool.apps.proxy.record import ClientConnection, Counters

__all__ = ["LeaseOwner"]


class LeaseOwner:
    """Owns a connection's lease (``lease``, or ``None``) and its record; :meth:`release` gives the lease back."""

    __slots__ = ("_client", "_counters", "_hold", "_hold_down", "_holding", "_pool", "lease", "record")

    def __init__(
        self,
        pool: natpool.Pool,
        holding: Holding,
        counters: Counters,
        record: ClientConnection,
        hold_down: float,
        *,
        by_client: bool = False,
    ) -> None:
        """``by_client``: allocate for the client's IP (``client=``), for the pool's client policies."""
        self._pool = pool
        self._client = record.client[0] if by_client else None
        self._holding = holding
        self._counters = counters
        self._hold_down = hold_down
        self._hold = 0.0
        self.lease: natpool.Lease | None = None
        self.record = record
        """The connection's record: the lease's ``data`` (after a quarantine, a copy of the first record)."""

    def allocate(self) -> natpool.Lease:
        """A lease for this connection (``PoolExhausted`` when none is left, ``QuotaExceeded`` when its client has
        its quota), owned from the moment it exists."""
        assert self.lease is None, "a connection holds one lease at a time"
        if self.record.state == "quarantined":  # the record stays with its quarantined lease; this one gets a copy
            self.record = dataclasses.replace(self.record, state="connecting")
        self.lease = self._pool.allocate(data=self.record, client=self._client)
        self._counters.leased += 1
        self._counters.allocations += 1
        self._hold = 0.0
        self.record.nat = self.lease.address
        if self._holding.journal is not None:
            self._holding.journal.opened(self.lease)
        return self.lease

    def quarantine(self, seconds: float) -> None:
        """The address cannot be used now: hand the lease to the holding for ``seconds``, out of use."""
        self._holding.hold(self._take(), seconds, "quarantined")

    def connected(self) -> None:
        """The upstream is connected: its 4-tuple exists, so the lease is held down on release unless..."""
        self._hold = self._hold_down

    def closed_by_backend(self) -> None:
        """...the backend closed first and the upstream socket is closed: the TIME_WAIT is on the backend's host."""
        self._hold = 0.0

    def release(self) -> None:
        """Give the lease back (if there is one): free it now, or hold it down when the TIME_WAIT is on this host."""
        if self.lease is not None:
            self._holding.hold(self._take(), self._hold, "time-wait" if self._hold > 0 else "closed")

    def _take(self) -> natpool.Lease:
        lease, self.lease = self.lease, None
        assert lease is not None
        self._counters.leased -= 1
        return lease
