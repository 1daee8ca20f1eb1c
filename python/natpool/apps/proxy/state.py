"""``--state FILE``: the pool's state across a restart of the proxy (a snapshot, ``docs/shapes.md``).

Written: every ``--state-interval`` seconds while the proxy serves, and once more at its stop, after the drain
(every lease freed then, their addresses held down with the time they have left). Each write is atomic
(:func:`write_snapshot`): the snapshot goes to a temporary file next to FILE, is synced to the disk and renamed
over FILE, and the directory is synced; so FILE is always one whole snapshot, the last one written or the one
before. A write that fails is logged and counted (``state_write_failures``); a failed write at the stop makes the
exit status 1.

Read at the start (:func:`restore_state`), if FILE exists: the pool is ``Pool.restore``\\ d from it instead of
built new, its held addresses held for the time they had left. Two things refuse the start:

* the command line's pool differs from the snapshot's (the addresses, ports, blocks, policies, ``--pool-name``):
  a usage error naming the option, exit status 2; the restored pool would not be the pool asked for. The seed
  of ``--order random`` is not compared: a restored pool goes on drawing from its generator's state;
* FILE is not a snapshot this natpool reads (corrupt, truncated, of another format version): the pool's
  ``SnapshotError``, and exit status 1. Starting with a new pool instead would forget the addresses held down,
  whose 4-tuples may still be in TIME_WAIT; removing FILE is the operator's decision.

With ``--store``, the restored pool rejoins the cluster as ``--member`` and claims its subpools' ranges back
(``Pool.restore(…, store=…)``): its own claims, still claimed or held for it, or free ranges; ranges another
member took meanwhile refuse the start (``SnapshotError``, exit status 1), as a live member of that name does
(exit status 2: run 1's heartbeat has not lapsed yet).

TCP connections do not survive a restart of the process, so no lease of the snapshot has its connection any
more: a live lease in it is one of a connection of the last process (written by the timer; that process then
ended without its stop). Its 4-tuple may still be in TIME_WAIT at either end, so each such lease is freed as a
connection's is at its close, with the hold-down (:func:`free_restored`): its address comes back after
``--hold-down`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

from natpool.apps.models import PoolLike
from natpool.apps.options import OptionError
from natpool.apps.proxy.events import EventLog
from natpool.apps.proxy.record import Counters
from natpool.apps.space import addresses, runs
from natpool.errors import SnapshotError

__all__ = ["StateFile", "check_same_pool", "free_restored", "restore_state", "write_snapshot"]

log = logging.getLogger("natpool.proxy")

_COMPARED = (
    ("name", "--pool-name"),
    ("family", "--pool"),
    ("ranges", "--pool"),
    ("first_ip", "--pool"),
    ("last_ip", "--pool"),
    ("netmask", "--pool"),
    ("ports", "--ports"),
    ("address_count", "--exclude"),
    ("initial_blocks", "--initial-blocks"),
    ("max_blocks", "--max-blocks"),
    ("subpool_blocks", "--subpool-blocks"),
    ("grow_threshold", "--state"),  # no option sets it: only a file written otherwise differs
    ("hold_down", "--hold-down"),
    ("order", "--order"),
    ("client_quota", "--max-per-client"),
    ("paired", "--paired"),
    ("client_block", "--client-block"),
    ("event_queue", "--state"),
)
"""The pool's configuration as it reads back, each with the option that sets it (``--state`` itself for what no
option sets). ``seed`` is not read back by a pool, and not compared: a restored pool draws on from its
generator's state."""


