"""``natpool proxy --workers N``: N proxy processes on one listening address, sharing one pool through a store.

The supervisor (this process) does not serve. It

1. opens the cluster store once (the tables are made before the workers race to join): the one ``--store``
   names, or a SQLite file in a private temporary directory that it removes at the end;
2. reserves the listening address: a socket bound with ``SO_REUSEPORT`` that never listens (so the kernel
   sends it no connection) and holds the port, the one the kernel chose for port 0 included, until the end;
3. starts N workers (:mod:`~natpool.apps.proxy.worker`, each in a process group of its own, so that a
   terminal's Ctrl-C reaches the supervisor only), each a member of the cluster (``{hostname}:{pid}``, or
   ``NAME-1`` … ``NAME-N`` from ``--member NAME``) with its own listening socket bound with ``SO_REUSEPORT``
   to the reserved address, and waits until every one listens. One that fails to start stops the others;
4. forwards the first SIGTERM or SIGINT to every worker, waits for their drains (``--drain-timeout``, then
   :data:`STOP_GRACE` more before it kills what is left), and reports each worker's exit status.

A worker that dies on its own is logged at once, with its exit status, and not restarted: its listening socket
has left the ``SO_REUSEPORT`` group, so the kernel hands new connections to the others; its claims lapse after
``claim_ttl`` and are held ``reclaim_delay`` before anyone claims them again, since its connections died with
it. The others serve on; the supervisor's exit status will say that a worker failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from typing import Any

from natpool.apps.options import Endpoint, OptionError, endpoint_family, endpoint_text
from natpool.apps.proxy.config import ProxyConfig
from natpool.apps.proxy.worker import Ready, WorkerReport, WorkerSpec, frame, read_message_async
from natpool.errors import NatPoolError, PoolConfigError
from natpool.extras import MissingExtra
from natpool.store import PoolStatus, open_store
from natpool.store.postgres import redact

__all__ = [
    "STARTUP_GUARD",
    "STOP_GRACE",
    "WorkerExit",
    "Workers",
    "WorkersFailed",
    "check_workers",
    "member_name",
    "metrics_endpoint",
    "supervise",
]

log = logging.getLogger("natpool.proxy")

WORKER_MAIN = "from natpool.apps.proxy.worker import main; raise SystemExit(main())"
"""What a worker process runs (``python -c``): the worker's module by its own name, whose classes the
supervisor unpickles (``-m`` would run it as ``__main__``, a second copy of a module the package imports)."""
STARTUP_GUARD = 60.0
"""Seconds the workers have to start listening (a hang guard: they take about a second)."""
STOP_GRACE = 30.0
"""Seconds a worker has after ``--drain-timeout`` to close, leave the store and report before it is killed."""


class WorkersFailed(Exception):
    """The workers could not all be started (the started ones were stopped again)."""


def member_name(base: str | None, index: int) -> str | None:
    """Worker ``index``'s member name: ``NAME-index`` from ``--member NAME``; ``None`` (its pool's default,
    ``{hostname}:{pid}``) without."""
    return None if base is None else f"{base}-{index}"


def metrics_endpoint(metrics: Endpoint | None, index: int) -> Endpoint | None:
    """Worker ``index``'s endpoint: ``PORT + index - 1`` from ``--metrics HOST:PORT`` (any free port for 0)."""
    if metrics is None:
        return None
    host, port = metrics
    return host, 0 if port == 0 else port + index - 1


