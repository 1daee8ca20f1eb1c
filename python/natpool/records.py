"""Plain records returned by both implementations (compare equal across them)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Interval", "Subpool", "PoolStats", "BlockEvent"]


class Interval(NamedTuple):
    """One element of the interval list (the patent's Figure 7)."""

    first_ip: str
    first_port: int
    last_ip: str
    last_port: int
    count: int  # type: ignore[assignment]  # shadows tuple.count, by the contract's name
    subpool: int | None
    """Id of the owning subpool, or ``None`` when the interval is free."""


class Subpool(NamedTuple):
    """One storage subpool of connection blocks and the addresses it owns."""

    id: int
    first_ip: str
    first_port: int
    last_ip: str
    last_port: int
    blocks: int
    free: int
    held: int = 0
    """Blocks whose lease was freed with a hold that has not ended (neither live nor free)."""
    client: object = None
    """The client whose port block this subpool is (``client_block``); ``None`` for a shared subpool."""


class PoolStats(NamedTuple):
    """Counters of a pool, read in O(threads) (``live``, ``free_blocks``: per-thread counts summed)."""

    live: int
    free_blocks: int
    blocks: int
    subpools: int
    intervals: int
    free_addresses: int
    address_count: int
    capacity: int
    held: int = 0
    """Blocks freed with a hold (``hold_down``) that has not ended: neither live nor free."""
    events_dropped: int = 0
    """Block events (``events()``) dropped because the queue held ``event_queue`` of them."""
    drained: int = 0
    """Addresses of the space on drained IPs (``drain``)."""


class BlockEvent(NamedTuple):
    """A client's port block assigned or released (``Pool.events()``, with ``client_block``)."""

    time: float
    """The pool's clock when the pool made the change."""
    kind: str
    """``"assigned"`` or ``"released"``."""
    client: object
    first_ip: str
    first_port: int
    last_ip: str
    last_port: int
