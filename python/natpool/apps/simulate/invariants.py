"""The invariants of a finished ``natpool simulate`` run; the command exits 1 if any fails.

No lookup mismatch, the pool's counters agree with the simulation's, exhaustion only at capacity,
``len(pool) == 0`` once every connection closed (every block free or held down), the interval list partitions the
address space, the initial allocation stays resident.
"""

from __future__ import annotations

import itertools

from natpool.apps.simulate.engine import Results
from natpool.apps.simulate.workload import PoolConfig, PoolLike
from natpool.apps.space import following

__all__ = ["check_invariants"]


def check_invariants(pool: PoolLike, config: PoolConfig, results: Results) -> list[str]:
    """The invariants of a finished run (every connection closed); returns the failures."""
    r = results
    failures: list[str] = []
    if r.lookup_mismatches:
        failures.append(f"{r.lookup_mismatches} lookups did not return the connection's lease and record")
    if r.accounting_errors:
        failures.append(f"{r.accounting_errors} times the pool's stats() disagreed with the calls made")
    if r.served + r.refused != r.offered:
        failures.append(f"served {r.served} + refused {r.refused} != offered {r.offered}")
    if r.peak_live > pool.capacity:
        failures.append(f"peak live leases {r.peak_live} above capacity {pool.capacity}")
    if len(pool) != 0:
        failures.append(f"len(pool) is {len(pool)} after every connection closed")
    stats = pool.stats()
    if stats.live != 0 or stats.free_blocks + stats.held != stats.blocks or stats.held != r.held_at_end:
        failures.append(f"stats() after every connection closed: {stats}")
    if r.subpools_created - r.subpools_deleted != stats.subpools:
        failures.append(
            f"subpools created {r.subpools_created} - deleted {r.subpools_deleted} != stats().subpools {stats.subpools}"
        )
    subpools = pool.subpools()
    if len(subpools) != stats.subpools or sum(s.blocks for s in subpools) != stats.blocks:
        failures.append(f"subpools() ({len(subpools)} subpools) disagrees with stats() ({stats})")
    if any(s.free + s.held != s.blocks for s in subpools):
        failures.append("a subpool still has a block leased after every connection closed")
    if r.reuse is not None and (r.reuse.allocations != r.served or r.reuse.distinct + r.reuse.reuses != r.served):
        failures.append(f"reuse distance counted {r.reuse} for {r.served} allocations")
    intervals = pool.intervals()
    if len(intervals) != stats.intervals or sum(i.count for i in intervals) != pool.address_count:
        failures.append(
            f"intervals() ({len(intervals)} intervals) does not partition the {pool.address_count} addresses"
        )
    if any(
        a.subpool is None
        and b.subpool is None
        and following(a.last_ip, a.last_port, pool.ports) == (b.first_ip, b.first_port)
        for a, b in itertools.pairwise(intervals)
    ):  # a gap between two ranges, or an exclusion, splits a free interval in two records
        failures.append("two free intervals are adjacent")
    resident = min(config.initial_blocks, pool.capacity)
    if r.served and stats.blocks < resident:
        failures.append(f"{stats.blocks} blocks resident, fewer than the initial allocation {resident}")
    return failures
