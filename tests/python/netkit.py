"""Loopback test kit for the proxy's end-to-end tests: backends, clients, a poll with a hang guard.

Every listen socket takes an ephemeral port; every pool lives in a random 127.X.Y.0/24 so that tests running
at the same time on this machine (other worktrees) do not bind each other's NAT addresses. IPv6 has one loopback
address, ``::1``: an IPv6 pool is ``::1`` with a random window of ports (:func:`random_ports`), and its tests are
skipped on a host without IPv6 loopback (:data:`NO_IPV6`).

The random networks and ports come from one seed per session, :data:`SEED`: a fresh one each session (so that
sessions running side by side draw different networks), or ``NATPOOL_TEST_SEED`` to replay one. The pytest
header shows it, and so does the summary of a session that failed. Each test draws from the seed and its own
name (conftest calls :func:`reseed`), so a test replays alone as in the whole session.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import http.server
import ipaddress
import os
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
from natpool.apps.listener import bound_address, close_server, missing_ipv6_loopback
from natpool.apps.options import PoolAddresses, parse_pool
from natpool.apps.proxy import Proxy, ProxyConfig

HANG_GUARD = 30.0
"""Seconds after which a test that waits for something gives up: a guard against hangs, not a measurement."""

NO_IPV6 = missing_ipv6_loopback()
"""Why this host has no IPv6 loopback (the reason IPv6 tests are skipped), or ``None``."""

needs_ipv6 = pytest.mark.skipif(NO_IPV6 is not None, reason=f"no IPv6 loopback on this host: {NO_IPV6}")
"""The mark of a test that needs IPv6 loopback (skipped, saying why, on a host without it)."""

SEED = int(os.environ.get("NATPOOL_TEST_SEED") or random.SystemRandom().randrange(2**32))
"""The session's seed of the random networks and ports (``NATPOOL_TEST_SEED``, else a fresh one)."""

_random = random.Random(SEED)


def reseed(test: str) -> None:
    """Draw from here on from :data:`SEED` and ``test`` (a test's node id): the same draws each time."""
    _random.seed(f"{SEED}:{test}")


def random_network() -> ipaddress.IPv4Network:
    """A /24 inside 127.0.0.0/8 (all of it is loopback on Linux), away from 127.0.0.0/16."""
    return ipaddress.IPv4Network(f"127.{_random.randint(101, 254)}.{_random.randint(0, 255)}.0/24")


def random_ports(ports: int = 2) -> tuple[int, int]:
    """A random window of ``ports`` ports (below Linux's ephemeral ports; on ``::1``, the only IPv6 loopback
    address, it is what keeps tests running side by side apart)."""
    low = _random.randint(20000, 30000)
    return low, low + ports - 1


def pool_range(network: ipaddress.IPv4Network, ips: int = 1, ports: int = 2) -> tuple[PoolAddresses, tuple[int, int]]:
    """A pool of ``ips`` addresses of ``network`` times ``ports`` ports (a random port window)."""
    first = network.network_address + 1
    return parse_pool(f"{first}-{first + ips - 1}"), random_ports(ports)


def config(
    backends: list[tuple[str, int]], pool: PoolAddresses, ports: tuple[int, int], **options: object
) -> ProxyConfig:
    defaults: dict[str, object] = {"listen": ("127.0.0.1", 0), "initial_blocks": 1, "max_blocks": 65536}
    defaults.update(options)
    return ProxyConfig(backends=tuple(backends), pool=pool, ports=ports, **defaults)  # type: ignore[arg-type]


class PeerEchoBackend:
    """Answers each connection with ``PEER_IP PEER_PORT\\n`` (the address it saw) and closes first.

    While ``hold`` is clear it keeps every connection open (it has read nothing yet) until it is set.
    """

    def __init__(self, on_peer: Callable[[str, int], None] | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.peers: list[tuple[str, int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.on_peer = on_peer
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self._server)

    async def start(self) -> None:
        """Listen on an ephemeral loopback port (once: a started backend stays as it is)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, self.host, 0)

    async def stop(self) -> None:
        await close_server(self._server)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, port = writer.get_extra_info("peername")[:2]
        self.peers.append((ip, port))
        if self.on_peer is not None:
            self.on_peer(ip, port)
        try:
            await self.hold.wait()
            writer.write(f"{ip} {port}\n".encode())
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def running(
    proxy: Proxy, *backends: PeerEchoBackend, listener: socket.socket | None = None
) -> AsyncIterator[Proxy]:
    """Start the backends and the proxy (on ``listener`` if given); on exit stop the proxy (freeing every lease)
    and the backends."""
    for backend in backends:
        await backend.start()
    await proxy.start(listener)
    try:
        yield proxy
    finally:
        for backend in backends:
            backend.hold.set()
        await proxy.stop(drain_timeout=HANG_GUARD)
        for backend in backends:
            await backend.stop()


async def request(address: tuple[str, int], data: bytes = b"hello\n") -> bytes:
    """Connect, send ``data``, read until the other side closes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), HANG_GUARD)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), HANG_GUARD)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def answer_or_close(address: tuple[str, int], data: bytes = b"hello\n") -> bytes:
    """:func:`request`, where a connection reset counts as closed: what it read, ``b""`` after a reset."""
    try:
        return await request(address, data)
    except ConnectionResetError:
        return b""


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`HANG_GUARD` seconds."""
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"hang guard: still waiting for {what}") from None


class PeerHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with ``IP PORT``, the client address the server saw (HTTP/1.0: it closes first)."""

    def do_GET(self) -> None:
        body = f"{self.client_address[0]} {self.client_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _HTTPServer6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextlib.contextmanager
