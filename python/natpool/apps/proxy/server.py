"""The load balancer: accept clients, take a NAT address per connection, relay, free; drain on shutdown.

Lease lifecycle of one client connection (``--source pool``):

1. accept, while fewer than ``max_connections`` are open (:mod:`~natpool.apps.proxy.acceptor`); choose a backend
   (none up: close the client, counted as ``no_backend``);
2. allocate a lease into the connection's :class:`~natpool.apps.proxy.lease.LeaseOwner` (its ``data`` is the
   connection's record), create the upstream socket, bind it to ``lease.address``, connect. An unusable address
   is quarantined and another lease taken (:mod:`~natpool.apps.proxy.source`); ``PoolExhausted`` closes the
   client at once (counted, logged at most once a second) and touches no other connection, and so does a
   ``StoreError`` (the pool is a member of a cluster and its store failed when a subpool was needed); a failed
   connect marks the backend down and closes the client;
3. relay both ways until either side closes or fails, or no byte moved for ``idle_timeout`` seconds; close both;
4. the owner gives the lease back, in the ``finally`` of the connection's task, on every path: freed at once if
   no connection was made, else freed with the pool's hold-down (``hold_down`` seconds before the address can
   be handed out again: the TIME_WAIT of its 4-tuple is at one end or the other, whoever closed first).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Iterable

from natpool.apps.models import PoolLike
from natpool.apps.options import endpoint_family, endpoint_text
from natpool.apps.proxy.acceptor import Acceptor
from natpool.apps.proxy.backends import BackendState, Balancer
from natpool.apps.proxy.blocklog import INTERVAL, BlockLog
from natpool.apps.proxy.config import ProxyConfig
from natpool.apps.proxy.events import EventLog
from natpool.apps.proxy.journal import LeaseJournal
from natpool.apps.proxy.lease import LeaseOwner
from natpool.apps.proxy.limits import RESOURCE_ERRNOS
from natpool.apps.proxy.record import ClientConnection, Counters
from natpool.apps.proxy.relay import CLIENT, IDLE, close, relay
from natpool.apps.proxy.source import AddressesUnavailable, BackendUnreachable, KernelSource, PoolSource
from natpool.apps.proxy.state import StateFile
from natpool.errors import PoolExhausted, QuotaExceeded, StoreError
from natpool.records import PoolStats
from natpool.store.postgres import redact

__all__ = ["BACKLOG", "Proxy"]

log = logging.getLogger("natpool.proxy")

BACKLOG = 1024
"""The listener's backlog: clients beyond ``max_connections`` wait there (the kernel caps it at somaxconn)."""


def _peer(sock: socket.socket) -> tuple[str, int]:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:  # the client is already gone
        return "0.0.0.0", 0
    return host, port


def _close_refused(client: socket.socket) -> None:
    """Close a client socket; what it sent and nobody read is read first, so that it gets a FIN and not a reset."""
    try:
        for _ in range(16):
            if not client.recv(65536):
                break
    except OSError:  # nothing more to read (BlockingIOError), or already closed
        pass
    client.close()


