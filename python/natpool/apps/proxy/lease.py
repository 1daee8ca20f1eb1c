"""The one owner of a client connection's NAT lease, from its allocation to its release.

A connection holds at most one lease at a time, and the lease is its :class:`LeaseOwner`'s from the instant
``allocate`` returns it: there is no step between allocating and owning that could fail. It leaves the owner
two ways only, both a ``free``: :meth:`LeaseOwner.quarantine` frees an address that cannot be used with a hold of
``--quarantine`` seconds (and another lease may be taken), and :meth:`LeaseOwner.release`, which the connection's
``finally`` calls on every path, frees it with the pool's hold-down if its upstream connected, at once otherwise.
So every live lease has exactly one owner, a connection: ``live leases == counters.leased``, which the tests and
the soak check; the addresses held down or quarantined are the pool's ``stats().held``.

The policies of the library plug in here: the hold-down is the pool's (``hold_down``, the hold of a ``free``);
with a per-client quota (``--max-per-client``), paired pooling (``--paired``) or port blocks (``--client-block``)
the allocation is for the client's IP (``client=``), and the pool counts the client's live and held leases
against its quota.
"""

from __future__ import annotations

from natpool.apps.models import LeaseLike, PoolLike
from natpool.apps.proxy.journal import LeaseJournal
from natpool.apps.proxy.record import ClientConnection, Counters

__all__ = ["LeaseOwner"]


class LeaseOwner:
    """Owns a connection's lease (``lease``, or ``None``) and its record; :meth:`release` gives the lease back."""

    __slots__ = ("_client", "_connected", "_counters", "_journal", "_pool", "lease", "record")

    def __init__(
        self,
        pool: PoolLike,
        counters: Counters,
        record: ClientConnection,
        *,
        journal: LeaseJournal | None = None,
        by_client: bool = False,
    ) -> None:
        """``journal`` notes each lease's span; ``by_client``: allocate for the client's IP (``client=``), for the
        pool's client policies."""
        self._pool = pool
        self._client = record.client[0] if by_client else None
        self._counters = counters
        self._journal = journal
        self._connected = False
        self.lease: LeaseLike | None = None
        self.record = record
        """The connection's record: the lease's ``data``."""

    def allocate(self) -> LeaseLike:
        """A lease for this connection (``PoolExhausted`` when none is left, ``QuotaExceeded`` when its client has
        its quota), owned from the moment it exists."""
        assert self.lease is None, "a connection holds one lease at a time"
        self.lease = self._pool.allocate(data=self.record, client=self._client)
        self._counters.leased += 1
        self._counters.allocations += 1
        self._connected = False
        self.record.nat = self.lease.address
        if self._journal is not None:
            self._journal.opened(self.lease)
        return self.lease

    def quarantine(self, seconds: float) -> None:
        """The address cannot be used now: free the lease, the pool keeping its address out of use ``seconds``."""
        self._free(seconds)

    def connected(self) -> None:
        """The upstream is connected: its 4-tuple exists, so the lease is held down on release."""
        self._connected = True

    def release(self) -> None:
        """Give the lease back (if there is one): held for the pool's ``hold_down`` if its upstream connected (the
        4-tuple's TIME_WAIT is at one end or the other), freed at once if no connection was made."""
        if self.lease is not None:
            self._free(None if self._connected else 0.0)

    def _free(self, hold: float | None) -> None:
        lease, self.lease = self.lease, None
        assert lease is not None
        self._counters.leased -= 1
        self._pool.free(lease.handle, hold=hold)  # by handle: a lease of either implementation
        if self._journal is not None:
            self._journal.closed(lease)
