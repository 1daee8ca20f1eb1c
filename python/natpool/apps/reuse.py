"""Reuse distance: how many allocations come between an address's free and its next allocation.

``natpool simulate`` measures it over the pool's allocations and frees (the key is the NAT address), ``natpool
demo`` over the connections each backend accepted and closed (the key is the peer address, so with the backend's
address a 4-tuple). A distance of 0 is an address handed out again by the very next allocation after its free (LIFO
under load); a hold-down of ``h`` seconds at ``r`` allocations a second makes every distance at least about
``r * h``. It counts allocations, not time: while an address is free, that many other connections began.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["ReuseDistances", "ReuseSummary"]


@dataclass(frozen=True)
class ReuseSummary:
    """The reuse distances of a run, summed up; the distances are ``None`` when no address was allocated again."""

    allocations: int
    distinct: int
    """Distinct keys (addresses, 4-tuples) allocated."""
    reuses: int
    """Allocations of a key allocated and freed before (the distances measured)."""
    shortest: int | None
    p1: int | None
    p10: int | None
    median: int | None


class ReuseDistances:
    """The reuse distances of a run, fed each allocation (:meth:`allocated`) and free (:meth:`freed`) in order."""

    __slots__ = ("_counts", "_freed", "_keys", "_allocations")

    def __init__(self) -> None:
        self._freed: dict[Hashable, int] = {}
        """Each free key: the allocations made before its free."""
        self._keys: set[Hashable] = set()
        self._counts: Counter[int] = Counter()
        self._allocations = 0

    def allocated(self, key: Hashable) -> None:
        """``key`` is allocated now: its distance is the allocations since its free, if it was freed before."""
        freed = self._freed.pop(key, None)
        if freed is not None:
            self._counts[self._allocations - freed] += 1
        self._keys.add(key)
        self._allocations += 1

    def freed(self, key: Hashable) -> None:
        """``key`` is freed now."""
        self._freed[key] = self._allocations

    def percentile(self, q: float) -> int | None:
        """The ``q``-quantile (0 < q <= 1) of the distances, by nearest rank; ``None`` if nothing was reused."""
        total = self._counts.total()
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for distance in sorted(self._counts):
            seen += self._counts[distance]
            if seen >= rank:
                return distance
        raise AssertionError("unreachable: the ranks add up to the total")

    def summary(self) -> ReuseSummary:
        return ReuseSummary(
            allocations=self._allocations,
            distinct=len(self._keys),
            reuses=self._counts.total(),
            shortest=min(self._counts, default=None),
            p1=self.percentile(0.01),
            p10=self.percentile(0.10),
            median=self.percentile(0.5),
        )
