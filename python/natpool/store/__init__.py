"""natpool.store: one pool shared by several pool instances (members), through a store of its interval list.

* ``SQLiteStore(path)``: a SQLite file, for the processes of one host (the
  embedded default; the standard library's ``sqlite3``).
* ``PostgresStore(dsn)``: PostgreSQL, for members on several hosts
  (``pip install 'natpool[postgres]'``, psycopg 3).
* ``open_store(url)``: either, from ``sqlite:///ABS/PATH`` or ``postgresql://…``.

Both implement the protocol ``Store`` (``natpool.store.protocol``): a member
**claims** a range of the pool's address space per subpool (first fit over the
whole cluster), **renews** its claims, **releases** a range when it deletes the
subpool; an expired or returned range is **held** ``reclaim_delay`` seconds
before anyone may claim it again. ``docs/design.md`` ("The cluster store")
explains the model; ``natpool.Pool(…, store=…)`` and
``natpool.reference.Pool(…, store=…)`` use it.
"""

from natpool.store.postgres import PostgresStore
from natpool.store.protocol import CLAIMED, FULL, HELD, TAKEN, Claim, Grant, MemberStatus, PoolStatus, Store
from natpool.store.schema import SCHEMA_VERSION
from natpool.store.space import CONFIG_FIELDS
from natpool.store.sqlite import SQLiteStore
from natpool.store.url import open_store

__all__ = [
    "Store",
    "SQLiteStore",
    "PostgresStore",
    "open_store",
    "Claim",
    "Grant",
    "MemberStatus",
    "PoolStatus",
    "CLAIMED",
    "HELD",
    "TAKEN",
    "FULL",
    "SCHEMA_VERSION",
    "CONFIG_FIELDS",
]
