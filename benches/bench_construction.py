"""Pool construction for large pools (ports 1024-65535): time and peak memory.

``construct`` is the constructor alone; ``construct_first_allocation`` adds the first
``allocate()``, which creates natpool's memory pool (one subpool of 1024 blocks). The deque
free list holds every address from the start, so it runs for a /24 only (16,386,048
addresses) and the report extrapolates it to a /16 and a /8.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benches.baselines import NETWORKS, PORTS, make_deque, make_pool, rss_bytes

PORTS_PER_IP = PORTS[1] - PORTS[0] + 1


def _build(implementation: str, network: str, first_allocation: bool) -> Any:
    if implementation == "deque":
        first, last, _ = NETWORKS[network]
        count = (int(last.split(".")[-1]) - int(first.split(".")[-1]) + 1) * PORTS_PER_IP
        pool: Any = make_deque(count, network)
    else:
        pool = make_pool(implementation, network)
    if first_allocation:
        pool.allocate()
    return pool


class Construction:
    """natpool and the reference model: a /24, a /16 and a /8."""

    params: ClassVar[Any] = (["natpool", "reference"], ["/24", "/16", "/8"])
    param_names: ClassVar[list[str]] = ["implementation", "network"]

    def time_construct(self, implementation: str, network: str) -> None:
        _build(implementation, network, first_allocation=False)

    def time_construct_first_allocation(self, implementation: str, network: str) -> None:
        _build(implementation, network, first_allocation=True)

    def peakmem_construct_first_allocation(self, implementation: str, network: str) -> None:
        _build(implementation, network, first_allocation=True)

    def track_rss_growth(self, implementation: str, network: str) -> int:
        before = rss_bytes()
        pool = _build(implementation, network, first_allocation=True)
        grown = rss_bytes() - before
        del pool
        return grown

    track_rss_growth.unit = "bytes"  # type: ignore[attr-defined]


class DequeConstruction(Construction):
    """The deque free list of every address of a /24 (16,386,048 tuples), built once per sample."""

    number = 1
    repeat = (1, 3, 60.0)
    timeout = 600
    params: ClassVar[Any] = (["deque"], ["/24"])


def peakmem_baseline() -> None:
    """The benchmark process itself, with this module imported: subtract it from peakmem cases."""
