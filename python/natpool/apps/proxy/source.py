"""Where an upstream connection's source address comes from: a natpool lease, or the kernel.

``PoolSource`` is client NAT with natpool: allocate a lease into the connection's
:class:`~natpool.apps.proxy.lease.LeaseOwner` (its ``data`` is the connection record), create the upstream socket,
bind it to ``lease.address``, connect. An address that cannot be used (``EADDRINUSE`` at bind: another
socket on the host holds it; ``EADDRNOTAVAIL``/``EADDRINUSE`` at connect: its 4-tuple to this backend is still
taken) is quarantined and another lease taken, up to ``bind_attempts`` times.

``KernelSource`` is what a daemon does without natpool: bind to ``(ip, 0)`` with ``IP_BIND_ADDRESS_NO_PORT``,
so the kernel picks the port at connect time for the full 4-tuple; the IPs of the pool take turns (those with
an address in the pool's space: an IP whose every port is excluded is left out).

An upstream socket is of the NAT address's family: ``AF_INET6`` for an IPv6 pool.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket

from natpool.apps.models import PoolLike
from natpool.apps.options import endpoint_family, endpoint_text
from natpool.apps.proxy.events import EventLog
from natpool.apps.proxy.lease import LeaseOwner
from natpool.apps.proxy.record import Counters
from natpool.apps.space import ip_spans

__all__ = ["AddressesUnavailable", "BackendUnreachable", "KernelSource", "PoolSource", "new_socket"]

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Linux's socket option (24); the ``socket`` module of Python 3.11 may lack the name."""

_ADDRESS_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL)


class BackendUnreachable(Exception):
    """The backend refused, was unreachable or did not answer the connect in time."""


class AddressesUnavailable(Exception):
    """No source address could be bound and connected from in the attempts allowed."""


def new_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    """A non-blocking TCP socket of ``family`` for an upstream connection; ``OSError`` (``EMFILE``...) if none can
    be had."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # A closed connection's TIME_WAIT must not block binding the address again (connect decides about the
        # 4-tuple). An address another socket holds without SO_REUSEADDR still fails with EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def _connect(sock: socket.socket, backend: tuple[str, int], timeout: float) -> None:
    """Connect; an address error propagates as ``OSError``, anything else is the backend's fault."""
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, backend), timeout)
    except OSError as exc:
        if exc.errno in _ADDRESS_ERRORS:
            raise
        raise BackendUnreachable(str(exc) or type(exc).__name__) from exc
    except TimeoutError:
        raise BackendUnreachable(f"connect timed out after {timeout:g}s") from None


class PoolSource:
    """Source addresses from natpool leases, with bind-failure quarantine."""

    def __init__(self, bind_attempts: int, quarantine: float, counters: Counters, events: EventLog) -> None:
        self.bind_attempts = bind_attempts
        self.quarantine = quarantine
        self.counters = counters
        self.events = events

    async def connect(self, backend: tuple[str, int], owner: LeaseOwner, timeout: float) -> socket.socket:
        """A socket bound to a lease of ``owner`` and connected to ``backend``.

        The lease is ``owner``'s from its allocation on, whatever fails after it (the socket, the bind, the
        connect, a cancellation): the caller releases it. ``PoolExhausted`` when no lease is left; ``OSError``
        when no socket can be created.
        """
        for _ in range(self.bind_attempts):
            lease = owner.allocate()
            sock = new_socket(endpoint_family(lease.address))
            try:
                sock.bind(lease.address)
                await _connect(sock, backend, timeout)
            except BaseException as exc:
                sock.close()
                if isinstance(exc, OSError) and exc.errno in _ADDRESS_ERRORS:
                    self.counters.bind_retries += 1
                    self.events.warning(
                        "quarantine",
                        "NAT address %s unusable (%s), quarantined for %gs",
                        endpoint_text(lease.address),
                        errno.errorcode.get(exc.errno or 0, exc),
                        self.quarantine,
                    )
                    owner.quarantine(self.quarantine)
                    continue
                raise
            return sock
        raise AddressesUnavailable(f"{self.bind_attempts} NAT addresses in a row could not be bound")


class KernelSource:
    """Source IPs from the pool's range in turn, ports chosen by the kernel (no natpool)."""

    def __init__(self, pool: PoolLike, counters: Counters) -> None:
        """The IPs of ``pool``'s space (a pool with no lease: its intervals are its free runs)."""
        self._family = socket.AF_INET6 if pool.family == 6 else socket.AF_INET
        self._spans = ip_spans(pool.intervals())
        """The IPs as spans: taken in turn, computed as they are needed (a /8 is 16 million of them)."""
        self._span, self._offset = 0, 0
        self.counters = counters

    def _next_ip(self) -> str:
        first, last = self._spans[self._span]
        ip = first + self._offset
        self._offset += 1
        if ip >= last:
            self._span, self._offset = (self._span + 1) % len(self._spans), 0
        return str(ipaddress.IPv4Address(ip) if self._family == socket.AF_INET else ipaddress.IPv6Address(ip))

    async def connect(self, backend: tuple[str, int], owner: LeaseOwner, timeout: float) -> socket.socket:
        """A socket bound to one of the pool's IPs, the kernel's port, connected to ``backend`` (no lease)."""
        sock = new_socket(self._family)
        try:
            try:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self._next_ip(), 0))
                await _connect(sock, backend, timeout)
            except OSError as exc:
                raise AddressesUnavailable(f"the kernel found no source port: {exc}") from exc
            host, port = sock.getsockname()[:2]
        except BaseException:
            sock.close()
            raise
        owner.record.nat = (host, port)
        return sock
