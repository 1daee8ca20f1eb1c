"""What natpool is measured against in the asv suite, and the pools every case builds.

Not a benchmark module: asv collects only ``time_*``, ``mem_*``, ``peakmem_*`` and ``track_*``
names, and this module defines none.

* ``DequePool``: the free list a Python SLB author would write: a ``collections.deque`` of
  ``(ip, port)`` tuples filled up front, plus a dict of live addresses for lookup.
* ``natpool.reference.Pool``: the pure-Python reference model (the specification).
* ``natpool._natpool._Floor``: the PyO3 floor, an empty method on a frozen pyclass (and ``lease()``: a
  ``Lease`` object made as ``allocate()`` makes one, with no allocation).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import natpool
import natpool.reference
from natpool._natpool import _Floor

#: The implementations a case is run with, natpool first.
IMPLEMENTATIONS = ["natpool", "reference", "deque", "floor"]

#: ``(first_ip, last_ip, prefix)`` of the pools the cases build; ports are always 1024-65535.
NETWORKS = {
    "/24": ("10.0.0.1", "10.0.0.254", 24),
    "/16": ("10.0.0.1", "10.0.255.254", 16),
    "/8": ("10.0.0.1", "10.255.255.254", 8),
}
PORTS = (1024, 65535)


def addresses(first_ip: str, last_ip: str, ports: tuple[int, int] = PORTS) -> Iterator[tuple[str, int]]:
    """Every (ip, port) of the range in natpool's order: by ip, then by port (one str per ip, one int per port)."""
    first, last = int(ipaddress.IPv4Address(first_ip)), int(ipaddress.IPv4Address(last_ip))
    ips = (str(ipaddress.IPv4Address(ip)) for ip in range(first, last + 1))
    return itertools.product(ips, list(range(ports[0], ports[1] + 1)))


class DequePool:
    """A free list of ``(ip, port)`` tuples filled up front, and a dict of the live ones."""

    def __init__(self, free: Iterable[tuple[str, int]]) -> None:
        self._free: deque[tuple[str, int]] = deque(free)
        self._live: dict[tuple[str, int], Any] = {}

    def allocate(self, data: Any = None) -> tuple[str, int]:
        address = self._free.popleft()
        self._live[address] = data
        return address

    def free(self, address: tuple[str, int]) -> None:
        del self._live[address]
        self._free.append(address)

    def allocate_many(self, n: int) -> list[tuple[str, int]]:
        return [self.allocate() for _ in range(n)]

    def free_many(self, leases: list[tuple[str, int]]) -> None:
        for address in leases:
            self.free(address)

    def lookup(self, ip: str, port: int) -> Any:
        return self._live.get((ip, port))

    def __len__(self) -> int:
        return len(self._live)


Pool = natpool.Pool | natpool.reference.Pool


def make_pool(
    implementation: str,
    network: str = "/24",
    initial_blocks: int = 1024,
    max_blocks: int = 1 << 40,
    **policies: Any,
) -> Pool:
    """A natpool or reference pool over ``network`` with ports 1024-65535; ``policies``: the pool's (``order``,
    ``hold_down``, ...)."""
    first_ip, last_ip, prefix = NETWORKS[network]
    cls = natpool.Pool if implementation == "natpool" else natpool.reference.Pool
    return cls("bench", first_ip, last_ip, prefix, initial_blocks, max_blocks, ports=PORTS, **policies)


def make_deque(count: int, network: str = "/24") -> DequePool:
    """A deque pool holding the first ``count`` addresses of ``network``."""
    first_ip, last_ip, _ = NETWORKS[network]
    return DequePool(itertools.islice(addresses(first_ip, last_ip), count))


def make_floor(leases: bool = False) -> _Floor:
    """The PyO3 floor; with ``leases``, its ``lease()`` makes never-live ``Lease`` objects of a natpool pool."""
    if not leases:
        return _Floor()
    pool = make_pool("natpool", initial_blocks=1)
    assert isinstance(pool, natpool.Pool)
    return _Floor(pool)


def rss_bytes() -> int:
    """The process's resident set size now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