class Proxy:
    """An asyncio TCP load balancer in directed mode with client NAT from a natpool pool."""

    def __init__(self, config: ProxyConfig, pool: PoolLike | None = None, journal: LeaseJournal | None = None) -> None:
        """A proxy on ``pool`` (default: the one ``config`` builds, a member of its store if it names one);
        ``journal`` notes every lease's span (``natpool demo --workers``)."""
        self.config = config
        self.pool = pool if pool is not None else config.check()
        self.max_connections = config.connection_limit()
        """Client connections open at once at most (``--max-connections``, or what RLIMIT_NOFILE allows)."""
        self.counters = Counters()
        self.events = EventLog(log)
        self.backends = Balancer(config.backends, config.balance, config.down_time)
        self.journal = journal
        self.source: PoolSource | KernelSource
        if config.source == "kernel":
            self.source = KernelSource(self.pool, self.counters)
        else:
            self.source = PoolSource(config.bind_attempts, config.quarantine, self.counters, self.events)
        self.active: set[asyncio.Task[None]] = set()
        """The connections' tasks, from accept to close."""
        self.draining = False
        self.final_stats: PoolStats | None = None
        """The pool's stats when :meth:`stop` had drained and freed everything (before the pool is closed)."""
        self._acceptor: Acceptor | None = None
        self._address: tuple[str, int] | None = None
        self.block_log: BlockLog | None = None
        """The ``--block-log`` file (opened by :meth:`start`)."""
        self._drainer: asyncio.Task[None] | None = None
        self.state: StateFile | None = None
        """The ``--state`` file (its timer started by :meth:`start`, its last write made by :meth:`stop`)."""
        self.state_saved: bool | None = None
        """Whether :meth:`stop` wrote the pool's state to ``--state`` (``None``: no ``--state``)."""

    @property
    def address(self) -> tuple[str, int]:
        """The listening address (the port the kernel chose for ``--listen HOST:0``)."""
        assert self._address is not None, "the proxy is not started"
        return self._address

    @property
    def accepting(self) -> bool:
        """Whether the proxy accepts now: started, not stopped, below ``max_connections``, not paused."""
        return self._acceptor is not None and self._acceptor.accepting

    async def start(self, listener: socket.socket | None = None) -> None:
        """Listen on ``--listen``, or on ``listener``: a listening socket made elsewhere (socket activation)."""
        if self.config.block_log is not None:  # before listening: a path that cannot be opened stops the start
            self.block_log = BlockLog(self.config.block_log, self.config.block_log_max_bytes)
        if listener is None:
            try:
                family = endpoint_family(self.config.listen)
                listener = socket.create_server(self.config.listen, family=family, backlog=BACKLOG)
            except BaseException:
                if self.block_log is not None:
                    self.block_log.close()
                raise
        listener.setblocking(False)
        host, port = listener.getsockname()[:2]
        self._address = host, port
        self._acceptor = Acceptor(listener, self._accepted, self.max_connections, self.events)
        if self.config.client_block is not None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain_block_events())
        if self.config.state is not None:
            self.state = StateFile(self.pool, self.config.state, self.config.state_interval, self.counters, self.events)
            self.state.start()
        self._acceptor.start()
        member = self.pool.member
        log.info(
            "listening on %s, %d backend(s), pool %s ports %d-%d (%s source)%s; "
            "at most %s connections, idle timeout %gs",
            endpoint_text(self.address),
            len(self.backends.all),
            self.config.pool.text,
            *self.config.ports,
            self.config.source,
            "" if member is None else f", member {member} of the cluster in {redact(self.config.store or '')}",
            f"{self.max_connections:,}",
            self.config.idle_timeout,
        )

    def drain_block_events(self) -> int:
        """Take the pool's block events (``--client-block``), count them and append them to ``--block-log``."""
        events = self.pool.events()
        self.counters.block_events += len(events)
        if self.block_log is not None and events:
            try:
                self.block_log.write(events)
            except OSError as exc:
                path = self.block_log.path
                self.events.warning("block-log", "--block-log %s: %s; %d events lost", path, exc, len(events))
        return len(events)

    async def _drain_block_events(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL)
            self.drain_block_events()

    def lookup(self, ip: str, port: int) -> ClientConnection | None:
        """The connection record holding NAT address ``(ip, port)``, or ``None``."""
        lease = self.pool.lookup(ip, port)
        record = None if lease is None else lease.data
        return record if isinstance(record, ClientConnection) else None

    def _accepted(self, client: socket.socket) -> None:
        """A task serves the client from here; when it is done, started or not, the acceptor's slot comes back."""
        task = asyncio.get_running_loop().create_task(self._connection(client))
        self.active.add(task)
        task.add_done_callback(functools.partial(self._ended, client))

    def _ended(self, client: socket.socket, task: asyncio.Task[None]) -> None:
        """A connection's task is done: close its client socket (if its stream did not), give its slot back."""
        _close_refused(client)
        self.active.discard(task)
        assert self._acceptor is not None
        self._acceptor.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.counters.errors += 1
            kind = f"error {type(exc).__name__}"
            self.events.error(kind, exc, "client connection lost to an unexpected error: %r", exc)

    async def _connection(self, client: socket.socket) -> None:
        """Serve one client connection, from accept to close.

        ``owner`` is the one owner of the connection's lease; whatever path this takes (refused, failed,
        relayed, cancelled at any ``await``), the ``finally`` gives the lease back to the pool.
        """
        self.counters.accepted += 1
        owner = LeaseOwner(
            self.pool,
            self.counters,
            ClientConnection(client=_peer(client)),
            journal=self.journal,
            by_client=self.config.by_client,
        )
        try:
            await self._serve(client, owner)
        except QuotaExceeded:  # before PoolExhausted, its base class: only this client is over its share
            self.counters.quota_refused += 1
            self.events.warning(
                "quota",
                "client %s has --max-per-client %d leases: connection closed; %d refused over the quota so far",
                owner.record.client[0],
                self.config.max_per_client or 0,
                self.counters.quota_refused,
            )
        except PoolExhausted:
            self.counters.exhausted += 1
            stats = self.pool.stats()
            self.events.warning(
                "exhausted",
                "pool exhausted: %d live leases of capacity %d (%d held down); %d client connections refused so far",
                stats.live,
                stats.capacity,
                stats.held,
                self.counters.exhausted,
            )
        except StoreError as exc:  # a subpool was needed and the cluster store could not be asked for a range
            self.counters.store_failures += 1
            self.events.warning("store", "no subpool: the cluster store failed (%s); client closed", exc)
        except AddressesUnavailable as exc:
            self.counters.bind_failures += 1
            self.events.warning("bind", "client %s lost: %s", endpoint_text(owner.record.client), exc)
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS:
                raise
            self.counters.resource_failures += 1
            name = errno.errorcode.get(exc.errno or 0, "error")
            self.events.warning(f"socket {name}", "no upstream socket: %s (%s), client closed", name, exc.strerror)
        finally:
            owner.release()

    async def _serve(self, client: socket.socket, owner: LeaseOwner) -> None:
        backend = self.backends.choose()
        if backend is None:
            self.counters.no_backend += 1
            return
        owner.record.backend = str(backend)
        backend.active += 1  # from the connect on, so that least-connections sees it at once
        try:
            await self._connect_and_relay(client, owner, backend)
        finally:
            backend.active -= 1

    async def _connect_and_relay(self, client: socket.socket, owner: LeaseOwner, backend: BackendState) -> None:
        try:
            upstream = await self.source.connect(backend.address, owner, self.config.connect_timeout)
        except BackendUnreachable as exc:
            self.counters.backend_failures += 1
            self.backends.mark_down(backend, str(exc))
            return
        try:
            owner.connected()
            await self._relay(client, upstream, owner, backend)
        finally:
            upstream.close()  # closed with its stream already, unless that was never made

    async def _relay(
        self, client: socket.socket, upstream: socket.socket, owner: LeaseOwner, backend: BackendState
    ) -> None:
        backend.connections += 1
        self.counters.relayed += 1
        record = owner.record
        record.state = "open"
        grace = self.config.idle_timeout
        ended = CLIENT
        streams: list[asyncio.StreamWriter] = []
        try:
            client_stream = await asyncio.open_connection(sock=client)
            streams.append(client_stream[1])
            upstream_stream = await asyncio.open_connection(sock=upstream)
            streams.append(upstream_stream[1])
            ended = await relay(client_stream, upstream_stream, record, self.config.idle_timeout)
        finally:
            record.state = "closed"
            await _close_all(reversed(streams), grace)  # the upstream first
        if ended == IDLE:
            self.counters.idle_timeouts += 1

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop accepting, let connections finish for ``drain_timeout`` s, close the rest, free every lease."""
        timeout = self.config.drain_timeout if drain_timeout is None else drain_timeout
        self.draining = True
        if self._acceptor is not None:
            self._acceptor.close()
        if self.active:
            log.info("draining %d connection(s) for up to %gs", len(self.active), timeout)
            await asyncio.wait(set(self.active), timeout=timeout)
        rest = set(self.active)
        if rest:
            log.warning("closing %d connection(s) still open after the drain", len(rest))
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
            self.drain_block_events()  # every lease is freed: the last blocks' releases
        if self.block_log is not None:
            self.block_log.close()
        if self.state is not None:
            self.state_saved = await self.state.close()
        self.events.flush()
        stats = self.final_stats = self.pool.stats()
        c = self.counters
        log.log(
            logging.INFO if stats.live == 0 else logging.ERROR,
            "stopped: %d accepted, %d relayed, %d refused on exhaustion, %d over the client quota, %d bind retries, "
            "%d backend failures, "
            "%d idle timeouts, %d store failures, %d out of descriptors, %d errors; "
            "pool: %d live leases%s, %d held down, %d blocks in %d subpools, %d intervals",
            c.accepted,
            c.relayed,
            c.exhausted,
            c.quota_refused,
            c.bind_retries,
            c.backend_failures,
            c.idle_timeouts,
            c.store_failures,
            c.resource_failures,
            c.errors,
            stats.live,
            " LEAKED after a full drain" if stats.live else "",
            stats.held,
            stats.blocks,
            stats.subpools,
            stats.intervals,
        )


async def _close_all(writers: Iterable[asyncio.StreamWriter], grace: float) -> None:
    """Close each stream in turn (:func:`~natpool.apps.proxy.relay.close`), all of them even if one is cancelled."""
    pending = list(writers)
    try:
        while pending:
            await close(pending.pop(0), grace)
    finally:
        for writer in pending:  # cancelled midway: reset the rest now
            writer.transport.abort()