def http_backend(host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """The standard library's HTTP server with :class:`PeerHandler` on an ephemeral port of ``host`` (loopback),
    in a thread."""
    kind = _HTTPServer6 if ":" in host else http.server.ThreadingHTTPServer
    server = kind((host, 0), PeerHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class LogReader:
    """The lines a process writes to stderr, read by a thread (no select on a buffered pipe)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.stream = process.stderr
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.put(line)
        self.lines.put("")  # end of the stream

    def until(self, pattern: str) -> re.Match[str]:
        """The first line from now on that matches ``pattern``; fails at the end of the log or after the guard."""
        deadline = time.monotonic() + HANG_GUARD
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no {pattern!r} in the proxy's log: {self.text()}")

    def text(self) -> str:
        """Everything read so far (after the process ended: all of it)."""
        self.thread.join(timeout=HANG_GUARD)
        if not self.thread.is_alive():
            self.stream.close()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def http_get(address: tuple[str, int]) -> bytes:
    """``GET /`` over HTTP/1.0 through ``address``: the whole answer, ``b""`` if the connection was closed (or
    reset) without one."""
    try:
        with socket.create_connection(address, timeout=HANG_GUARD) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with client.makefile("rb") as stream:
                return stream.read()
    except ConnectionResetError:
        return b""


def peer_of(answer: bytes) -> tuple[str, int]:
    """The peer address a :class:`PeerHandler` answered with."""
    ip, port = answer.rsplit(b"\r\n", 1)[1].decode().split()
    return ip, int(port)


@contextlib.contextmanager
def proxy_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], LogReader, tuple[str, int]]]:
    """``python -m natpool proxy ARGS`` in a process of its own: yields it, its log and the address it listens
    on; kills it at the end if it still runs."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "natpool", "proxy", *args]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    log = LogReader(process)
    try:
        match = log.until(r"listening on \[?([0-9a-f.:]+?)\]?:(\d+),")
        yield process, log, (match[1], int(match[2]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def dead_address() -> tuple[str, int]:
    """A loopback address nothing listens on (a port just released by the kernel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host, port = sock.getsockname()[:2]
    return host, port


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body in a fresh event loop, with a hang guard."""

    async def guarded() -> None:
        await asyncio.wait_for(test(), HANG_GUARD * 2)

    asyncio.run(guarded())


def leases_accounted(proxy: Proxy) -> bool:
    """Every live lease has one owner, a connection (``leased``); held addresses are the pool's, not live."""
    return len(proxy.pool) == proxy.counters.leased


def open_descriptors() -> int:
    """The descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def os_error(code: int) -> OSError:
    """The ``OSError`` the system raises for errno ``code`` (``ConnectionResetError`` for ``ECONNRESET``...)."""
    return OSError(code, os.strerror(code))


class FaultySocket(socket.socket):
    """A socket whose steps fail on demand, for fault injection.

    ``faults`` maps a step (``accept``, ``bind``, ``connect``, ``recv``, ``send``) to the errors its next calls
    raise, one a call; then the step works. Sockets given the same ``faults`` share them. The sockets a faulty
    listener accepts are faulty too, each with a copy of its ``client_faults``.
    """

    def __init__(self, *args: Any, faults: dict[str, list[OSError]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults = {} if faults is None else faults
        self.client_faults: dict[str, list[OSError]] = {}
        self.failed: list[str] = []

    @classmethod
    def wrapping(cls, sock: socket.socket, faults: dict[str, list[OSError]] | None = None) -> FaultySocket:
        """``sock``'s descriptor as a faulty socket (``sock`` is detached from it)."""
        faulty = cls(sock.family, sock.type, sock.proto, fileno=sock.detach(), faults=faults)
        faulty.setblocking(False)
        return faulty

    def _step(self, step: str) -> None:
        errors = self.faults.get(step)
        if errors:
            self.failed.append(step)
            raise errors.pop(0)

    def accept(self) -> tuple[socket.socket, Any]:
        self._step("accept")
        fd, address = self._accept()  # type: ignore[attr-defined]
        faults = {step: list(errors) for step, errors in self.client_faults.items()}
        return FaultySocket(self.family, self.type, self.proto, fileno=fd, faults=faults), address

    def bind(self, address: Any) -> None:
        self._step("bind")
        super().bind(address)

    def connect(self, address: Any) -> None:
        self._step("connect")
        super().connect(address)

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._step("recv")
        return super().recv(size, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._step("send")
        return super().send(data, flags)


def faulty_listener(**client_faults: list[OSError]) -> FaultySocket:
    """A listening loopback socket (ephemeral port) whose accepted sockets fail as ``client_faults`` say."""
    listener = FaultySocket.wrapping(socket.create_server(("127.0.0.1", 0), backlog=128))
    listener.client_faults = client_faults
    return listener


class CancelAt(collections.abc.Coroutine):  # type: ignore[type-arg]
    """Runs ``coro`` so that its task is cancelled at ``coro``'s ``k``-th suspension (never for 0).

    The cancellation is the task's own (``Task.cancel()`` while the coroutine is suspending), so it arrives at
    that ``await`` exactly as a real one would. ``suspensions`` counts the suspensions so far.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], k: int) -> None:
        self.coro, self.k, self.suspensions = coro, k, 0

    def _suspended(self, yielded: Any) -> Any:
        self.suspensions += 1
        if self.suspensions == self.k:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return yielded

    def send(self, value: Any) -> Any:
        return self._suspended(self.coro.send(value))

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        return self._suspended(self.coro.throw(typ) if val is None and tb is None else self.coro.throw(typ, val, tb))

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Any:
        raise TypeError("CancelAt is driven by a task, not awaited")
