"""Snapshot and restore of a pool with 1,000,000 live leases (issue 12, point 6), through Python.

The pool is a /16 (ports 1024-65535) with subpools of 65,536 blocks, as in ``benches/core.rs``'s
``snapshot`` group: ``snapshot()`` writes 9.6 MB, ``Pool.restore`` reads them back (no ``data``,
no clock: nothing is held). The target is each under 1 s. natpool only: the reference model
restores such a snapshot in about 2 s (``docs/shapes.md``), too slow to repeat here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import natpool

from benches.baselines import make_pool

LEASES = 1_000_000


class SnapshotRestore:
    params: ClassVar[Any] = ["natpool"]
    param_names: ClassVar[list[str]] = ["implementation"]
    number = 1
    repeat = (3, 10, 30.0)
    timeout = 300

    def setup(self, implementation: str) -> None:
        self.pool = make_pool(implementation, "/16", initial_blocks=65536)
        self.leases = self.pool.allocate_many(LEASES)
        self.snapshot = self.pool.snapshot()

    def time_snapshot(self, implementation: str) -> None:
        self.pool.snapshot()

    def time_restore(self, implementation: str) -> None:
        natpool.Pool.restore(self.snapshot)

    def track_snapshot_bytes(self, implementation: str) -> int:
        return len(self.snapshot)

    track_snapshot_bytes.unit = "bytes"  # type: ignore[attr-defined]
