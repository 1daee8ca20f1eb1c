"""Peak memory with 1,000,000 live leases, and bytes per live lease.

The caller holds the 1,000,000 lease objects (natpool and the reference model: ``Lease``
objects; the deque free list: its ``(ip, port)`` tuples, held in a deque sized to the
leases). ``track_bytes_per_live_lease`` is the growth of the process's resident set from
before the pool was built to when the leases are live, over the lease count: it counts the
pool and the lease objects the caller keeps. The Rust core's own bytes per lease are counted
exactly by ``benches/memory.rs``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benches.baselines import make_deque, make_pool, rss_bytes

LEASES = 1_000_000


def _live_leases(implementation: str) -> tuple[Any, list[Any]]:
    pool: Any
    if implementation == "deque":
        pool = make_deque(LEASES, "/16")
    else:
        pool = make_pool(implementation, "/16")
    leases = pool.allocate_many(LEASES)
    assert len(pool) == LEASES
    return pool, leases


class LiveLeases:
    params: ClassVar[Any] = ["natpool", "reference", "deque"]
    param_names: ClassVar[list[str]] = ["implementation"]
    timeout = 300

    def peakmem_live_leases(self, implementation: str) -> None:
        _live_leases(implementation)

    def track_bytes_per_live_lease(self, implementation: str) -> float:
        before = rss_bytes()
        held = _live_leases(implementation)
        grown = rss_bytes() - before
        del held
        return grown / LEASES

    track_bytes_per_live_lease.unit = "bytes"  # type: ignore[attr-defined]
