"""The load balancer: accept clients, take a NAT address per connection, relay, free; drain on shutdown.

Lease lifecycle of one client connection (``--source pool``):

1. accept; choose a backend (none up: close the client, counted as ``no_backend``);
2. ``allocate(data=record)``; bind the upstream socket to ``lease.address``; connect. An unusable address is
   quarantined and another lease taken (:mod:`~natpool.apps.proxy.source`); ``PoolExhausted`` closes the client at
   once (counted, logged at most once a second) and touches no other connection; a failed connect frees the
   lease, marks the backend down and closes the client;
3. relay both ways until either side closes, then close both;
4. free the lease: at once if the backend closed first (the TIME_WAIT is on the backend's host), else hold it
   down for ``hold_down`` seconds first (the TIME_WAIT of its 4-tuple is here).
"""

from __future__ import annotations

import asyncio
import logging
import socket

import natpool
from natpool.apps.listener import bound_address, close_server
from natpool.apps.proxy.backends import BackendState, Balancer
from natpool.apps.proxy.config import ProxyConfig
from natpool.apps.proxy.events import EventLog
from natpool.apps.proxy.holding import Holding
from natpool.apps.proxy.record import ClientConnection, Counters
from natpool.apps.proxy.relay import close, relay
from natpool.apps.proxy.source import AddressesUnavailable, BackendUnreachable, KernelSource, PoolSource
from natpool.errors import PoolExhausted

__all__ = ["Proxy"]

log = logging.getLogger("natpool.proxy")


class Proxy:
    """An asyncio TCP load balancer in directed mode with client NAT from a natpool pool."""

    def __init__(self, config: ProxyConfig, pool: natpool.Pool | None = None) -> None:
        self.config = config
        self.pool = pool if pool is not None else config.check()
        self.counters = Counters()
        self.events = EventLog(log)
        self.backends = Balancer(config.backends, config.balance, config.down_time)
        self.holding = Holding(self.pool, self.counters)
        self.source: PoolSource | KernelSource
        if config.source == "kernel":
            self.source = KernelSource(config.pool, self.counters)
        else:
            self.source = PoolSource(
                self.pool, self.holding, self.counters, config.bind_attempts, config.quarantine, self.events
            )
        self.active: set[asyncio.Task[None]] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The listening address (the port the kernel chose for ``--listen HOST:0``)."""
        assert self._address is not None, "the proxy is not started"
        return self._address

    async def start(self) -> None:
        """Listen on ``--listen``."""
        self._server = await asyncio.start_server(self._accepted, *self.config.listen, backlog=1024)
        self._address = bound_address(self._server)
        log.info(
            "listening on %s:%d, %d backend(s), pool %s ports %d-%d (%s source)",
            *self.address,
            len(self.backends.all),
            self.config.pool.text,
            *self.config.ports,
            self.config.source,
        )

    def lookup(self, ip: str, port: int) -> ClientConnection | None:
        """The connection record holding NAT address ``(ip, port)``, or ``None``."""
        lease = self.pool.lookup(ip, port)
        record = None if lease is None else lease.data
        return record if isinstance(record, ClientConnection) else None

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.active.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self.active.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.accepted += 1
        peer = writer.get_extra_info("peername") or ("0.0.0.0", 0)  # None: the client is already gone
        record = ClientConnection(client=(peer[0], peer[1]))
        try:
            backend = self.backends.choose()
            if backend is None:
                self.counters.no_backend += 1
                return
            record.backend = str(backend)
            backend.active += 1  # from the connect on, so that least-connections sees it at once
            try:
                await self._connect_and_relay(reader, writer, record, backend)
            finally:
                backend.active -= 1
        finally:
            await close(writer)

    async def _connect_and_relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: ClientConnection,
        backend: BackendState,
    ) -> None:
        try:
            sock, lease = await self.source.connect(backend.address, record, self.config.connect_timeout)
        except PoolExhausted:
            self.counters.exhausted += 1
            stats = self.pool.stats()
            self.events.warning(
                "exhausted",
                "pool exhausted: %d live leases of capacity %d (%d held down); %d client connections refused so far",
                stats.live,
                stats.capacity,
                self.counters.held,
                self.counters.exhausted,
            )
            return
        except BackendUnreachable as exc:
            self.counters.backend_failures += 1
            self.backends.mark_down(backend, str(exc))
            return
        except AddressesUnavailable as exc:
            self.counters.bind_failures += 1
            self.events.warning("bind", "client %s:%d lost: %s", *record.client, exc)
            return
        if lease is not None:
            record = lease.data  # a copy of the record if an address was quarantined
        await self._relay(reader, writer, sock, lease, record, backend)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        sock: socket.socket,
        lease: natpool.Lease | None,
        record: ClientConnection,
        backend: BackendState,
    ) -> None:
        first = "client"
        backend.connections += 1
        self.counters.relayed += 1
        record.state = "open"
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(sock=sock)
            first = await relay((reader, writer), (up_reader, upstream), record)
        finally:
            record.state = "closed"
            if upstream is not None:
                await close(upstream)
            else:
                sock.close()
            if lease is not None:
                hold = 0.0 if first == "backend" else self.config.hold_down
                self.holding.hold(lease, hold, "time-wait")

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let connections finish for ``drain_timeout`` s, close the rest, free every lease."""
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self.active:
            log.info("draining %d connection(s) for up to %gs", len(self.active), timeout)
            await asyncio.wait(set(self.active), timeout=timeout)
        rest = set(self.active)
        if rest:
            log.warning("closing %d connection(s) still open after the drain", len(rest))
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        released = self.holding.release_all()
        await close_server(self._server)
        self.events.flush()
        stats = self.pool.stats()
        c = self.counters
        log.info(
            "stopped: %d accepted, %d relayed, %d refused on exhaustion, %d bind retries, %d backend failures; "
            "%d held leases freed; pool: %d live, %d blocks in %d subpools, %d intervals",
            c.accepted,
            c.relayed,
            c.exhausted,
            c.bind_retries,
            c.backend_failures,
            released,
            stats.live,
            stats.blocks,
            stats.subpools,
            stats.intervals,
        )
