"""``PostgresStore``: the cluster store in PostgreSQL, for members on several hosts (``natpool[postgres]``).

psycopg 3 is imported when a store is opened, never by ``import natpool``;
without it, ``natpool.extras.MissingExtra`` says which extra to install.

Every operation is one transaction on the store's connection (one per store
object, shared by its threads under a lock, re-opened after a failure). Write
operations lock the pool's row with ``SELECT … FOR UPDATE`` first, which
serialises the claims of one pool across every host, then read the server's
``clock_timestamp()`` once: expiries are by the server's clock, so the members'
clocks do not matter. The session sets ``statement_timeout`` and
``idle_in_transaction_session_timeout`` to ``timeout``, so neither a stuck
statement nor a member that vanished inside a transaction holds a pool's row
for long. A connection that fails, or that cannot be opened, raises
``StoreError``; the next operation connects again.
"""

from __future__ import annotations

import math
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import natpool
from natpool.errors import PoolConfigError, StoreError
from natpool.extras import require
from natpool.store import ledger
from natpool.store.protocol import Claim, Grant, PoolStatus
from natpool.store.schema import ensure_schema

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore", "redact"]

_T = TypeVar("_T")

_SCHEMA_LOCK = 0x6E6174706F6F6C  # "natpool": the advisory lock under which the tables are created or checked


def redact(dsn: str) -> str:
    """The DSN with any password masked, for messages and ``url``."""
    try:
        parts = urllib.parse.urlsplit(dsn)
        password = parts.password
    except ValueError:  # not a URL urllib can split (libpq will say what is wrong with it)
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", dsn)
    if parts.scheme and password is not None:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


class _PgTx:
    for_update = " FOR UPDATE"

    def __init__(self, cursor: psycopg.Cursor[tuple[Any, ...]], clock: Callable[[], float] | None) -> None:
        self._cursor = cursor
        self._clock = clock
        self._now: float | None = None

    @property
    def now(self) -> float:
        if self._now is None:
            if self._clock is not None:
                self._now = float(self._clock())
            else:
                found = self._cursor.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
                assert found is not None
                self._now = float(found[0])
        return self._now

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._cursor.execute(sql.encode(), params).fetchall()

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._cursor.execute(sql.encode(), params)

    def table_exists(self, table: str) -> bool:
        found = self._cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        return bool(found and found[0])


class PostgresStore:
    """The cluster store in a PostgreSQL database (its tables are created on first use).

    ``dsn`` is a ``postgresql://`` URL or a libpq connection string. ``clock``
    replaces the server's clock (tests only: every member must then share it).
    ``timeout`` bounds connecting (at least 2 s, libpq's minimum), each
    statement and an idle transaction, in seconds.
    """

    def __init__(self, dsn: str, *, clock: Callable[[], float] | None = None, timeout: float = 5.0) -> None:
        require("postgres")
        import psycopg
        import psycopg.conninfo

        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be str, not {type(dsn).__name__}")
        try:
            parsed = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as error:
            raise PoolConfigError("store", f"{redact(dsn)!r} is not a PostgreSQL connection string: {error}") from None
        for port in str(parsed.get("port") or "").split(","):
            if port and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise PoolConfigError("store", f"{redact(dsn)!r} has port {port!r}, not one of 1..65535")
        self._dsn = dsn
        self._url = redact(dsn)
        self._clock = clock
        self._timeout = float(timeout)
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False

        def create(tx: _PgTx) -> None:
            tx.run("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            ensure_schema(tx, self._url, natpool.__version__)

        try:
            self._transaction(create)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"PostgresStore({self._url!r})"

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        connection = psycopg.connect(self._dsn, autocommit=True, connect_timeout=max(2, math.ceil(self._timeout)))
        milliseconds = str(max(1, round(self._timeout * 1000)))
        connection.execute("SELECT set_config('statement_timeout', %s, false)", (milliseconds,))
        connection.execute("SELECT set_config('idle_in_transaction_session_timeout', %s, false)", (milliseconds,))
        return connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # a connection that failed may fail to close too
                pass

    def _transaction(self, body: Callable[[_PgTx], _T]) -> _T:
        import psycopg

        with self._lock:
            if self._closed:
                raise StoreError(f"store {self._url} is closed")
            try:
                if self._connection is None or self._connection.closed or self._connection.broken:
                    self._drop_connection()
                    self._connection = self._connect()
                connection = self._connection
                with connection.transaction(), connection.cursor() as cursor:
                    return body(_PgTx(cursor, self._clock))
            except psycopg.Error as error:
                if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) or (
                    self._connection is not None and self._connection.broken
                ):
                    self._drop_connection()
                raise StoreError(f"store {self._url} failed: {_first_line(error)}") from error

    # -- the Store protocol --------------------------------------------------------------
    def join(self, name: str, member: str, config: Mapping[str, Any], *, ttl: float) -> None:
        self._transaction(lambda tx: ledger.join(tx, name, member, config, ttl))

    def claim(self, name: str, member: str, *, ttl: float, reclaim_delay: float) -> Grant | None:
        return self._transaction(lambda tx: ledger.claim(tx, name, member, ttl, reclaim_delay))

    def claim_at(
        self, name: str, member: str, index: int, *, within: tuple[int, int], ttl: float, reclaim_delay: float
    ) -> Grant | str:
        return self._transaction(lambda tx: ledger.claim_at(tx, name, member, index, within, ttl, reclaim_delay))

    def reclaim(
        self, name: str, member: str, ranges: Iterable[tuple[int, int]], *, ttl: float, reclaim_delay: float
    ) -> list[Grant] | None:
        wanted = [(int(first), int(count)) for first, count in ranges]
        return self._transaction(lambda tx: ledger.reclaim(tx, name, member, wanted, ttl, reclaim_delay))

    def release(self, name: str, member: str, epoch: int) -> None:
        self._transaction(lambda tx: ledger.release(tx, name, member, epoch))

    def renew(self, name: str, member: str, epochs: Iterable[int], *, ttl: float) -> dict[int, float]:
        wanted = list(epochs)
        return self._transaction(lambda tx: ledger.renew(tx, name, member, wanted, ttl))

    def leave(self, name: str, member: str, epochs: Iterable[int] = ()) -> None:
        wanted = list(epochs)
        self._transaction(lambda tx: ledger.leave(tx, name, member, wanted))

    def claims(self, name: str) -> list[Claim]:
        return self._transaction(lambda tx: ledger.claims(tx, name))

    def owner(self, name: str, ip: Any, port: int) -> str | None:
        return self._transaction(lambda tx: ledger.owner(tx, name, ip, port))

    def pools(self) -> list[str]:
        return self._transaction(ledger.pools)

    def status(self, name: str) -> PoolStatus:
        return self._transaction(lambda tx: ledger.status(tx, name))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_connection()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
