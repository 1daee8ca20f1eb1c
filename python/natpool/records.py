"""Plain records returned by both implementations (compare equal across them)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Interval", "Subpool", "PoolStats"]


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


class PoolStats(NamedTuple):
    """Counters of a pool, read in O(1)."""

    live: int
    free_blocks: int
    blocks: int
    subpools: int
    intervals: int
    free_addresses: int
    address_count: int
    capacity: int