def write_snapshot(snapshot: bytes, path: str) -> None:
    """Replace ``path`` by ``snapshot`` atomically: a temporary file in its directory, synced, renamed over it;
    then the directory synced. ``OSError`` if any step fails (``path`` is then as it was)."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(snapshot)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_same_pool(restored: PoolLike, configured: PoolLike) -> None:
    """:class:`OptionError` naming the option if ``restored`` (from the snapshot) is not configured as
    ``configured`` (a new pool from the command line) is."""
    for name, option in _COMPARED:
        was, now = getattr(restored, name), getattr(configured, name)
        if was != now:
            raise OptionError(option, f"the pool in --state has {name} {was!r}, the command line {now!r}")
    if runs(restored.intervals(), restored.ports) != runs(configured.intervals(), configured.ports):
        raise OptionError("--exclude", "the pool in --state excludes other addresses than the command line")


def free_restored(pool: PoolLike) -> int:
    """Free every live lease of a restored pool with its hold-down (no connection of it survived the restart);
    how many. Only the subpools that have live leases are walked, address by address."""
    live = {s.id for s in pool.subpools() if s.blocks - s.free - s.held > 0}
    freed = 0
    for record in pool.intervals():
        if record.subpool not in live:
            continue
        for ip, port in addresses(record, pool.ports):
            lease = pool.lookup(ip, port)
            if lease is not None:
                pool.free(lease.handle)  # with the pool's hold_down: --hold-down
                freed += 1
    return freed


def restore_state(path: str, configured: PoolLike, cluster: Mapping[str, Any] | None = None) -> PoolLike:
    """The pool to serve with: ``configured`` (a new pool from the command line) if ``path`` does not exist,
    else the pool restored from it, its live leases freed with the hold-down (``configured`` is then closed).
    ``cluster``: the store arguments with which the restored pool rejoins its cluster (``--store``; it claims its
    subpools' ranges back), ``configured`` then being a pool outside it.

    :class:`OptionError` if the snapshot's pool is configured otherwise than the command line's
    (:func:`check_same_pool`); ``SnapshotError`` if ``path`` is not a snapshot natpool reads, or the cluster
    has given its ranges to other members; ``OSError`` if it cannot be read; the store's ``PoolConfigError``
    and ``StoreError``. ``configured`` is left open on every error.
    """
    try:
        with open(path, "rb") as stream:
            snapshot = stream.read()
    except FileNotFoundError:
        if cluster:
            raise  # gone since the caller saw it: ``configured`` is outside the cluster, and cannot serve
        log.info("--state %s does not exist yet: a new pool", path)
        return configured
    restored = type(configured).restore(snapshot, **(cluster or {}))
    try:
        check_same_pool(restored, configured)
    except BaseException:
        restored.close()
        raise
    configured.close()
    held = restored.stats().held
    freed = free_restored(restored)
    log.info(
        "pool restored from --state %s: %d addresses held down from before the restart, %d leases whose "
        "connections did not survive it freed with the hold-down (%gs)",
        path,
        held,
        freed,
        restored.hold_down,
    )
    return restored


class StateFile:
    """Writes ``pool``'s snapshot to ``path`` every ``interval`` seconds (:meth:`start`) and at the stop
    (:meth:`close`); counts the writes and failures in ``counters``."""

    def __init__(self, pool: PoolLike, path: str, interval: float, counters: Counters, events: EventLog) -> None:
        self.pool = pool
        self.path = path
        self.interval = interval
        self.counters = counters
        self.events = events
        self._timer: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[bool] | None = None

    def start(self) -> None:
        """Write every ``interval`` seconds from now on (in a task of the running loop)."""
        self._timer = asyncio.get_running_loop().create_task(self._every_interval())

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._writing = asyncio.ensure_future(self.write())
            await asyncio.shield(self._writing)  # cancelled (the stop): the write goes on, close() waits for it

    async def write(self) -> bool:
        """Take a snapshot now and write it (the file in a thread); whether it was written."""
        try:
            snapshot = self.pool.snapshot()
            await asyncio.to_thread(write_snapshot, snapshot, self.path)
        except (OSError, SnapshotError) as exc:
            self.counters.state_write_failures += 1
            self.events.warning("state", "--state %s not written: %s", self.path, exc)
            return False
        self.counters.state_writes += 1
        return True

    async def close(self) -> bool:
        """Stop the timer, let a write under way end, then write the state of now (call it after the drain);
        whether that last write succeeded."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        written = await self.write()
        if written:
            stats = self.pool.stats()
            log.info(
                "pool state written to --state %s: %d live leases, %d held down", self.path, stats.live, stats.held
            )
        return written
