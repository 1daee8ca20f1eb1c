"""Accepting client connections: never more than ``--max-connections`` open, and calm when descriptors run out.

asyncio's server accepts whatever arrives, and when ``accept`` fails for want of descriptors it logs a traceback
each time. Here the listening socket is read only while fewer than ``limit`` connections are open: at the limit
the proxy stops accepting, the clients that keep coming wait in the kernel's backlog (their handshake done), and
accepting resumes as soon as a connection ends. ``EMFILE``, ``ENFILE``, ``ENOBUFS`` or ``ENOMEM`` from ``accept``
(descriptors taken by something else, or the system's), or any error but those Linux says to retry, pause
accepting for :data:`RESOURCE_PAUSE` seconds: the listener stays readable, so retrying at once would spin. Each
is logged at most once a second per kind, with counts (:class:`~natpool.apps.proxy.events.EventLog`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from natpool.apps.proxy.events import EventLog

__all__ = ["ACCEPT_BATCH", "RESOURCE_PAUSE", "Acceptor"]

ACCEPT_BATCH = 64
"""Connections accepted at most per wake-up of the listener, so that a flood does not starve the relays."""
RESOURCE_PAUSE = 0.1
"""Seconds accepting pauses after ``accept`` failed for want of descriptors or buffers."""

_RETRY = frozenset(
    # Linux's accept(2): errors pending on the new connection, to be treated as EAGAIN, i.e. retried.
    {errno.ECONNABORTED, errno.EPROTO, errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN, errno.ENONET}
    | {errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.EPERM, errno.EINTR}
)


class Acceptor:
    """Accepts on ``listener`` while fewer than ``limit`` connections are open; hands each to ``on_client``.

    ``open`` counts the connections handed out and not yet given back with :meth:`release`.
    """

    def __init__(
        self, listener: socket.socket, on_client: Callable[[socket.socket], None], limit: int, events: EventLog
    ) -> None:
        self.listener = listener
        self.limit = limit
        self.open = 0
        self._on_client = on_client
        self._events = events
        self._loop = asyncio.get_running_loop()
        self._fd = listener.fileno()
        self._reading = False
        self._pause: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def accepting(self) -> bool:
        """Whether the listener is being read now (not at the limit, not paused, not closed)."""
        return self._reading

    def start(self) -> None:
        self._update()

    def release(self) -> None:
        """A connection ended: below the limit again, accepting resumes."""
        self.open -= 1
        self._update()

    def close(self) -> None:
        """Stop accepting for good and close the listener (open connections are the caller's)."""
        self._closed = True
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        self._update()
        self.listener.close()

    def _update(self) -> None:
        want = not self._closed and self._pause is None and self.open < self.limit
        if want and not self._reading:
            self._loop.add_reader(self._fd, self._readable)
        elif self._reading and not want:
            self._loop.remove_reader(self._fd)
        self._reading = want

    def _resume(self) -> None:
        self._pause = None
        self._update()

    def _readable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.open >= self.limit:
                self._events.warning(
                    "limit", "%d connections open (--max-connections): accepting paused, new clients wait", self.limit
                )
                break
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in _RETRY:
                    continue
                name = errno.errorcode.get(exc.errno or 0, "error")  # EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse
                self._events.warning(
                    f"accept {name}", "accept: %s (%s); accepting paused for %gs", name, exc.strerror, RESOURCE_PAUSE
                )
                self._pause = self._loop.call_later(RESOURCE_PAUSE, self._resume)
                break
            client.setblocking(False)
            self.open += 1
            self._on_client(client)
        self._update()
