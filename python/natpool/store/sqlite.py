"""``SQLiteStore``: the cluster store in one SQLite file, for the processes of one host (the embedded default).

Nothing to install: the standard library's ``sqlite3``. The file is in WAL
mode; every write is one ``BEGIN IMMEDIATE`` transaction (it takes the
database's write lock at once, so writers are serialised across processes and
wait up to ``timeout`` seconds for each other: claims are rare and short).

Each operation opens its own connection (``mode=rw``: a file that has gone
is an error, never silently a new empty store) and closes it, so a store object
may be shared by threads, and a store whose file or directory is gone, or
locked longer than ``timeout``, raises ``StoreError`` until it is back. One more
connection stays open, idle, for the store object's life, only so that the WAL
file is not checkpointed and removed at the end of every operation.

The clock is ``time.time()`` read once per transaction, after the write lock
is taken; tests may inject another (``clock=``), shared by every process only
if each is given the same function of the real time.
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import natpool
from natpool.errors import StoreError
from natpool.store import ledger
from natpool.store.protocol import Claim, Grant, PoolStatus
from natpool.store.schema import ensure_schema

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")


class _SQLiteTx:
    for_update = ""

    def __init__(self, connection: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self._connection = connection
        self._clock = clock
        self._now: float | None = None

    @property
    def now(self) -> float:
        if self._now is None:
            self._now = float(self._clock())
        return self._now

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self._connection.execute(sql.replace("%s", "?"), params).fetchall())

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._connection.execute(sql.replace("%s", "?"), params)

    def table_exists(self, table: str) -> bool:
        found = self._connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        return found.fetchone() is not None


class SQLiteStore:
    """The cluster store in a SQLite file (created with the tables if missing; its directory must exist)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] | None = None,
        timeout: float = 5.0,
    ) -> None:
        # abspath keeps a leading "//" (POSIX leaves its meaning open): one slash is what SQLite's URI needs.
        self._path = "/" + os.path.abspath(os.fspath(path)).lstrip("/")
        self._clock: Callable[[], float] = time.time if clock is None else clock
        self._timeout = float(timeout)
        self._url = "sqlite://" + urllib.parse.quote(self._path)
        self._closed = False
        # The one connection that may create the file; every later one requires it to exist.
        self._transaction(True, lambda tx: ensure_schema(tx, self._url, natpool.__version__), create=True)
        # Kept open, idle, while the store is: with it the WAL file stays, so the connection of
        # each operation is cheap to open and its close does not checkpoint and delete the WAL
        # (tens of milliseconds of fsync). It does not keep a vanished file reachable: each
        # operation opens the path anew.
        self._keeper: sqlite3.Connection | None = self._connect(create=False)

    @property
    def url(self) -> str:
        return self._url

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    def _connect(self, create: bool) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"
        uri = f"file:{urllib.parse.quote(self._path)}?mode={mode}"
        connection = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None)
        if create:
            connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def _transaction(self, write: bool, body: Callable[[_SQLiteTx], _T], create: bool = False) -> _T:
        if self._closed:
            raise StoreError(f"store {self._url} is closed")
        try:
            connection = self._connect(create)
        except sqlite3.Error as error:
            raise StoreError(f"store {self._url} cannot be opened: {error}") from error
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            result = body(_SQLiteTx(connection, self._clock))
            connection.execute("COMMIT")
            return result
        except sqlite3.Error as error:
            raise StoreError(f"store {self._url} failed: {error}") from error
        finally:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            connection.close()

    # -- the Store protocol --------------------------------------------------------------
    def join(self, name: str, member: str, config: Mapping[str, Any], *, ttl: float) -> None:
        self._transaction(True, lambda tx: ledger.join(tx, name, member, config, ttl))

    def claim(self, name: str, member: str, *, ttl: float, reclaim_delay: float) -> Grant | None:
        return self._transaction(True, lambda tx: ledger.claim(tx, name, member, ttl, reclaim_delay))

    def claim_at(
        self, name: str, member: str, index: int, *, within: tuple[int, int], ttl: float, reclaim_delay: float
    ) -> Grant | str:
        return self._transaction(True, lambda tx: ledger.claim_at(tx, name, member, index, within, ttl, reclaim_delay))

    def reclaim(
        self, name: str, member: str, ranges: Iterable[tuple[int, int]], *, ttl: float, reclaim_delay: float
    ) -> list[Grant] | None:
        wanted = [(int(first), int(count)) for first, count in ranges]
        return self._transaction(True, lambda tx: ledger.reclaim(tx, name, member, wanted, ttl, reclaim_delay))

    def release(self, name: str, member: str, epoch: int) -> None:
        self._transaction(True, lambda tx: ledger.release(tx, name, member, epoch))

    def renew(self, name: str, member: str, epochs: Iterable[int], *, ttl: float) -> dict[int, float]:
        wanted = list(epochs)
        return self._transaction(True, lambda tx: ledger.renew(tx, name, member, wanted, ttl))

    def leave(self, name: str, member: str, epochs: Iterable[int] = ()) -> None:
        wanted = list(epochs)
        self._transaction(True, lambda tx: ledger.leave(tx, name, member, wanted))

    def claims(self, name: str) -> list[Claim]:
        return self._transaction(False, lambda tx: ledger.claims(tx, name))

    def owner(self, name: str, ip: Any, port: int) -> str | None:
        return self._transaction(False, lambda tx: ledger.owner(tx, name, ip, port))

    def pools(self) -> list[str]:
        return self._transaction(False, ledger.pools)

    def status(self, name: str) -> PoolStatus:
        return self._transaction(False, lambda tx: ledger.status(tx, name))

    def close(self) -> None:
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()
