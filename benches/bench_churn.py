"""Churn near 90% and 100% occupancy, subpool creation and deletion included.

A pool of 65,536 blocks (64 subpools of 1024) is filled to the occupancy; each call then
frees the oldest 10% of the live leases (connections close in arrival order, so whole
subpools empty and are deleted) and allocates as many new ones (creating subpools again),
back to the occupancy: 6,553 frees and 6,553 allocations per call. At 100% the last
allocation of each call takes the pool's last free address.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from benches.baselines import make_deque, make_pool

CAPACITY = 65536
SUBPOOL = 1024
WAVE = CAPACITY // 10


class Churn:
    params: ClassVar[Any] = (["natpool", "reference", "deque"], [0.9, 1.0])
    param_names: ClassVar[list[str]] = ["implementation", "occupancy"]

    def setup(self, implementation: str, occupancy: float) -> None:
        pool: Any
        if implementation == "deque":
            pool = make_deque(CAPACITY)
        else:
            pool = make_pool(implementation, initial_blocks=SUBPOOL, max_blocks=CAPACITY)
        self.pool = pool
        self.allocate: Callable[[], Any] = pool.allocate
        self.free: Callable[[Any], None] = pool.free
        self.live: deque[Any] = deque(pool.allocate() for _ in range(int(occupancy * CAPACITY)))

    def time_churn(self, implementation: str, occupancy: float) -> None:
        allocate, free, live = self.allocate, self.free, self.live
        for _ in range(WAVE):
            free(live.popleft())
        for _ in range(WAVE):
            live.append(allocate())

    def track_subpools_after_frees(self, implementation: str, occupancy: float) -> int:
        """Subpools left after one wave of frees (fewer than after the allocations: deletion happens)."""
        if implementation == "deque":
            return 0
        for _ in range(WAVE):
            self.free(self.live.popleft())
        return int(self.pool.stats().subpools)
