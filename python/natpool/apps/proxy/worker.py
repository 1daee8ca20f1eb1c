"""One worker of ``natpool proxy --workers N``: the child side (its process runs :func:`main`).

The supervisor (:mod:`~natpool.apps.proxy.workers`) starts the worker with pipes for stdin and stdout, and writes
one :class:`WorkerSpec` to its stdin. The worker joins the cluster store as its own member, binds its own
listening socket to the shared address with ``SO_REUSEPORT``, serves (:func:`~natpool.apps.proxy.service.serve`)
and writes two messages to its stdout: :class:`Ready` once it listens, :class:`WorkerReport` after its drain.
Its own prints and logs go to stderr (the supervisor's). SIGTERM or SIGINT, forwarded by the supervisor, drains
and stops it; so does the end of its stdin (the supervisor is gone, even if it was killed). Exit status: 0 when
its pool had no live lease after the drain, 1 otherwise or when it could not start.

Messages are pickles behind a 4-byte length: the supervisor and its workers are one program.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import pickle
import socket
import struct
import sys
from dataclasses import dataclass
from typing import IO, Any

from natpool.apps.logs import start_logging
from natpool.apps.options import Endpoint, OptionError, endpoint_family, endpoint_text
from natpool.apps.proxy.config import ProxyConfig
from natpool.apps.proxy.journal import LeaseJournal, LeaseSpan
from natpool.apps.proxy.record import Counters
from natpool.errors import NatPoolError
from natpool.records import PoolStats

__all__ = [
    "Ready",
    "WorkerReport",
    "WorkerSpec",
    "frame",
    "main",
    "read_message",
    "read_message_async",
    "reuse_port_listener",
    "write_message",
]

log = logging.getLogger("natpool.proxy")

_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class WorkerSpec:
    """What the supervisor tells a worker: its number (1..count), its configuration, how to log and report."""

    index: int
    config: ProxyConfig
    """With ``listen`` the shared address (its port fixed), ``store`` the cluster's URL, ``member`` its name (or
    ``None``: ``"{hostname}:{pid}"``), ``metrics`` its own endpoint."""
    log_level: str = "INFO"
    journal: bool = False
    """Whether to note every lease's span and send them in the report (``natpool demo --workers``)."""


@dataclass(frozen=True)
class Ready:
    """A worker listens: its process, its member name, its endpoint."""

    index: int
    pid: int
    member: str
    metrics: Endpoint | None


@dataclass(frozen=True)
class WorkerReport:
    """A worker after its drain: its counts, its pool before it was closed, and its journal (if asked for)."""

    index: int
    pid: int
    member: str
    counters: Counters
    stats: PoolStats | None
    spans: list[LeaseSpan] = dataclasses.field(default_factory=list)


def frame(message: object) -> bytes:
    """``message`` as it goes down a pipe: its length, then its pickle."""
    data = pickle.dumps(message)
    return _LENGTH.pack(len(data)) + data


def write_message(stream: IO[bytes], message: object) -> None:
    stream.write(frame(message))
    stream.flush()


def read_message(stream: IO[bytes]) -> Any:
    """The next message on ``stream``; ``EOFError`` at its end."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("no message")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("a message cut short")
    return pickle.loads(data)


async def read_message_async(stream: asyncio.StreamReader) -> Any:
    """The next message from a worker; ``asyncio.IncompleteReadError`` at the end of its output."""
    (size,) = _LENGTH.unpack(await stream.readexactly(_LENGTH.size))
    return pickle.loads(await stream.readexactly(size))


def reuse_port_listener(address: Endpoint, backlog: int) -> socket.socket:
    """A listening socket on ``address`` with ``SO_REUSEPORT``: the kernel spreads new connections over every
    such socket of the address (a worker's own, so one worker's accept queue is its own)."""
    return socket.create_server(address, family=endpoint_family(address), backlog=backlog, reuse_port=True)


def _watch_supervisor(stop: asyncio.Event) -> None:
    """Stop when stdin ends: the supervisor is gone (it closes its end only after the worker has exited)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            if not stop.is_set():
                log.warning("the supervisor is gone: stopping")
                stop.set()

    loop.add_reader(fd, readable)


async def _run(spec: WorkerSpec, out: IO[bytes]) -> int:
    from natpool.apps.proxy.server import BACKLOG
    from natpool.apps.proxy.service import exit_status, leave, serve

    config = spec.config
    try:
        pool = config.check()  # joins the cluster store as this worker's member
    except (OptionError, NatPoolError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    try:
        listener = reuse_port_listener(config.listen, BACKLOG)
    except OSError as exc:
        log.error("cannot listen on %s: %s", endpoint_text(config.listen), exc)
        leave(pool)
        return 1
    member = pool.member or ""
    journal = LeaseJournal() if spec.journal else None
    stop = asyncio.Event()
    _watch_supervisor(stop)

    def ready(_: object, admin: Any) -> None:
        write_message(out, Ready(spec.index, os.getpid(), member, None if admin is None else admin.address))

    proxy = await serve(config, ready, pool=pool, listener=listener, stop=stop, journal=journal)
    report = WorkerReport(
        spec.index, os.getpid(), member, proxy.counters, proxy.final_stats, [] if journal is None else journal.spans()
    )
    try:
        write_message(out, report)
    except BrokenPipeError:  # the supervisor is gone
        pass
    return exit_status(proxy)


def main() -> int:
    """The worker process: read the spec from stdin, serve, report on the original stdout."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")  # the channel to the supervisor...
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # ...and anything printed goes to stderr
    spec: WorkerSpec = read_message(sys.stdin.buffer)
    start_logging(spec.log_level, tag=f"worker {spec.index}")
    try:
        return asyncio.run(_run(spec, out))
    except OSError as exc:
        log.error("%s", exc)
        return 1
    finally:
        with contextlib.suppress(OSError):
            out.close()