def _reserve(address: Endpoint) -> socket.socket:
    """A socket bound to ``address`` with ``SO_REUSEPORT`` that never listens: it holds the port."""
    sock = socket.socket(endpoint_family(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _status_text(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


@dataclass
class WorkerExit:
    """How one worker ended."""

    index: int
    pid: int
    member: str | None
    status: int
    """The process's exit status; negative: killed by that signal."""
    asked: bool
    """Whether the supervisor had asked it to stop (else it died on its own, or failed to start)."""
    report: WorkerReport | None
    """What it reported after its drain (``None`` if it never got there)."""

    @property
    def ok(self) -> bool:
        return self.asked and self.status == 0

    def describe(self) -> str:
        """``worker 2 (pid 4242, member edge-2): exit status 0; 5,012 accepted, 5,012 relayed``."""
        who = f"worker {self.index} (pid {self.pid}, member {self.member or '?'})"
        text = f"{who}: {_status_text(self.status)}"
        if self.report is not None:
            c = self.report.counters
            text += f"; {c.accepted:,} accepted, {c.relayed:,} relayed"
            if self.report.stats is not None:
                text += f", {self.report.stats.live} live leases after the drain"
        elif not self.asked:
            text += " (not asked to stop)"
        return text


class _Worker:
    def __init__(self, index: int, process: asyncio.subprocess.Process) -> None:
        self.index = index
        self.process = process
        self.ready: asyncio.Future[Ready] = asyncio.get_running_loop().create_future()
        self.report: WorkerReport | None = None
        self.asked = False
        self.exit: WorkerExit | None = None
        self.watcher: asyncio.Task[WorkerExit] | None = None

    @property
    def member(self) -> str | None:
        if self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None:
            return self.ready.result().member
        return None


class Workers:
    """N proxy workers sharing ``config``'s listening address and one pool through a store (see the module).

    :meth:`prepare` (synchronous: the store and the address), then ``await`` :meth:`start`, :meth:`wait` or
    :meth:`stop`, and :meth:`close` at the end.
    """

    def __init__(
        self,
        config: ProxyConfig,
        count: int,
        *,
        log_level: str = "INFO",
        journal: bool = False,
        executable: str = sys.executable,
    ) -> None:
        self.config = config
        self.count = count
        self.log_level = log_level
        self.journal = journal
        self.executable = executable
        self.url = config.store
        """The cluster store's URL (after :meth:`prepare`, the temporary one if ``config`` names none)."""
        self.temporary: str | None = None
        """The private directory of the temporary store, removed by :meth:`close`."""
        self.address: Endpoint = config.listen
        """The listening address (after :meth:`prepare`, with the port the kernel chose for port 0)."""
        self._reservation: socket.socket | None = None
        self._workers: list[_Worker] = []
        self.stopping = False

    # -- setup ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Open the store once and reserve the address.

        :class:`OptionError` for a malformed ``--store`` (or one that needs a missing extra),
        :class:`~natpool.StoreError` for a store that cannot be reached, ``OSError`` for an address in use.
        """
        if self.url is None:
            self.temporary = tempfile.mkdtemp(prefix="natpool-proxy-")
            self.url = "sqlite://" + urllib.parse.quote(os.path.join(self.temporary, "store.db"))
        try:
            open_store(self.url).close()
        except PoolConfigError as exc:
            self.close()
            raise OptionError("--store", exc.reason) from None
        except MissingExtra as exc:
            self.close()
            raise OptionError("--store", str(exc)) from None
        except BaseException:
            self.close()
            raise
        try:
            self._reservation = _reserve(self.config.listen)
        except BaseException:
            self.close()
            raise
        host, port = self._reservation.getsockname()[:2]
        self.address = host, port

    def spec(self, index: int) -> WorkerSpec:
        """What worker ``index`` (1..count) runs with."""
        config = dataclasses.replace(
            self.config,
            listen=self.address,
            store=self.url,
            member=member_name(self.config.member, index),
            metrics=metrics_endpoint(self.config.metrics, index),
        )
        return WorkerSpec(index, config, self.log_level, self.journal)

    async def start(self, abort: asyncio.Event | None = None) -> list[Ready]:
        """Start the workers and wait until each listens; :class:`WorkersFailed` (the others stopped) if one
        does not, or if ``abort`` is set first (a signal during the start)."""
        assert self._reservation is not None, "prepare() first"
        try:
            for index in range(1, self.count + 1):
                await self._spawn(index)
        except BaseException:
            await self.stop()
            raise
        await self._until_ready(abort)
        failed = [w for w in self._workers if not w.ready.done() or w.ready.exception() is not None]
        if failed:
            await self.stop()
            first = failed[0]
            if abort is not None and abort.is_set():
                reason = "stopped by a signal before every worker listened"
            elif first.exit is not None:
                reason = f"worker {first.index} failed to start ({_status_text(first.exit.status)})"
            else:
                reason = f"worker {first.index} did not start in {STARTUP_GUARD:g}s"
            raise WorkersFailed(f"{reason}; the others were stopped")
        return [worker.ready.result() for worker in self._workers]

    async def _spawn(self, index: int) -> None:
        process = await asyncio.create_subprocess_exec(
            self.executable,
            "-c",
            WORKER_MAIN,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            process_group=0,  # a terminal's Ctrl-C reaches the supervisor only, which forwards it
        )
        worker = _Worker(index, process)
        self._workers.append(worker)
        worker.watcher = asyncio.ensure_future(self._watch(worker))
        assert process.stdin is not None
        process.stdin.write(frame(self.spec(index)))  # stdin stays open: its end tells the worker to stop
        with contextlib.suppress(ConnectionError):  # it died already: its watcher says so
            await process.stdin.drain()

    async def _until_ready(self, abort: asyncio.Event | None) -> None:
        """Until every worker listens, one has failed, ``abort`` is set, or :data:`STARTUP_GUARD` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_GUARD
        waiting: set[asyncio.Future[Any]] = {worker.ready for worker in self._workers}
        aborted = asyncio.ensure_future(abort.wait()) if abort is not None else loop.create_future()
        try:
            while waiting and not aborted.done() and (left := deadline - loop.time()) > 0:
                done, waiting = await asyncio.wait(
                    waiting | {aborted}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                waiting.discard(aborted)
                if any(not ready.cancelled() and ready.exception() is not None for ready in done - {aborted}):
                    return
        finally:
            aborted.cancel()

    # -- supervision ------------------------------------------------------------------------------
    async def _watch(self, worker: _Worker) -> WorkerExit:
        """Read the worker's messages until its output ends; then its exit status."""
        process = worker.process
        assert process.stdout is not None
        try:
            while True:
                message = await read_message_async(process.stdout)
                if isinstance(message, Ready) and not worker.ready.done():
                    worker.ready.set_result(message)
                elif isinstance(message, WorkerReport):
                    worker.report = message
        except asyncio.IncompleteReadError:
            pass  # the end of its output
        except Exception as exc:  # a message that cannot be read: the worker is told to stop
            log.error("worker %d sent what cannot be read (%r): stopping it", worker.index, exc)
            worker.asked = True
            with contextlib.suppress(ProcessLookupError):
                worker.process.terminate()
        status = await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        started = worker.ready.done()
        if not started:
            worker.ready.set_exception(WorkersFailed(f"worker {worker.index} ended before it listened"))
            worker.ready.exception()  # retrieved: start() reports it
        worker.exit = WorkerExit(worker.index, process.pid, worker.member, status, worker.asked, worker.report)
        if started and not worker.asked:
            left = sum(1 for w in self._workers if w.exit is None)
            log.error(
                "%s; not restarted: %d worker(s) left serving, its claims lapse in %gs and are then held %gs",
                worker.exit.describe(),
                left,
                self.config.claim_ttl,
                self.config.reclaim_delay,
            )
        return worker.exit

    def living(self) -> list[int]:
        """The pids of the workers still running."""
        return [w.process.pid for w in self._workers if w.exit is None]

    def ask_to_stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask every running worker to stop with ``sig`` (once each: later calls do nothing more)."""
        self.stopping = True
        for worker in self._workers:
            if worker.exit is None and not worker.asked:
                worker.asked = True
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def wait(self) -> list[WorkerExit]:
        """Until every worker has exited; how each ended, in worker order."""
        return list(await asyncio.gather(*(w.watcher for w in self._workers if w.watcher is not None)))

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> list[WorkerExit]:
        """Forward ``sig`` to every worker, wait for their drains (killing any still running after
        ``--drain-timeout`` + :data:`STOP_GRACE`), and return how each ended."""
        self.ask_to_stop(sig)
        watchers = [w.watcher for w in self._workers if w.watcher is not None]
        if watchers:
            _, late = await asyncio.wait(watchers, timeout=self.config.drain_timeout + STOP_GRACE)
            for worker in self._workers:
                if worker.watcher in late:
                    log.error("worker %d (pid %d) did not stop in time: killed", worker.index, worker.process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
        return await self.wait()

    # -- the end ----------------------------------------------------------------------------------
    def store_status(self) -> PoolStatus | None:
        """The pool's state in the store now (``None`` if it cannot be read)."""
        assert self.url is not None
        try:
            store = open_store(self.url)
        except (NatPoolError, MissingExtra) as exc:
            log.warning("cannot read the cluster store %s: %s", redact(self.url), exc)
            return None
        try:
            return store.status(self.config.name)
        except NatPoolError as exc:
            log.warning("cannot read pool %s in the cluster store: %s", self.config.name, exc)
            return None
        finally:
            store.close()

    def close(self) -> None:
        """Release the address; remove the temporary store (after the workers have exited)."""
        if self._reservation is not None:
            self._reservation.close()
            self._reservation = None
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


def check_workers(config: ProxyConfig, count: int) -> None:
    """The combinations ``--workers`` adds (an :class:`OptionError`): the pool's configuration must be one a store
    takes (its checks with a store), and each worker's ``--metrics`` port must exist and not be ``--listen``'s."""
    if count < 1:
        raise OptionError("--workers", f"{count} is less than 1")
    if config.state is not None:
        raise OptionError("--state", "not with --workers (each worker's pool is a member of the machine's store)")
    dataclasses.replace(config, store=config.store or "sqlite:///workers.db").validate()  # nothing is opened
    if config.metrics is None or config.metrics[1] == 0:
        return
    host, port = config.metrics
    last = port + count - 1
    if last > 65535:
        raise OptionError("--metrics", f"worker {count} would serve on port {last} (PORT + worker - 1): beyond 65535")
    if config.listen[0] == host and port <= config.listen[1] <= last:
        raise OptionError(
            "--metrics", f"a worker would serve on --listen's port {config.listen[1]} (PORT + worker - 1)"
        )


def _store_line(url: str, status: PoolStatus) -> str:
    return (
        f"cluster store {url}: pool {status.name}: {len(status.members)} member(s), {status.claimed:,} addresses "
        f"claimed, {status.held:,} held, {status.free:,} free"
    )


async def supervise(group: Workers) -> int:
    """``natpool proxy --workers N`` after :meth:`Workers.prepare`: start the workers, forward the first SIGTERM
    or SIGINT, wait for the drains, report each worker; exit status 0 when every worker was asked to stop and
    exited 0, else 1."""
    from natpool.apps.proxy.service import STOP_SIGNALS

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if not received:
            log.info("signal received (%s): stopping %d worker(s)", sig.name, len(group.living()))
        received.append(sig)
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        try:
            readies = await group.start(abort=stop)
        except WorkersFailed as exc:
            log.error("%s", exc)
            return 1
        config = group.config
        log.info(
            "listening on %s with %d workers (SO_REUSEPORT), pool %s ports %d-%d, cluster store %s%s",
            endpoint_text(group.address),
            group.count,
            config.pool.text,
            *config.ports,
            redact(group.url or ""),
            " (temporary)" if group.temporary else "",
        )
        for ready in readies:
            endpoint = "" if ready.metrics is None else f", metrics on http://{endpoint_text(ready.metrics)}/"
            log.info("worker %d: pid %d, member %s%s", ready.index, ready.pid, ready.member, endpoint)
        everyone = asyncio.ensure_future(group.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({everyone, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if stop.is_set():
            exits = await group.stop(received[0])
        else:
            exits = everyone.result()
            log.error("every worker has died")
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    for ended in exits:
        log.log(logging.INFO if ended.ok else logging.ERROR, "%s", ended.describe())
    status = group.store_status()
    if status is not None:
        assert group.url is not None
        log.info("%s", _store_line(redact(group.url), status))
    failed = sum(1 for ended in exits if not ended.ok)
    log.log(
        logging.ERROR if failed else logging.INFO,
        "stopped: %d of %d worker(s) failed",
        failed,
        len(exits),
    )
    return 1 if failed else 0
