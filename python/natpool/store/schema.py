"""The store's tables (one SQL text for SQLite and PostgreSQL) and its schema version.

``natpool_meta`` holds ``schema_version``. A store is created on first use
(every table in one transaction); a store whose version differs from
``SCHEMA_VERSION`` is refused with a ``StoreError`` that says which version it
has, which this natpool uses and what to do, and nothing is written to it.

Tables (an address range is ``first_index .. first_index + addresses - 1`` in
the pool's address index space; times are seconds since the epoch by the
store's clock):

* ``natpool_pools``: name, the canonical configuration (JSON), ``next_epoch``
  (the next claim's fencing token; 1 until the pool's first claim);
* ``natpool_members``: pool, member, ``expires_at`` (the heartbeat);
* ``natpool_claims``: pool, first_index, addresses, member, epoch, state
  (``claimed``/``held``), ``expires_at`` (claimed: lapses then; held: free
  then), ``reclaim_delay`` (how long it is held once returned or expired).
"""

from __future__ import annotations

from typing import Any, Protocol

from natpool.errors import StoreError

__all__ = ["SCHEMA_VERSION", "TABLES", "Tx", "ensure_schema"]

SCHEMA_VERSION = 1
"""The version of the tables below. Bump it on any incompatible change."""

TABLES = ("natpool_meta", "natpool_pools", "natpool_members", "natpool_claims")

_DDL = (
    """CREATE TABLE natpool_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE natpool_pools (
        name TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        next_epoch BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE natpool_members (
        pool TEXT NOT NULL REFERENCES natpool_pools (name),
        member TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        joined_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (pool, member)
    )""",
    """CREATE TABLE natpool_claims (
        pool TEXT NOT NULL REFERENCES natpool_pools (name),
        first_index BIGINT NOT NULL,
        addresses BIGINT NOT NULL CHECK (addresses > 0),
        member TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('claimed', 'held')),
        expires_at DOUBLE PRECISION NOT NULL,
        reclaim_delay DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (pool, first_index),
        UNIQUE (pool, epoch)
    )""",
)


class Tx(Protocol):
    """One transaction of an engine, as the ledger's operations use it.

    SQL is written once with ``%s`` placeholders (SQLite's transaction turns
    them into ``?``).
    """

    for_update: str
    """Appended to the SELECT that locks a pool's row: ``" FOR UPDATE"`` in PostgreSQL; ``""`` in SQLite,
    whose ``BEGIN IMMEDIATE`` already holds the database's write lock."""

    @property
    def now(self) -> float:
        """The store's clock, read once per transaction (at the first use)."""
        ...

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None: ...

    def table_exists(self, table: str) -> bool: ...


def ensure_schema(tx: Tx, url: str, version: str) -> None:
    """Create the tables in an empty store, or check an existing store's schema version (write nothing)."""
    if tx.table_exists("natpool_meta"):
        found = tx.rows("SELECT value FROM natpool_meta WHERE key = %s", ("schema_version",))
        have = found[0][0] if found else None
        if have != str(SCHEMA_VERSION):
            raise StoreError(incompatible(url, have, version))
        return
    if any(tx.table_exists(table) for table in TABLES):
        raise StoreError(incompatible(url, None, version))
    for statement in _DDL:
        tx.run(statement)
    tx.run("INSERT INTO natpool_meta (key, value) VALUES (%s, %s)", ("schema_version", str(SCHEMA_VERSION)))
    tx.run("INSERT INTO natpool_meta (key, value) VALUES (%s, %s)", ("created_by", f"natpool {version}"))


def incompatible(url: str, have: str | None, version: str) -> str:
    """The message for a store of another schema version: what it has, what we use, what to do."""
    found = "no schema version" if have is None else f"schema version {have}"
    newer = have is not None and have.isdigit() and int(have) > SCHEMA_VERSION
    origin = "a newer natpool made it" if newer else "it was not made by this natpool"
    return (
        f"store {url} has natpool {found}; this natpool ({version}) uses schema version {SCHEMA_VERSION} "
        f"({origin}): run the natpool release that created the store, or point this one at a new store "
        "(a new SQLite file, an empty PostgreSQL database or schema); nothing was written"
    )
